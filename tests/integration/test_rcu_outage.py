#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""A broker outage must not stop RCU grace periods (issue 11, point 5), and an idle engine must
not burn its cores (issue 10). Suite kafka, about 60 s.

The flusher runs on the main lcore, a registered QSBR reader. Without a spool, a batch that finds
librdkafka's queue full waits up to 1 s; before the fix the main lcore stayed online through
those waits, so while the broker was down no grace period completed. Templates replaced by an
exporter are freed through call_rcu into the template pool (lib/tmpl: 16 MiB, preallocated): with
no grace period, every replacement takes a new slot and, once the pool is spent, templates are
refused (decode error template_limit) and the exporter's new layouts are lost.

Outage phase: a mock broker with one partition, taken down (SIGUSR1) and up again; no spool;
librdkafka's queue limited to 4 messages (kafka.property.queue.buffering.max.messages), so the
flusher is blocked on it through the outage; an IPFIX exporter (a veth of its own, captured with
net_af_packet) sends 300 flow records a second under a small template, and during the outage
flips a 450-field template between two layouts CHURN_RATE times a second: 14,400 replacements,
about three times what the pool holds (450 fields: a 4 KiB slot, 4,096 slots).
Asserted: every datagram was decoded (the capture lost nothing), every template record was
accepted (templates == sent) and none was refused (template_limit 0); the flusher really was
blocked (records failed after the 1 s wait), else the test would prove nothing.
On main's flusher before this change (b08e0d0) it fails: template_limit 5,203, templates
accepted 9,877 of 15,080 (the flusher went offline only between two table drains).

Idle phase: a live engine with nothing to do and engine.idle_sleep_us=1000: over IDLE_S the main
lcore uses at most IDLE_MAX of a core and wakes at most IDLE_WAKEUPS_MAX times a second, the RX
lcore uses at most IDLE_RX_MAX (/proc/<pid>/task/*/schedstat, status); then WAKE_DGRAMS datagrams sent to the sleeping RX lcore all arrive."""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import idle_cpu  # noqa: E402
import kafkaoutage  # noqa: E402
import nmtest  # noqa: E402

OUTAGE_AT = 3.0      # seconds after the data starts: broker down
CHURN_AT = 5.0       # template churn starts (the queue is full by then)
CHURN_S = 24.0       # and lasts this long
CHURN_RATE = 600     # template replacements per second
DATA_RATE = 20       # data datagrams per second
DATA_RECS = 15       # records in each
BIG_FIELDS = 450     # fields of the churned template (1,816 bytes on the wire)
IDLE_S = 5.0         # idle phase: CPU measured over this long
IDLE_MAX = 0.03      # share of a core the idle main lcore may use
IDLE_WAKEUPS_MAX = 400  # and its wakeups per second (1 ms polls: ~1,000; 5 ms: ~200)
IDLE_RX_MAX = 0.10   # and an idle RX lcore with idle_sleep_us=1000 (spinning: 100 % of a
                     # free core; ~20 % of one on a 2-core machine at load 10)
WAKE_DGRAMS = 200    # then sent to the sleeping RX lcore, all must arrive

KEY_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8)]  # (IE, length)
KEY_LEN = sum(n for _, n in KEY_FIELDS)


def ipfix(seq, sets, domain=1):
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), int(time.time()), seq, domain) + body


def template_set(tid, fields):
    rec = struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", ie, n)
                                                          for ie, n in fields)
    return struct.pack("!HH", 2, 4 + len(rec)) + rec


def big_template(layout):
    """Template 256: the flow keys, then padding fields of an IE no decoder knows; the last one's
    IE is 30000 or 30001, so each flip is a changed template (published, the old one freed)."""
    pad = [(30000, 1)] * (BIG_FIELDS - len(KEY_FIELDS) - 1) + [(30000 + layout, 1)]
    return template_set(256, KEY_FIELDS + pad)


def data_set(n, first):
    recs = []
    for i in range(first, first + n):
        recs.append(struct.pack("!4s4sHHBQQ", bytes([10, 1, (i >> 8) & 255, i & 255]),
                                bytes([10, 2, 0, 1]), 1024 + i % 50000, 443, 6, 1500, 1))
    body = b"".join(recs)
    return struct.pack("!HH", 257, 4 + len(body)) + body


def idle_phase(tmp, veth):
    """An idle live engine with engine.idle_sleep_us=1000: the main lcore and the RX lcore sleep
    (CPU of each over IDLE_S); then datagrams sent to the sleeping RX lcore all arrive."""
    problems = []
    port = kafkaoutage.free_udp_port()
    eng = kafkaoutage.LiveEngine(tmp, "embedded", port, "", iface=veth.b, name="idle",
                                 sets=["engine.stats_interval_ms=0", "engine.idle_sleep_us=1000"])
    try:
        eng.wait_ready()
        time.sleep(2)
        shares = idle_cpu.cpu_shares(eng.proc.pid, IDLE_S)
        main_share, rx, other, wake = idle_cpu.summarise(eng.proc.pid, shares)
        nmtest.log("idle engine (idle_sleep_us=1000), %.0f s: main lcore %.2f %% of a core "
                   "(%.0f wakeups/s), RX lcores %s, other threads %.2f %%"
                   % (IDLE_S, 100 * main_share, wake,
                      ", ".join("%.1f %%" % (100 * x) for x in rx), 100 * other))
        if wake > IDLE_WAKEUPS_MAX:
            problems.append("idle main lcore woke up %.0f times a second (at most %d)"
                            % (wake, IDLE_WAKEUPS_MAX))
        if main_share > IDLE_MAX:
            problems.append("idle main lcore used %.2f %% of a core (at most %.1f %%)"
                            % (100 * main_share, 100 * IDLE_MAX))
        if not rx or max(rx) > IDLE_RX_MAX:
            problems.append("idle RX lcores used %r of a core with idle_sleep_us=1000 (at most "
                            "%.0f %%)" % (rx, 100 * IDLE_RX_MAX))
        sock = veth.sockets()[0]
        small = template_set(257, KEY_FIELDS)
        for i in range(WAKE_DGRAMS):
            sock.sendto(ipfix(i, [small, data_set(1, i)]), (kafkaoutage.COLLECTOR_IP, port))
            time.sleep(0.01)
        sock.close()
        deadline, got = time.time() + 15, None
        while time.time() < deadline:
            got = (eng.telemetry("/netmeta/stats") or {}).get("datagrams_ipfix")
            if got == WAKE_DGRAMS:
                break
            time.sleep(0.3)
        nmtest.log("sleeping RX lcore: %r of %d datagrams decoded" % (got, WAKE_DGRAMS))
        if got != WAKE_DGRAMS:
            problems.append("with idle_sleep_us=1000 the engine decoded %r of %d datagrams"
                            % (got, WAKE_DGRAMS))
        rc, _ = eng.stop(60)
        if rc != 0:
            problems.append("idle engine exit %d:\n%s" % (rc, eng.tail()))
    finally:
        eng.cleanup()
    return problems


def run():
    kafkaoutage.require()
    tmp = kafkaoutage.tmpdir()
    port = kafkaoutage.free_udp_port()
    problems = []
    broker = eng = veth = None
    try:
        veth = kafkaoutage.Veth(1)
        broker = kafkaoutage.Broker(partitions=1)
        sets = ["kafka.batch_bytes=4096", "kafka.linger_ms=50",
                "kafka.drain_timeout_ms=20000",
                "kafka.property.queue.buffering.max.messages=4",
                "kafka.property.reconnect.backoff.max.ms=500"]
        eng = kafkaoutage.LiveEngine(tmp, broker.bootstrap, port, "", sets=sets, iface=veth.b,
                                     name="rcu")
        eng.wait_ready()
        sock = veth.sockets()[0]
        dst = (kafkaoutage.COLLECTOR_IP, port)
        small = template_set(257, KEY_FIELDS)
        seq = n_data = n_tmpl = n_dgrams = 0
        churn = 0
        t0 = time.time()
        end = CHURN_AT + CHURN_S
        next_data, next_churn = 0.0, CHURN_AT
        down = False
        peek = None
        while True:
            t = time.time() - t0
            if t >= end:
                break
            if not down and t >= OUTAGE_AT:
                broker.down()
                down = True
            if peek is None and t >= CHURN_AT + CHURN_S / 2:
                peek = eng.telemetry("/netmeta/kafka") or {}
                nmtest.log("mid-outage: /netmeta/kafka broker %s, queue %s msgs, records "
                           "failed %s" % (peek.get("broker_state"), peek.get("queue_messages"),
                                          peek.get("records_failed")))
            if t >= next_data:
                sock.sendto(ipfix(seq, [small, data_set(DATA_RECS, n_data)]), dst)
                seq += DATA_RECS
                n_data += DATA_RECS
                n_tmpl += 1
                n_dgrams += 1
                next_data += 1.0 / DATA_RATE
            if t >= CHURN_AT and t >= next_churn:
                # a burst of five, then pace: sleep granularity is ~1 ms on a loaded machine
                for _ in range(5):
                    churn += 1
                    sock.sendto(ipfix(seq, [big_template(churn & 1)]), dst)
                    n_tmpl += 1
                    n_dgrams += 1
                next_churn += 5.0 / CHURN_RATE
            wake = min(next_data, max(next_churn, CHURN_AT), end)
            time.sleep(max(0.0, wake - (time.time() - t0)))
        broker.up()
        sock.close()
        nmtest.log("sent %d datagrams in %.1f s: %d template records (%d replacements of "
                   "template 256 during the outage), %d flow records"
                   % (n_dgrams, time.time() - t0, n_tmpl, churn, n_data))
        # Until the capture delivered every datagram and the flusher caught up.
        deadline, st = time.time() + 30, {}
        while time.time() < deadline:
            st = eng.telemetry("/netmeta/stats") or {}
            if (st.get("datagrams_ipfix") == n_dgrams and
                    st.get("rows", 0) + st.get("rows_failed", 0) >= n_data):
                break
            time.sleep(0.5)
        nmtest.log("engine: %r datagrams, %r rows, %r rows failed"
                   % (st.get("datagrams_ipfix"), st.get("rows"), st.get("rows_failed")))
        t = time.time()
        rc, s = eng.stop(90)
        tail = eng.tail(40)
        nmtest.log("engine exit %d after %.1f s" % (rc, time.time() - t))
        if s is None:
            return ["no summary JSON; engine output:\n" + tail]
        if not isinstance(s.get("decode_errors"), dict):
            return ["summary JSON without decode_errors: %r" % sorted(s)]
        tl = s["decode_errors"].get("template_limit", 0)
        nmtest.log("summary: datagrams_ipfix %s, templates %s, template_limit %s, records %s, "
                   "rows %s, kafka_records_failed %s, kafka_records_acked %s"
                   % (s.get("datagrams_ipfix"), s.get("templates"), tl, s.get("records"),
                      s.get("rows"), s.get("kafka_records_failed"),
                      s.get("kafka_records_acked")))
        if s.get("datagrams_ipfix") != n_dgrams:
            problems.append("engine decoded %r IPFIX datagrams, sent %d (capture lost some?)"
                            % (s.get("datagrams_ipfix"), n_dgrams))
        if tl != 0:
            problems.append("%d templates refused (template_limit): replaced templates were "
                            "not freed, no RCU grace period completed during the outage" % tl)
        if s.get("templates") != n_tmpl:
            problems.append("templates accepted %r, sent %d" % (s.get("templates"), n_tmpl))
        if not s.get("kafka_records_failed"):
            problems.append("no batch waited on a full queue (kafka_records_failed 0): the "
                            "outage did not block the flusher, the test proves nothing")
        if (peek or {}).get("broker_state") != "down":
            problems.append("mid-outage telemetry: broker_state %r, expected down"
                            % (peek or {}).get("broker_state"))
        eng.cleanup()
        eng = None

        problems += idle_phase(tmp, veth)
        if problems:
            nmtest.log("--- engine output (tail) ---\n" + tail)
    finally:
        kafkaoutage.teardown(tmp, problems, [eng], broker, veth)
    return problems


if __name__ == "__main__":
    t0 = time.time()
    p = run()
    nmtest.log("test_rcu_outage: %.1f s" % (time.time() - t0))
    sys.exit(kafkaoutage.report(p, "templates replaced during a broker outage were all freed "
                                "through RCU; the idle main lcore sleeps"))
