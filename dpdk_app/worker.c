/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The RX worker: the l3fwd shape. Poll every queue of this lcore in bursts, classify each frame,
 * decode collector datagrams or sample mirror frames into records, and add the records to this
 * lcore's aggregation table. At each second boundary the table goes to the flusher through a
 * ring and a drained one comes back. No allocation, no locks, no syscalls on this path (the
 * opt-in idle sleep, [engine] idle_sleep_us, happens only after 256 empty polls).
 */
#include <time.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_vect.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "app.h"

/*
 * [engine] idle_sleep_us: empty polls in a row before an RX lcore sleeps (a few microseconds of
 * spinning), so a short gap between bursts never costs a sleep.
 */
#define NM_WORKER_IDLE_POLLS 256

/* Hand the current table to the flusher and take a drained one, if there is one. */
static void
rotate(struct nm_worker *w)
{
	struct nm_agg_table *t;
	unsigned int spins;

	if (w->cur == NULL || nm_agg_count(w->cur) == 0)
		return;
	/*
	 * Offline, a second boundary inside a burst (the poll loop waits for a free table before
	 * each burst): wait here too, online since a decoder may hold RCU-protected state, so
	 * bounded (~1 s: a main lcore waiting for a grace period, e.g. in a reload, is not
	 * draining), then defer as a live port does.
	 */
	for (spins = 0; w->app->offline && rte_ring_empty(w->free) && spins < 10000; spins++) {
		nm_ctr_inc(&w->st.offline_waits);
		rte_delay_us_sleep(100);
	}
	if (rte_ring_dequeue(w->free, (void **)&t) != 0) {
		/* The flusher is behind: keep filling; keys carry their second, so nothing mixes.
		 */
		nm_ctr_inc(&w->st.rotations_deferred);
		return;
	}
	/* The ring has room for every table this worker owns, so this cannot fail. */
	(void)rte_ring_enqueue(w->full, w->cur);
	w->cur = t;
	w->handed_sec = w->cur_sec;
	nm_ctr_inc(&w->st.rotations);
}

static void
batch_flush(struct nm_rec_batch *b, void *ctx)
{
	struct nm_worker *w = ctx;
	unsigned int i, from = 0;
	uint64_t packets = 0, bytes = 0;

	/*
	 * Records go to the table in runs (nm_agg_add_burst hashes and prefetches a run ahead of
	 * its updates); a run ends where the second changes and the table is rotated. The
	 * counters are shared with readers: summed in registers, stored once per batch.
	 */
	for (i = 0; i < b->n; i++) {
		struct nm_flow_rec *r = &b->recs[i];

		if (r->key.time_received > w->cur_sec) {
			if (i > from)
				(void)nm_agg_add_burst(w->cur, b->recs + from, i - from);
			from = i;
			rotate(w);
			w->cur_sec = r->key.time_received;
		} else if (r->key.time_received <= w->handed_sec) {
			/*
			 * Late: the table of that second went to the flusher already. Count it in
			 * the current second; its TimeFlowStart/End keep the original time. (An
			 * older second whose rotation was deferred is still in this table: it
			 * stays.)
			 */
			r->key.time_received = w->cur_sec;
			nm_ctr_inc(&w->st.late_records);
		}
		packets += r->packets;
		bytes += r->bytes;
	}
	nm_ctr_add(&w->st.records, b->n);
	nm_ctr_add(&w->st.records_packets, packets);
	nm_ctr_add(&w->st.records_bytes, bytes);
	/* Drops and folds are counted by the table. */
	if (b->n > from)
		(void)nm_agg_add_burst(w->cur, b->recs + from, b->n - from);
}

static inline uint64_t
frame_time_ns(const struct nm_app *app, const struct rte_mbuf *m, uint64_t live_ns)
{
	uint64_t ts;

	if (app->ts_dynfield < 0 || !(m->ol_flags & app->ts_dynflag))
		return live_ns;
	ts = *RTE_MBUF_DYNFIELD(m, app->ts_dynfield, rte_mbuf_timestamp_t *);
	/* net_pcap has reported microseconds or nanoseconds depending on the version. */
	return ts < 100000000000000000ULL ? ts * 1000 : ts;
}

static void
handle_collector(struct nm_worker *w, const struct nm_rxq *q, const uint8_t *data, uint32_t len,
		 uint64_t t_ns)
{
	struct nm_app *app = w->app;
	struct nm_udp_view v;
	struct nm_dgram_meta meta;
	enum nm_udp_class c;

	c = likely(q->link == NM_LINK_ETHER) ? nm_pkt_udp_view(data, len, &v)
					     : nm_pkt_udp_view_link(q->link, data, len, &v);
	nm_ctr_inc(&w->st.udp_class[c]);
	if (c != NM_UDP_OK)
		return;
	if (!(app->collector_port_map[v.dst_port >> 3] & (1u << (v.dst_port & 7)))) {
		nm_ctr_inc(&w->st.not_collector_port);
		return;
	}
	/* [collector] allow, before any decoder reads the payload or any state is made for it. */
	if (w->dec.exp != NULL && !nm_exp_allowed(w->dec.exp, v.src)) {
		nm_exp_refused_note(&w->refused, v.src);
		nm_ctr_inc(&w->st.refused);
		return;
	}
	memcpy(meta.exporter, v.src, NM_ADDR_LEN);
	meta.exporter_port = v.src_port;
	meta.dst_port = v.dst_port;
	meta.time_received_ns = t_ns;
	meta.time_received = t_ns / 1000000000ULL;
	(void)nm_decode_datagram(&w->dec, v.payload, v.payload_len, &meta, &w->batch);
}

static inline uint64_t
xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/*
 * The frame's bytes as one contiguous run: the mbuf's own data, or a multi-segment frame copied
 * into the worker's buffer (at most its size). *len gets how many bytes that is.
 */
static inline const uint8_t *
frame_bytes(struct nm_worker *w, const struct rte_mbuf *m, uint32_t *len)
{
	*len = RTE_MIN(m->pkt_len, (uint32_t)sizeof(w->linear));
	if (likely(m->nb_segs == 1))
		return rte_pktmbuf_mtod(m, const uint8_t *);
	nm_ctr_inc(&w->st.multiseg);
	return rte_pktmbuf_read(m, 0, *len, w->linear);
}

/*
 * Clear a record with vector stores: memset() of the 232-byte record compiles to `rep stos`,
 * whose start-up cost was ~8% of the worker's cycles at 1:1 (perf annotate). 32-byte stores
 * where there is AVX2: 8 stores instead of 15.
 */
static inline void
mirror_clear(struct nm_flow_rec *r)
{
	unsigned int i;

	RTE_BUILD_BUG_ON(sizeof(*r) % 8 != 0);
#ifdef __AVX2__
	{
		__m256i *p = (__m256i *)(void *)r, z = _mm256_setzero_si256();

		for (i = 0; i < sizeof(*r) / 32; i++)
			_mm256_storeu_si256(p + i, z);
		for (i = sizeof(*r) / 32 * 32; i < sizeof(*r); i += 8)
			*(uint64_t *)(void *)((uint8_t *)r + i) = 0;
	}
#else
	{
		__m128i *p = (__m128i *)(void *)r, z = _mm_setzero_si128();

		for (i = 0; i < sizeof(*r) / 16; i++)
			_mm_storeu_si128(p + i, z);
		if (sizeof(*r) % 16)
			*(uint64_t *)(void *)((uint8_t *)r + sizeof(*r) - 8) = 0;
	}
#endif
}

/*
 * Port mirror, as NetMeta's portmirror does it: one frame in N becomes a record with the wire
 * length as bytes, 1 packet, SamplingRate N, direction from the rx/tx side of the pair, typed as
 * sFlow from the port's sampler address (default 127.0.0.1, as NetMeta's portmirror) so existing
 * schemas and dashboards take it. sec is the second the frame arrived.
 */
static inline void
mirror_record(struct nm_worker *w, const struct nm_rxq *q, struct nm_flow_rec *r,
	      const uint8_t *data, uint32_t len, uint32_t wire_len, uint64_t sec, uint64_t rate)
{
	mirror_clear(r);
	if (nm_pkt_parse_eth(data, len, &r->key) < 0)
		nm_ctr_inc(&w->st.mirror_parse_errors); /* keep the record: its bytes are real
							   traffic */
	r->key.type = NM_FLOW_SFLOW5;
	memcpy(r->key.sampler_addr, q->sampler_addr, NM_ADDR_LEN);
	r->key.time_received = sec;
	r->key.time_flow_start = sec;
	r->key.time_flow_end = sec;
	r->key.sampling_rate = rate;
	if (q->role == NM_ROLE_MIRROR_TX) {
		r->key.flow_direction = 1;
		r->key.out_if = q->if_index;
	} else {
		r->key.in_if = q->if_index;
	}
	r->bytes = wire_len;
	r->packets = 1;
}

/*
 * A burst from a mirror queue: decide which frames are sampled first, without touching their
 * data (no division per frame: deterministic mode counts down, random mode scales a 32-bit
 * random number), then prefetch and parse only those, straight into the record batch (room for
 * the whole burst is made once: the batch holds two bursts and is flushed after each, so
 * nm_agg_add_burst() takes a whole RX burst at a time). Deterministic mode samples the 1st,
 * (N+1)th, ... frame of each queue. The arrival second is computed once per burst unless the
 * PMD stamps frames (net_pcap replaying a file).
 */
static void
mirror_burst(struct nm_worker *w, struct nm_rxq *q, struct rte_mbuf **pkts, uint16_t n,
	     uint64_t live_ns)
{
	const struct nm_app *app = w->app;
	const struct nm_config *cfg = &app->cfg;
	uint32_t rate = cfg->mirror_sample_rate;
	struct nm_rec_batch *b = &w->batch;
	const uint64_t live_sec = live_ns / 1000000000ULL;
	const uint64_t ts_flag = app->ts_dynfield < 0 ? 0 : app->ts_dynflag;
	/* The sampled frames: the burst itself at 1:1 (no copy), else the ones picked. */
	struct rte_mbuf *pick[NM_BURST], **sel = pick;
	uint16_t k = 0, i;

	RTE_BUILD_BUG_ON(NM_BURST > NM_REC_BATCH);
	nm_ctr_add(&w->st.mirror_frames, n);
	if (rate <= 1) {
		sel = pkts;
		k = n;
	} else if (cfg->mirror_random) {
		for (i = 0; i < n; i++)
			if (((xorshift64(&w->rng) >> 32) * rate) >> 32 == 0)
				pick[k++] = pkts[i];
	} else {
		for (i = 0; i < n; i++) {
			if (q->mirror_skip == 0) {
				pick[k++] = pkts[i];
				q->mirror_skip = rate - 1;
			} else {
				q->mirror_skip--;
			}
		}
	}
	nm_ctr_add(&w->st.mirror_sampled, k);
	nm_ctr_add(&q->sampled, k);
	if (b->n + k > b->cap) {
		b->flush(b, b->ctx);
		b->n = 0;
	}
	for (i = 0; i < k; i++) {
		struct rte_mbuf *m = sel[i];
		uint64_t sec = live_sec;
		uint32_t len;
		const uint8_t *data;

		if (i + 2 < k)
			rte_prefetch0(rte_pktmbuf_mtod(sel[i + 2], void *));
		data = frame_bytes(w, m, &len);
		if (unlikely(data == NULL))
			continue;
		if (m->ol_flags & ts_flag)
			sec = frame_time_ns(app, m, live_ns) / 1000000000ULL;
		mirror_record(w, q, &b->recs[b->n], data, len, m->pkt_len, sec, rate);
		b->n++;
	}
}

/*
 * Give a burst back to its pool. When every mbuf is a plain one (one segment, direct, only this
 * reference, all from one pool, as a PMD's RX delivers them) that is one rte_mempool_put_bulk();
 * rte_pktmbuf_free_bulk() checks and groups each mbuf on the way (41 instructions a frame at
 * 1:1 in callgrind, 6 % of the RX lcore). Anything else goes the general way. refcnt and
 * nb_segs are tested with one read of the 8 bytes from data_off (refcnt is only this lcore's
 * to change when it is 1); an RX burst holds packet heads, whose next is NULL when nb_segs is 1.
 */
static inline void
free_burst(struct rte_mbuf **pkts, uint16_t n)
{
	struct rte_mempool *mp = pkts[0]->pool;
	unsigned int plain = 1;
	uint16_t i;

	RTE_BUILD_BUG_ON(
		offsetof(struct rte_mbuf, refcnt) != offsetof(struct rte_mbuf, data_off) + 2 ||
		offsetof(struct rte_mbuf, nb_segs) != offsetof(struct rte_mbuf, data_off) + 4);
	for (i = 0; i < n; i++) {
		const struct rte_mbuf *m = pkts[i];
		uint64_t rearm;

		memcpy(&rearm, (const uint8_t *)m + offsetof(struct rte_mbuf, data_off), 8);
		plain &= (m->pool == mp) &
			 ((rearm & UINT64_C(0x0000ffffffff0000)) == UINT64_C(0x0000000100010000)) &
			 RTE_MBUF_DIRECT(m);
	}
	if (likely(plain))
		rte_mempool_put_bulk(mp, (void **)pkts, n);
	else
		rte_pktmbuf_free_bulk(pkts, n);
}

static void
handle_burst(struct nm_worker *w, struct nm_rxq *q, struct rte_mbuf **pkts, uint16_t n,
	     uint64_t live_ns)
{
	struct nm_app *app = w->app;
	uint64_t bytes = 0;
	uint16_t i;

	/* Summed here, stored once: the counter is shared with readers, a register is not. */
	for (i = 0; i < n; i++)
		bytes += pkts[i]->pkt_len;
	nm_ctr_add(&w->st.rx_packets, n);
	nm_ctr_add(&w->st.rx_bytes, bytes);
	if (q->role != NM_ROLE_COLLECTOR) {
		mirror_burst(w, q, pkts, n, live_ns);
	} else {
		for (i = 0; i < n; i++) {
			struct rte_mbuf *m = pkts[i];
			uint32_t len;
			const uint8_t *data;

			if (i + 2 < n)
				rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 2], void *));
			data = frame_bytes(w, m, &len);
			if (data != NULL)
				handle_collector(w, q, data, len, frame_time_ns(app, m, live_ns));
		}
	}
	/* Nothing keeps an mbuf past its burst: give them back to the pool in one go. */
	free_burst(pkts, n);
	nm_rec_batch_flush(&w->batch);
}

/* Offline: a queue is drained when it has delivered every frame of its file. */
static bool
all_drained(struct nm_worker *w, unsigned int idle_loops)
{
	unsigned int i;

	for (i = 0; i < w->n_rxq; i++) {
		struct nm_rxq *q = &w->rxq[i];

		if (q->expect_pkts != 0 && q->rx_pkts < q->expect_pkts) {
			struct rte_eth_stats es;

			/* Frames lost inside the PMD (no mbuf) will never arrive. */
			if (idle_loops < 1000 || rte_eth_stats_get(q->port_id, &es) != 0 ||
			    q->rx_pkts + es.rx_nombuf + es.imissed + es.ierrors < q->expect_pkts)
				return false;
		}
		if (q->expect_pkts == 0 && idle_loops < 2000000)
			return false; /* unknown length: a long idle spell ends it */
	}
	return true;
}

int
nm_worker_main(void *arg)
{
	struct nm_worker *w = arg;
	struct nm_app *app = w->app;
	struct rte_mbuf *pkts[NM_BURST];
	unsigned int idle = 0, i;
	uint64_t live_ns = 0, last_tsc = 0;
	/* Computed once: a 64-bit division per poll cost ~25 cycles of every empty loop. */
	const uint64_t clock_tsc = app->tsc_hz / 10000;
	/* Test-only ([engine] test_rx_delay_us): a slow lcore, so NIC drops can be provoked. */
	const unsigned int delay_us = app->cfg.test_rx_delay_us;
	/*
	 * [engine] idle_sleep_us: opt-in idle policy for live ports (an offline run reads files
	 * as fast as it can and counts idle polls to see the end).
	 */
	const unsigned int idle_us = app->offline ? 0 : app->cfg.idle_sleep_us;
	struct timespec ts;

	(void)nm_signals_worker();
	rcu_register_thread();
	w->batch.recs = w->recs;
	w->batch.cap = NM_REC_BATCH;
	w->batch.flush = batch_flush;
	w->batch.ctx = w;
	w->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)w->lcore_id << 32);

	NM_LOG(INFO, "worker %u on lcore %u polls %u queue(s)\n", w->index, w->lcore_id, w->n_rxq);
	while (!app->stop_rx) {
		uint16_t total = 0;
		uint64_t tsc = rte_rdtsc();

		/* The wall clock is read from the vDSO at most every ~100 us, never per frame. */
		if (tsc - last_tsc > clock_tsc) {
			clock_gettime(CLOCK_REALTIME, &ts);
			live_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
			last_tsc = tsc;
			/* Live ports: close the second when the clock passes it, even with no
			 * traffic. */
			if (!app->offline && w->cur_sec != 0 &&
			    live_ns / 1000000000ULL > w->cur_sec) {
				rotate(w);
				w->cur_sec = live_ns / 1000000000ULL;
			}
		}
		/*
		 * Offline: a file has no line rate to keep. With no free table left for the next
		 * second, wait for the flusher rather than read on: a deferred rotation keeps one
		 * table filling past max_flows, and a file read faster than it was drained lost its
		 * keys to overflow rows (295,080 of 3,560,000 records, bench_peer at issue 10's
		 * size). Between bursts no RCU-protected state is held: the wait is offline.
		 */
		if (unlikely(app->offline) && rte_ring_empty(w->free)) {
			nm_ctr_inc(&w->st.offline_waits);
			rcu_thread_offline();
			rte_delay_us_sleep(100);
			rcu_thread_online();
			continue;
		}
		for (i = 0; i < w->n_rxq; i++) {
			struct nm_rxq *q = &w->rxq[i];
			uint16_t n = rte_eth_rx_burst(q->port_id, q->queue_id, pkts, NM_BURST);

			if (n == 0)
				continue;
			nm_ctr_add(&q->rx_pkts, n);
			nm_ctr_inc(&w->st.bursts);
			total += n;
			handle_burst(w, q, pkts, n, live_ns);
		}
		rcu_quiescent_state();
		/* Load for /netmeta/ports: the share of polls that found work. */
		nm_ctr_inc(&w->st.polls);
		if (total == 0) {
			idle++;
			if (app->offline && all_drained(w, idle))
				break;
			if (unlikely(idle_us != 0) && idle >= NM_WORKER_IDLE_POLLS) {
				/* Nothing for a while: sleep, offline so no grace period waits. */
				rcu_thread_offline();
				rte_delay_us_sleep(idle_us);
				rcu_thread_online();
			}
		} else {
			idle = 0;
			nm_ctr_inc(&w->st.busy_polls);
			if (unlikely(delay_us != 0))
				rte_delay_us_block(delay_us);
		}
	}
	/* Hand off what is left; the flusher drains it before the summary. */
	while (w->cur != NULL && nm_agg_count(w->cur) != 0) {
		struct nm_agg_table *t;

		if (rte_ring_dequeue(w->free, (void **)&t) == 0) {
			(void)rte_ring_enqueue(w->full, w->cur);
			w->cur = t;
			nm_ctr_inc(&w->st.rotations);
		} else {
			rcu_quiescent_state();
			rte_pause();
		}
	}
	rcu_unregister_thread();
	w->done = true;
	NM_LOG(INFO, "worker %u done: %" PRIu64 " frames\n", w->index, w->st.rx_packets);
	return 0;
}
