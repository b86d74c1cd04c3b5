/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: the configuration parser -- netmeta.ini from arbitrary bytes through
 * nm_config_load() (iniparser, then our key table, ports, exporters, kafka properties and the
 * checks across keys), then --set strings through nm_config_set_all() and nm_config_set().
 *
 * Input: the ini file's text up to the first NUL byte; after it, NUL-separated --set
 * assignments (at most 16). Every error must leave a message that is a terminated string
 * within the buffer; a config that loads must keep its counts within their arrays.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

#define MAX_SETS 16

static void
check(const struct nm_config *c, const char *err, size_t errlen)
{
	if (memchr(err, '\0', errlen) == NULL)
		__builtin_trap();
	if (c->n_ports > NM_CFG_MAX_PORTS || c->n_collector_ports > NM_CFG_MAX_UDP_PORTS ||
	    c->n_kafka_props > NM_CFG_MAX_PROPS || c->n_exporters > NM_CFG_MAX_EXPORTERS ||
	    c->n_ifnames > NM_CFG_MAX_IFNAMES)
		__builtin_trap();
	if (memchr(c->kafka_spool_dir, '\0', sizeof(c->kafka_spool_dir)) == NULL ||
	    memchr(c->eal_args, '\0', sizeof(c->eal_args)) == NULL)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nm_config c; /* ~4 MB: not on the stack */
	static char path[64];
	static char buf[65536 + 1];
	const char *sets[MAX_SETS];
	unsigned int n = 0, i;
	char err[1024];
	size_t ini_len;
	FILE *f;

	if (path[0] == '\0')
		snprintf(path, sizeof(path), "%s/nmfuzz-config-%d.ini",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
	if (size > sizeof(buf) - 1)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	ini_len = strlen(buf);
	for (i = (unsigned int)ini_len + 1; i < size && n < MAX_SETS; i += strlen(buf + i) + 1)
		sets[n++] = buf + i;

	f = fopen(path, "w");
	if (f == NULL)
		__builtin_trap();
	if (ini_len > 0 && fwrite(buf, 1, ini_len, f) != ini_len)
		__builtin_trap();
	fclose(f);

	nm_config_defaults(&c);
	err[0] = '\0';
	if (nm_config_load(&c, path, err, sizeof(err)) != 0) {
		check(&c, err, sizeof(err));
		nm_config_defaults(&c); /* the engine would stop; --set alone still runs */
	}
	check(&c, err, sizeof(err));
	err[0] = '\0';
	(void)nm_config_set_all(&c, sets, n, err, sizeof(err));
	check(&c, err, sizeof(err));
	for (i = 0; i < n; i++) {
		err[0] = '\0';
		(void)nm_config_set(&c, sets[i], err, sizeof(err));
		check(&c, err, sizeof(err));
	}
	unlink(path);
	return 0;
}
