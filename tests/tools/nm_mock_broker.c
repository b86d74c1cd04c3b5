/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * nm_mock_broker: librdkafka's mock Kafka cluster as a standalone process, for tests and demos.
 *
 *   nm_mock_broker [-n brokers] [-t topic] [-p partitions]
 *
 * Creates the cluster (default 1 broker) and the topic (default flow-messages, 1 partition),
 * prints "BOOTSTRAP host:port,..." as the first line on stdout (flushed) and serves until SIGTERM
 * or SIGINT. An outage on demand, for tests: SIGUSR1 takes every broker down
 * (rd_kafka_mock_broker_set_down: connections closed, new ones refused, the port stays bound
 * and the topic's data is kept), SIGUSR2 brings them up again; each change is logged on stderr
 * ("nm_mock_broker: brokers down" / "... up"). The brokers listen on 127.0.0.1; kcat,
 * ClickHouse and the engine connect there:
 *
 *   kcat -P -b BOOT -t flow-messages      kcat -C -b BOOT -t flow-messages -e -o beginning
 *
 * The mock cluster keeps messages in memory and supports idempotent producers, plain and group
 * consumers. It is not a Kafka: librdkafka 2.0.2 keeps only the newest ~5 MiB (and at most 100,000
 * messages) of each partition and drops older ones, so read the topic while it is being written,
 * or use more partitions (-p) for more room.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t quit, want_down, want_up;

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
			"  SIGUSR1 takes the brokers down, SIGUSR2 brings them up\n");
}

int
main(int argc, char **argv)
{
	const char *topic = "flow-messages";
	int brokers = 1, partitions = 1, opt, status = 0;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_resp_err_t err;
	struct sigaction sa;
	sigset_t block, old;
	char e[512];

	while ((opt = getopt(argc, argv, "n:t:p:h")) != -1) {
		switch (opt) {
		case 'n':
			brokers = atoi(optarg);
			break;
		case 't':
			topic = optarg;
			break;
		case 'p':
			partitions = atoi(optarg);
			break;
		default:
			usage();
			return opt == 'h' ? 0 : 2;
		}
	}
	if (brokers < 1 || brokers > 64 || partitions < 1 || partitions > 10000 ||
	    topic[0] == '\0') {
		usage();
		return 2;
	}

	/* Signals stay blocked except inside sigsuspend(), so none slips in before we wait. */
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
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (mc == NULL) {
		fprintf(stderr, "nm_mock_broker: cannot create the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	err = rd_kafka_mock_topic_create(mc, topic, partitions, brokers < 3 ? brokers : 3);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "nm_mock_broker: topic %s: %s\n", topic, rd_kafka_err2str(err));
		status = 1;
		goto out;
	}
	printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	fprintf(stderr,
		"nm_mock_broker: %d broker(s), topic %s with %d partition(s); "
		"SIGTERM to stop\n",
		brokers, topic, partitions);

	while (!quit) {
		int b;

		sigsuspend(&old);
		/* Not in the handler: librdkafka's calls are not async-signal-safe. */
		if (want_down) {
			want_down = 0;
			for (b = 1; b <= brokers; b++)
				(void)rd_kafka_mock_broker_set_down(mc, b);
			fprintf(stderr, "nm_mock_broker: brokers down\n");
		}
		if (want_up) {
			want_up = 0;
			for (b = 1; b <= brokers; b++)
				(void)rd_kafka_mock_broker_set_up(mc, b);
			fprintf(stderr, "nm_mock_broker: brokers up\n");
		}
	}

out:
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return status;
}
