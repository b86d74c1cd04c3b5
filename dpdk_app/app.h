/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_APP_H
#define NM_APP_H

/*
 * The engine process: shared context of the main (control/flusher) lcore and the RX workers.
 * Nothing here is a global shared through extern: main() builds one struct nm_app and passes it.
 */

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include <rte_common.h>
#include <rte_log.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "config/config.h"
#include "decode/decode.h"
#include "agg/agg.h"
#include "kafka/kafka.h"
#include "pkt/pkt.h"
#include "exporter/exporter.h"
#include "tmpl/tmpl.h"

#define NM_MAX_WORKERS 32
#define NM_MAX_QUEUES_PER_WORKER 16
#define NM_TABLES_PER_WORKER 4
#define NM_BURST 32
#define NM_REC_BATCH 64

/* The engine's log type (RTE_LOG_REGISTER_DEFAULT in main.c), as every DPDK component has one. */
extern int nm_logtype;
#define NM_LOG(level, ...) rte_log(RTE_LOG_##level, nm_logtype, "netmeta: " __VA_ARGS__)

struct nm_rxq {
	uint16_t port_id;
	uint16_t queue_id;
	enum nm_port_role role;
	enum nm_link link;    /* what the frames start with (pcap files may be Linux cooked) */
	uint64_t expect_pkts; /* offline: frames in the pcap file (0: unknown) */
	uint64_t rx_pkts;     /* frames received on this queue */
	uint32_t mirror_skip; /* deterministic 1:N: frames to pass over before the next sample */
	uint64_t sampled;     /* mirror frames of this queue that became records */
	uint32_t if_index;    /* InIf/OutIf of mirror records: the DPDK port id + 1 */
	uint8_t sampler_addr[16]; /* SamplerAddress of mirror records (nm_config_mirror_sampler) */
};

/*
 * Counters of one worker (lib/ctr/ctr.h): single writer, the worker's lcore (nm_ctr_*); read by
 * telemetry and the main lcore. Its decoder's counters (the "decode" set) follow them.
 */
#define NM_WORKER_CTRS(X, A, c)                                                                    \
	X(c, rx_packets, COUNTER, "packets", 0, "", "frames received")                             \
	X(c, rx_bytes, COUNTER, "bytes", 0, "", "bytes of the frames received")                    \
	A(c, udp_class, NM_UDP_CLASS_MAX, nm_udp_class_elem, 0, "frames", "frames", "frames",      \
	  "class", NM_CTR_F_NONZERO | NM_CTR_F_TEXT_NOT0, "frames",                                \
	  "collector-port frames by classification")                                               \
	X(c, not_collector_port, COUNTER, "packets", NM_CTR_F_NONZERO, "udp to other ports",       \
	  "UDP frames to a port that is not a collector port")                                     \
	X(c, refused, COUNTER, "datagrams", NM_CTR_F_NONZERO, "datagrams refused",                 \
	  "datagrams from sources not in [collector] allow (not decoded)")                         \
	X(c, records, COUNTER, "records", 0, "records:", "records handed to aggregation")          \
	X(c, records_packets, COUNTER, "packets", 0, "records:packets",                            \
	  "Packets of those records")                                                              \
	X(c, records_bytes, COUNTER, "bytes", 0, "records:bytes", "Bytes of those records")        \
	X(c, late_records, COUNTER, "records", NM_CTR_F_NONZERO, "late records",                   \
	  "records that arrived for a second already handed to the flusher")                       \
	X(c, mirror_frames, COUNTER, "packets", NM_CTR_F_NONZERO, "mirror frames:received",        \
	  "frames of mirror ports")                                                                \
	X(c, mirror_sampled, COUNTER, "packets", NM_CTR_F_NONZERO, "mirror frames:sampled",        \
	  "mirror frames that became records")                                                     \
	X(c, mirror_parse_errors, COUNTER, "packets", NM_CTR_F_NONZERO, "mirror parse errors",     \
	  "sampled mirror frames whose headers could not be parsed (their bytes still count)")     \
	X(c, rotations, COUNTER, "tables", 0, "", "tables handed to the flusher")                  \
	X(c, rotations_deferred, COUNTER, "seconds", 0, "",                                        \
	  "second boundaries with no free table: the current one kept filling")                    \
	X(c, offline_waits, COUNTER, "waits", NM_CTR_F_NONZERO, "",                                \
	  "offline: polls that waited for the flusher to free a table instead of reading on")      \
	X(c, multiseg, COUNTER, "packets", 0, "",                                                  \
	  "multi-segment frames linearised before decoding")                                       \
	X(c, polls, COUNTER, "polls", 0, "", "poll-loop iterations (every queue polled once)")     \
	X(c, busy_polls, COUNTER, "polls", 0, "", "poll-loop iterations that received frames")     \
	X(c, bursts, COUNTER, "bursts", 0, "", "rte_eth_rx_burst calls that returned frames")

struct nm_worker_stats {
	NM_WORKER_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
	struct nm_decode_stats dec;
} __rte_cache_aligned;

/*
 * Counters of the flusher (lib/ctr/ctr.h): single writer, the main lcore; read by telemetry.
 */
#define NM_FLUSHER_CTRS(X, A, c)                                                                   \
	X(c, rows, COUNTER, "rows", 0, "rows (FlowMessages)",                                      \
	  "aggregated entries handed to Kafka")                                                    \
	X(c, rows_failed, COUNTER, "rows", NM_CTR_F_NONZERO, "rows refused",                       \
	  "entries nm_kafka_add() refused")                                                        \
	X(c, tables_drained, COUNTER, "tables", 0, "", "worker tables drained")

struct nm_flusher_stats {
	NM_FLUSHER_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
};

/* The sets of the engine's own structs (stats.c); the others are in their modules' headers. */
extern const struct nm_ctr_set nm_worker_ctr_set;  /* "worker", keys unprefixed */
extern const struct nm_ctr_set nm_flusher_ctr_set; /* "flusher", keys unprefixed */
const char *nm_udp_class_elem(unsigned int i);

struct nm_app;
struct nm_top;
struct nm_lograte;

/*
 * One worker's last second, from counter deltas (log_rate.c): written by the main lcore once a
 * second with nm_ctr_set, read by telemetry. prev_* are the main lcore's own.
 */
struct nm_worker_rate {
	uint64_t prev_polls, prev_busy, prev_records, prev_rx, prev_bursts;
	uint64_t records_per_s; /* gauge */
	uint64_t packets_per_s; /* gauge */
	uint64_t busy_ppm;	/* gauge: busy polls per million polls over the last second */
	uint64_t burst_milli;	/* gauge: mean frames per burst x 1000 over the last second */
};

struct nm_worker {
	struct nm_app *app;
	unsigned int lcore_id;
	unsigned int index;
	struct nm_rxq rxq[NM_MAX_QUEUES_PER_WORKER];
	unsigned int n_rxq;

	struct nm_agg_table *tables[NM_TABLES_PER_WORKER];
	struct nm_agg_table *cur; /* table being filled */
	uint64_t cur_sec;	  /* second the current table holds (0: none yet) */
	uint64_t handed_sec;	  /* latest second in a table handed to the flusher */
	struct rte_ring *full;	  /* worker -> flusher: tables to drain */
	struct rte_ring *free;	  /* flusher -> worker: drained tables */

	uint64_t rng; /* xorshift state for random sampling */

	struct nm_rec_batch batch;
	struct nm_flow_rec recs[NM_REC_BATCH];
	struct nm_decoder dec;
	struct nm_exp_refused refused; /* sources [collector] allow refused; this lcore writes */
	uint8_t linear[65536];	       /* multi-segment frames are copied here */

	volatile bool done; /* offline: every queue drained, tables handed off */
	struct nm_worker_stats st;
	struct nm_worker_rate rate; /* main lcore writes, telemetry reads */
} __rte_cache_aligned;

/* The command line (main.c). */
#define NM_MAX_PCAPS 16
struct nm_options {
	const char *config;
	const char *sets[64];
	unsigned int n_sets;
	const char *pcaps[NM_MAX_PCAPS];
	unsigned int n_pcaps;
	const char *mirror_pcaps[NM_MAX_PCAPS];
	unsigned int n_mirror_pcaps;
	const char *summary_json;
	double duration;   /* stop after this many seconds (0: run until drained/signalled) */
	bool check_config; /* --check-config: check the config and the host, run nothing */
	char **eal_extra;
	int n_eal_extra;
};

/* A configured port once EAL knows it (ports.c); same index as cfg.ports. */
struct nm_port {
	uint16_t id;			/* DPDK port id */
	uint64_t expect_pkts;		/* frames in its pcap file, 0: not a file or unknown */
	enum nm_link link;		/* what its frames start with */
	struct nm_xdp_allow *xdp_allow; /* our XDP filter's maps (xdp_allow.h), NULL: none */
};

/* What a reload did (reload.c). */
enum nm_reload_outcome {
	NM_RELOAD_NONE = 0, /* no reload yet */
	NM_RELOAD_APPLIED,  /* a new version is live */
	NM_RELOAD_UNCHANGED,
	NM_RELOAD_REFUSED, /* a key that needs a restart changed: the running config stays */
	NM_RELOAD_FAILED,  /* the file could not be read or is invalid: the running config stays */
	NM_RELOAD_OUTCOMES,
};

/*
 * The live configuration's identity and the reload requests (reload.c). Written by the main
 * lcore; version, loaded_ns, counts and last are read by telemetry under lock; signalled is set
 * by the SIGHUP handler, requests by telemetry threads (atomic increment).
 */
struct nm_cfg_live {
	pthread_mutex_t lock;
	uint64_t version;   /* 1: as started; +1 per applied reload */
	uint64_t loaded_ns; /* wall clock when that version became live */
	uint64_t counts[NM_RELOAD_OUTCOMES];
	enum nm_reload_outcome last_outcome;
	uint64_t last_ns; /* when the last reload ran */
	char last[2048];  /* what it did: the message it logged */
	volatile sig_atomic_t signalled;
	uint64_t requests;	       /* /netmeta/reload calls */
	uint64_t served;	       /* requests the main lcore has answered */
	const struct nm_options *opts; /* the command line, applied again over the file */
};

struct nm_app {
	struct nm_config cfg;
	struct nm_cfg_live live;
	/* Telemetry gate (nm_tel_enter/nm_tel_close): handlers in flight, and closed for good. */
	uint32_t tel_busy;
	uint32_t tel_closed;
	struct nm_port ports[NM_CFG_MAX_PORTS];
	struct rte_mempool *pools[RTE_MAX_NUMA_NODES]; /* mbufs per NUMA socket with ports */
	bool offline;				       /* every port is a pcap file */
	volatile bool quit;			       /* SIGINT/SIGTERM or offline end */
	volatile bool draining;	   /* main lcore waits for Kafka's acknowledgements */
	volatile bool drain_abort; /* SIGINT/SIGTERM during that wait: stop waiting */
	volatile bool stop_rx;	   /* workers: stop polling and hand off tables */

	uint8_t collector_port_map[65536 / 8];
	int ts_dynfield; /* mbuf RX timestamp field offset, -1: none */
	uint64_t ts_dynflag;

	struct nm_worker *workers[NM_MAX_WORKERS];
	unsigned int n_workers;

	struct nm_tmpl_cache *tmpl;
	struct nm_exp_table *exp; /* per-exporter state, with the config's overrides */
	struct nm_kafka *kafka;
	struct nm_flusher_stats fl;

	uint64_t tsc_hz;
	uint64_t start_tsc;
	uint64_t start_ns; /* wall clock at start_tsc */

	struct nm_top *top;	    /* heaviest rows of the last second (top.c), NULL: off */
	struct nm_lograte *lograte; /* per-second tick: rates and rate-limited logs (log_rate.c) */
};

/*
 * Set-up and tear-down, in the order main() calls them. Each returns 0 or -errno and prints what
 * went wrong, naming the config key where one is to blame; each *_free undoes its create, also a
 * partial one, and may be called when the create was never reached. Main lcore only.
 */

/*
 * --pcap/--mirror-pcap files replace the config's ports; capture files are inspected (frames,
 * link type) and a run whose ports are all files is offline (ports.c). -EINVAL: bad usage.
 */
int nm_ports_from_options(struct nm_app *app, const struct nm_options *o);

/* rte_eal_init with the engine's argv (eal.c); clocks start. nm_eal_cleanup: EAL and its
 * runtime directory. */
int nm_eal_init(struct nm_app *app, const struct nm_options *o);
void nm_eal_cleanup(void);
/* (Re)start the run's clocks: start_tsc and start_ns, the same instant. */
void nm_app_clock_start(struct nm_app *app);

/* DPDK port ids, mbuf pools, queue set-up and start, tap addresses (ports.c). */
int nm_ports_setup(struct nm_app *app);
void nm_ports_close(struct nm_app *app);

/*
 * The kernel side of a net_tap port (tap.c): address, link up, neighbour entry for the peer,
 * through ip(8) without a shell. Failures are logged, not fatal (as before).
 */
void nm_tap_setup(const struct nm_port_cfg *pc, uint16_t port_id);

/* The template cache and the per-exporter table with the config's overrides (workers.c). */
int nm_tables_create(struct nm_app *app);
void nm_tables_free(struct nm_app *app);

/* Workers from the lcore lists, their rings and aggregation tables (workers.c). */
int nm_workers_create(struct nm_app *app);
void nm_workers_launch(struct nm_app *app);
bool nm_workers_done(const struct nm_app *app);
void nm_workers_free(struct nm_app *app);

/* The Kafka sink from the config (flusher.c). */
int nm_sink_create(struct nm_app *app);
void nm_sink_free(struct nm_app *app);

/* Worker loop (lcore entry point); arg is its struct nm_worker. */
int nm_worker_main(void *arg);

/* Flusher: drain every full table into Kafka; returns tables drained. Main lcore only. */
unsigned int nm_flusher_poll(struct nm_app *app);

/*
 * The main lcore's loop until a signal, --duration or (offline) every file drained; then stop RX,
 * drain the workers' last tables and Kafka, print the summary (and write summary_json) and return
 * the exit status: 0 all delivered, 1 records lost, 4 nothing lost but rows wait in the spool.
 */
int nm_flusher_run(struct nm_app *app, double duration, const char *summary_json);

/* Sum every worker's counters (and its decoder's; agg: its tables', NULL: not wanted). */
void nm_stats_sum(const struct nm_app *app, struct nm_worker_stats *out, struct nm_agg_stats *agg);

/* Every counter set of the engine at one moment (each counter read relaxed). Any thread. */
struct nm_stats_view {
	struct nm_worker_stats s; /* summed over workers, with .dec */
	struct nm_agg_stats a;
	struct nm_flusher_stats fl;
	struct nm_kafka_stats k;
	struct nm_exp_stats e;
	struct nm_tmpl_cache_stats t; /* the template cache (lib/tmpl) */
};
void nm_stats_snapshot(const struct nm_app *app, struct nm_stats_view *v);

/*
 * The template cache's idle sweep (stats.c): once a second at most, nm_tmpl_expire() with the
 * engine's clock and a bounded budget. Main lcore, an online QSBR reader; cheap when not due
 * (one TSC read).
 */
void nm_tmpl_tick(struct nm_app *app);

/* What the summary shows: every counter at the end of the run. */
struct nm_summary {
	struct nm_stats_view v;
	uint64_t lost;
	double secs;	/* whole run */
	double rx_secs; /* from start until RX stopped */
};

/* The console line every [engine] stats_interval_ms (summary.c). */
void nm_summary_line(struct nm_app *app, double secs);
/* The final summary as text, and as JSON into path (summary.c). */
void nm_summary_print(const struct nm_app *app, const struct nm_summary *sm, FILE *f);
int nm_summary_json(const struct nm_app *app, const struct nm_summary *sm, const char *path);

/* The sets the combined views (/netmeta/stats, JSON summary) list, in order, with their objects. */
#define NM_STATS_SETS 7
struct nm_stats_set {
	const struct nm_ctr_set *set;
	const void *obj;
};
void nm_stats_sets(const struct nm_stats_view *v, struct nm_stats_set out[NM_STATS_SETS]);

/*
 * The signal policy (signals.c). nm_signals_block_all: first in main(), before any thread exists;
 * every thread created later inherits the blocked mask. nm_signals_main: once every library
 * thread exists; installs SIGINT/SIGTERM (stop and drain) and SIGHUP (reload the config) and
 * ignores SIGPIPE, unblocks
 * those three in the calling (main) thread only. nm_signals_worker: first on each RX lcore;
 * unblocks everything else there (PMD signals such as net_tap's). 0 or -errno.
 */
int nm_signals_block_all(void);
int nm_signals_main(struct nm_app *app);
int nm_signals_worker(void);

/*
 * Live reload (reload.c). nm_reload_init: version 1 is the config main() loaded; sets the
 * engine's log level; after EAL. nm_reload_request: from the SIGHUP handler
 * (async-signal-safe). nm_reload_poll: on the main lcore between flusher polls; re-reads the
 * config when asked (see reload.c) and publishes its live keys, or refuses it. Main lcore only,
 * a registered QSBR reader, online or offline (the flusher calls it offline: it reads a file).
 */
void nm_reload_init(struct nm_app *app, const struct nm_options *o);
void nm_reload_request(struct nm_app *app);
void nm_reload_poll(struct nm_app *app);
/* Register /netmeta/config and /netmeta/reload. */
int nm_reload_register(struct nm_app *app);
/* The [exporter.NAME] sections of c as an exporter-table version; NULL with errno set. */
struct nm_exp_conf *nm_reload_exp_conf(const struct nm_config *c, uint64_t version);

/*
 * --check-config (check.c): the config (every problem, not just the first) and the host it
 * would run on, without EAL. Prints each problem to stderr; returns the exit status, 0 or 2.
 */
int nm_check_config(const struct nm_options *o);

/*
 * The operator's view (issue 13): /netmeta/ports (tel_ports.c), /netmeta/top (top.c),
 * /netmeta/metrics (prom.c), the per-second tick and logs (log_rate.c). Declarations in
 * opsview.h; nm_telemetry_register registers their commands.
 */

/* Register /netmeta/... telemetry commands (stats.c). */
int nm_telemetry_register(struct nm_app *app);

/*
 * Register /netmeta/exporters and /netmeta/interfaces (tel_exporters.c), which read app->exp
 * (created by nm_tables_create). Called by nm_telemetry_register.
 */
int nm_tel_exporters_register(struct nm_app *app);

/* Sum of the workers' refused sources ([collector] allow) into r. Any thread (telemetry). */
void nm_app_refused(const struct nm_app *app, struct nm_exp_refused *r);

/*
 * Telemetry never sees freed state. DPDK's telemetry thread calls our handlers at any time and
 * has no unregister, so each handler runs between nm_tel_enter() (false once closed: answer
 * nothing) and nm_tel_exit(); main calls nm_tel_close() before it frees workers, the Kafka sink,
 * the template cache or the exporter table: it closes the gate and waits for the handlers in
 * flight. Both sides use sequentially consistent operations (increment-then-check against
 * store-then-check), so a handler either sees the gate closed or is waited for.
 */
static inline bool
nm_tel_enter(struct nm_app *app)
{
	__atomic_add_fetch(&app->tel_busy, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&app->tel_closed, __ATOMIC_SEQ_CST)) {
		__atomic_sub_fetch(&app->tel_busy, 1, __ATOMIC_SEQ_CST);
		return false;
	}
	return true;
}

static inline void
nm_tel_exit(struct nm_app *app)
{
	__atomic_sub_fetch(&app->tel_busy, 1, __ATOMIC_SEQ_CST);
}

/* Close the gate and wait for the handlers in flight (main thread, before freeing). */
void nm_tel_close(struct nm_app *app);

/* A handler fn run behind the gate, registered as name (no user argument in DPDK's API). */
#define NM_TEL_GUARDED(name, fn, app)                                                              \
	static int name(const char *cmd, const char *params, struct rte_tel_data *d)               \
	{                                                                                          \
		int ret_;                                                                          \
		if (!nm_tel_enter(app)) {                                                          \
			rte_tel_data_start_dict(d);                                                \
			return 0;                                                                  \
		}                                                                                  \
		ret_ = fn(cmd, params, d);                                                         \
		nm_tel_exit(app);                                                                  \
		return ret_;                                                                       \
	}

#endif /* NM_APP_H */
