/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The kernel side of a net_tap port: its address, link up, and a permanent neighbour entry for
 * the engine's own address, so exporters on this host can send to the engine.
 *
 * This runs ip(8) without a shell: posix_spawn of the binary with an argv whose every word was
 * checked -- the interface name by nm_config_tap_iface() (IFNAMSIZ, [A-Za-z0-9_.-], no leading
 * '-'), the addresses by inet_pton (nm_config_parse_cidr) -- so nothing in the config reaches a
 * command interpreter. The config loader applied the same checks, so a failure here is a bug or
 * a missing ip(8), and start-up goes on with a warning as before: the port itself works.
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rte_ethdev.h>

#include "app.h"

/* Where Debian and others keep ip(8); no PATH lookup. */
static const char *const ip_paths[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};

static const char *
ip_binary(void)
{
	unsigned int i;

	for (i = 0; i < RTE_DIM(ip_paths); i++)
		if (access(ip_paths[i], X_OK) == 0)
			return ip_paths[i];
	return NULL;
}

/* Run ip with argv (argv[0] is replaced by its path); 0 when it exited 0, else -errno/-EIO. */
static int
run_ip(const struct nm_port_cfg *pc, char **argv)
{
	static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	char cmd[512];
	size_t o = 0;
	unsigned int i;
	posix_spawnattr_t attr;
	sigset_t none;
	pid_t pid;
	int ret, st;

	for (i = 0; argv[i] != NULL && o < sizeof(cmd); i++)
		o += (size_t)snprintf(cmd + o, sizeof(cmd) - o, "%s%s", i ? " " : "", argv[i]);
	argv[0] = (char *)ip_binary();
	if (argv[0] == NULL) {
		NM_LOG(WARNING, "port %s: ip(8) not found (iproute2); could not run: %s\n",
		       pc->name, cmd);
		return -ENOENT;
	}
	/* The main thread blocks every signal at this point (signals.c): ip(8) gets none blocked.
	 */
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	ret = posix_spawn(&pid, argv[0], NULL, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	if (ret != 0) {
		NM_LOG(WARNING, "port %s: could not start %s: %s\n", pc->name, argv[0],
		       strerror(ret));
		return -ret;
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		NM_LOG(WARNING, "port %s: failed (status %d): %s\n", pc->name, st, cmd);
		return -EIO;
	}
	return 0;
}

void
nm_tap_setup(const struct nm_port_cfg *pc, uint16_t port_id)
{
	char iface[NM_CFG_IFNAMSIZ], addr[64], cidr[80], mac[RTE_ETHER_ADDR_FMT_SIZE];
	struct rte_ether_addr ea;
	unsigned int prefix;

	if (pc->address[0] == '\0' || nm_config_tap_iface(pc->device, iface, sizeof(iface)) != 0 ||
	    nm_config_parse_cidr(pc->address, addr, &prefix) != 0)
		return;
	snprintf(cidr, sizeof(cidr), "%s/%u", addr, prefix);
	if (run_ip(pc, (char *[]){"ip", "addr", "replace", cidr, "dev", iface, NULL}) == 0)
		(void)run_ip(pc, (char *[]){"ip", "link", "set", "dev", iface, "up", NULL});
	if (pc->peer[0] != '\0') {
		if (rte_eth_macaddr_get(port_id, &ea) == 0) {
			rte_ether_format_addr(mac, sizeof(mac), &ea);
			(void)run_ip(pc, (char *[]){"ip", "neigh", "replace", (char *)pc->peer,
						    "lladdr", mac, "dev", iface, "nud", "permanent",
						    NULL});
		}
	}
	NM_LOG(INFO,
	       "port %s: kernel interface %s has %s; send exports to %s (UDP ports of "
	       "[collector] ports)\n",
	       pc->name, iface, cidr, pc->peer[0] ? pc->peer : "(no peer set)");
}
