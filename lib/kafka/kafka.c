/* SPDX-License-Identifier: BSD-3-Clause */
/* Placeholder until the producer lands. */
#include <errno.h>
#include <stdio.h>

#include "kafka.h"

struct nm_kafka *
nm_kafka_create(const struct nm_kafka_params *p, char *err, size_t errlen)
{
	(void)p;
	snprintf(err, errlen, "kafka sink not implemented yet");
	errno = ENOSYS;
	return NULL;
}

const char *nm_kafka_bootstrap(const struct nm_kafka *k) { (void)k; return ""; }
int nm_kafka_add(struct nm_kafka *k, const struct nm_flow_rec *rec) { (void)k; (void)rec; return -ENOSYS; }
int nm_kafka_flush(struct nm_kafka *k) { (void)k; return -ENOSYS; }
void nm_kafka_poll(struct nm_kafka *k) { (void)k; }
uint64_t nm_kafka_drain(struct nm_kafka *k, int t) { (void)k; (void)t; return 0; }
void nm_kafka_get_stats(const struct nm_kafka *k, struct nm_kafka_stats *o) { (void)k; (void)o; }
void nm_kafka_free(struct nm_kafka *k) { (void)k; }
