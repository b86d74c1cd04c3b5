/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * nm_mock_broker: librdkafka's mock Kafka cluster as a standalone process, for tests and demos.
 *
 *   nm_mock_broker [-n brokers] [-t topic] [-p partitions]
 *
 * Creates the cluster (default 1 broker) and the topic (default flow-messages, 1 partition,
 * replicated on min(brokers, 3) brokers), prints "BOOTSTRAP host:port,..." as the first line on
 * stdout (flushed) and serves until SIGTERM or SIGINT. The brokers listen on 127.0.0.1; kcat,
 * ClickHouse and the engine connect there:
 *
 *   kcat -P -b BOOT -t flow-messages      kcat -C -b BOOT -t flow-messages -e -o beginning
 *
 * Leaders: partition p is led by broker (p mod brokers) + 1, its preferred leader, so a cluster
 * spreads its partitions as Kafka's own assignment does (librdkafka's mock would make broker 1
 * lead them all when every broker holds a replica). The layout is logged on stderr.
 *
 * A whole-cluster outage, by signal: SIGUSR1 takes every broker down
 * (rd_kafka_mock_broker_set_down: connections closed, new ones refused, the port stays bound
 * and the topic's data is kept), SIGUSR2 brings them up again; each change is logged on stderr
 * ("nm_mock_broker: brokers down" / "... up").
 *
 * One broker at a time, by command lines on stdin (a test keeps a pipe to it); each command is
 * answered by one line on stdout, "OK ..." or "ERR ...", flushed, and logged on stderr:
 *
 *   down B     broker B (1..brokers) down; each partition it leads gets the next broker that is
 *              up as its leader (the replicas keep the data: the mock cluster holds one log per
 *              partition), as a Kafka controller elects a new leader from the in-sync replicas.
 *              "OK down B moved P>L,P>L..." lists the moves. ERR when no broker would be left.
 *   up B       broker B up; partitions whose preferred leader is B return to it (Kafka's
 *              auto.leader.rebalance). "OK up B moved P>L,..."
 *   leaders    "OK leaders P:L,P:L,..." the current leader of every partition.
 *
 * stdin at end of file (e.g. /dev/null) just ends the commands; the broker serves on.
 *
 * The mock cluster keeps messages in memory and supports idempotent producers, plain and group
 * consumers. It is not a Kafka: librdkafka 2.0.2 keeps only the newest ~5 MiB (and at most 100,000
 * messages) of each partition and drops older ones, so read the topic while it is being written,
 * or use more partitions (-p) for more room. Group coordinators are not moved by "down": a
 * consumer group whose coordinator broker is down cannot commit until it is up again.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_BROKERS 64
#define MAX_PARTITIONS 10000
#define CMD_MAX 256

static volatile sig_atomic_t quit, want_down, want_up;

/* The cluster as this process set it up: librdkafka's mock API can set leaders and broker
 * states but not read them back, so the process keeps its own copy. */
struct cluster {
	rd_kafka_mock_cluster_t *mc;
	const char *topic;
	int brokers;
	int partitions;
	int up[MAX_BROKERS + 1]; /* 1-based broker ids */
	int *leader;		 /* [partitions] current leader */
};

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		want_down = 1;
	else if (sig == SIGUSR2)
		want_up = 1;
	else
		quit = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: nm_mock_broker [-n brokers] [-t topic] [-p partitions]\n"
			"  prints BOOTSTRAP host:port,... on stdout, runs until SIGTERM/SIGINT;\n"
			"  SIGUSR1 takes every broker down, SIGUSR2 brings them up;\n"
			"  stdin commands: down B | up B | leaders (answered on stdout)\n");
}

static int
preferred_leader(const struct cluster *c, int p)
{
	return p % c->brokers + 1;
}

static int
set_leader(struct cluster *c, int p, int b)
{
	rd_kafka_resp_err_t err = rd_kafka_mock_partition_set_leader(c->mc, c->topic, p, b);

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -EINVAL;
	c->leader[p] = b;
	return 0;
}

/* Appends "P>L" to buf (comma separated); out of room, the list ends with "..." instead. */
static void
note_move(char *buf, size_t size, int p, int b)
{
	size_t len = strlen(buf);
	int n;

	if (len + 4 >= size)
		return;
	n = snprintf(buf + len, size - len, "%s%d>%d", len ? "," : "", p, b);
	if (n < 0 || (size_t)n >= size - len)
		snprintf(buf + len, size - len, "%s...", len ? "," : "");
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One answer line on stdout (the test's) and the same on stderr (the log). */
static void
reply(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	fputs("nm_mock_broker: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
cmd_down(struct cluster *c, int b)
{
	char moved[1024] = "";
	int p, next, i;

	for (i = 1; i <= c->brokers; i++)
		if (i != b && c->up[i])
			break;
	if (i > c->brokers) {
		reply("ERR down %d: no other broker is up (SIGUSR1 takes all down)", b);
		return;
	}
	if (rd_kafka_mock_broker_set_down(c->mc, b) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		reply("ERR down %d: rd_kafka_mock_broker_set_down failed", b);
		return;
	}
	c->up[b] = 0;
	for (p = 0; p < c->partitions; p++) {
		if (c->leader[p] != b)
			continue;
		/* the next broker up after b: the first replica in the in-sync list */
		next = b;
		do
			next = next % c->brokers + 1;
		while (!c->up[next]);
		if (set_leader(c, p, next) == 0)
			note_move(moved, sizeof(moved), p, next);
	}
	reply("OK down %d moved %s", b, moved[0] ? moved : "-");
}

static void
cmd_up(struct cluster *c, int b)
{
	char moved[1024] = "";
	int p;

	if (rd_kafka_mock_broker_set_up(c->mc, b) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		reply("ERR up %d: rd_kafka_mock_broker_set_up failed", b);
		return;
	}
	c->up[b] = 1;
	for (p = 0; p < c->partitions; p++)
		if (preferred_leader(c, p) == b && c->leader[p] != b && set_leader(c, p, b) == 0)
			note_move(moved, sizeof(moved), p, b);
	reply("OK up %d moved %s", b, moved[0] ? moved : "-");
}

static void
cmd_leaders(const struct cluster *c)
{
	char list[4096] = "";
	int p;

	for (p = 0; p < c->partitions; p++) {
		size_t len = strlen(list);

		if (len + 24 >= sizeof(list)) {
			strcat(list, ",...");
			break;
		}
		snprintf(list + len, sizeof(list) - len, "%s%d:%d", p ? "," : "", p, c->leader[p]);
	}
	reply("OK leaders %s", list);
}

/* One command line (without its newline). Unknown or malformed lines get an ERR answer. */
static void
command(struct cluster *c, char *line)
{
	char verb[16];
	int b = 0, n;

	n = sscanf(line, "%15s %d", verb, &b);
	if (n < 1)
		return; /* blank line */
	if (strcmp(verb, "leaders") == 0 && n == 1) {
		cmd_leaders(c);
		return;
	}
	if (n != 2 || b < 1 || b > c->brokers || (strcmp(verb, "down") && strcmp(verb, "up"))) {
		reply("ERR bad command '%s' (down B | up B | leaders; B in 1..%d)", line,
		      c->brokers);
		return;
	}
	if (strcmp(verb, "down") == 0)
		cmd_down(c, b);
	else
		cmd_up(c, b);
}

/* Reads what stdin has and runs every complete line. Returns -1 at end of file or error. A
 * line longer than CMD_MAX is cut and answered as a bad command: a test's pipe, not a user's. */
static int
read_commands(struct cluster *c, char *buf, size_t *len)
{
	ssize_t n = read(STDIN_FILENO, buf + *len, CMD_MAX - 1 - *len);
	char *nl;

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	if (n == 0)
		return -1;
	*len += (size_t)n;
	buf[*len] = '\0';
	while ((nl = strchr(buf, '\n')) != NULL) {
		*nl = '\0';
		command(c, buf);
		*len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, *len + 1);
	}
	if (*len == CMD_MAX - 1) {
		command(c, buf);
		*len = 0;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct cluster c = {.topic = "flow-messages", .brokers = 1, .partitions = 1};
	int opt, status = 0, b, p;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_resp_err_t err;
	struct sigaction sa;
	struct pollfd pfd;
	sigset_t block, old;
	char e[512], cmd[CMD_MAX];
	size_t cmd_len = 0;

	while ((opt = getopt(argc, argv, "n:t:p:h")) != -1) {
		switch (opt) {
		case 'n':
			c.brokers = atoi(optarg);
			break;
		case 't':
			c.topic = optarg;
			break;
		case 'p':
			c.partitions = atoi(optarg);
			break;
		default:
			usage();
			return opt == 'h' ? 0 : 2;
		}
	}
	if (c.brokers < 1 || c.brokers > MAX_BROKERS || c.partitions < 1 ||
	    c.partitions > MAX_PARTITIONS || c.topic[0] == '\0') {
		usage();
		return 2;
	}
	c.leader = calloc((size_t)c.partitions, sizeof(*c.leader));
	if (c.leader == NULL) {
		fprintf(stderr, "nm_mock_broker: out of memory\n");
		return 1;
	}

	/* Signals stay blocked except inside ppoll(), so none slips in before we wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, &old);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);

	conf = rd_kafka_conf_new();
	/* The handle only hosts the cluster; it never connects, so keep its notices quiet. */
	(void)rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (rk == NULL) {
		fprintf(stderr, "nm_mock_broker: %s\n", e);
		free(c.leader);
		return 1;
	}
	c.mc = rd_kafka_mock_cluster_new(rk, c.brokers);
	if (c.mc == NULL) {
		fprintf(stderr, "nm_mock_broker: cannot create the mock cluster\n");
		rd_kafka_destroy(rk);
		free(c.leader);
		return 1;
	}
	err = rd_kafka_mock_topic_create(c.mc, c.topic, c.partitions,
					 c.brokers < 3 ? c.brokers : 3);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "nm_mock_broker: topic %s: %s\n", c.topic, rd_kafka_err2str(err));
		status = 1;
		goto out;
	}
	for (b = 1; b <= c.brokers; b++)
		c.up[b] = 1;
	for (p = 0; p < c.partitions; p++) {
		if (set_leader(&c, p, preferred_leader(&c, p)) != 0) {
			fprintf(stderr, "nm_mock_broker: cannot make broker %d lead partition %d\n",
				preferred_leader(&c, p), p);
			status = 1;
			goto out;
		}
	}
	printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(c.mc));
	fflush(stdout);
	fprintf(stderr,
		"nm_mock_broker: %d broker(s), topic %s with %d partition(s), partition p led by "
		"broker p mod %d + 1; SIGTERM to stop\n",
		c.brokers, c.topic, c.partitions, c.brokers);

	pfd.fd = STDIN_FILENO;
	pfd.events = POLLIN;
	while (!quit) {
		pfd.revents = 0;
		/* signals are taken only here; EINTR is how they arrive */
		if (ppoll(&pfd, 1, NULL, &old) > 0 &&
		    (pfd.revents & (POLLIN | POLLHUP | POLLERR)) &&
		    read_commands(&c, cmd, &cmd_len) < 0)
			pfd.fd = -1; /* end of the commands: poll() then ignores the entry */
		/* Not in the handler: librdkafka's calls are not async-signal-safe. */
		if (want_down) {
			want_down = 0;
			for (b = 1; b <= c.brokers; b++) {
				(void)rd_kafka_mock_broker_set_down(c.mc, b);
				c.up[b] = 0;
			}
			fprintf(stderr, "nm_mock_broker: brokers down\n");
		}
		if (want_up) {
			want_up = 0;
			for (b = 1; b <= c.brokers; b++) {
				(void)rd_kafka_mock_broker_set_up(c.mc, b);
				c.up[b] = 1;
			}
			fprintf(stderr, "nm_mock_broker: brokers up\n");
		}
	}

out:
	rd_kafka_mock_cluster_destroy(c.mc);
	rd_kafka_destroy(rk);
	free(c.leader);
	return status;
}
