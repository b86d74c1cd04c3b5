#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Broker outage in the middle of a live run, with ClickHouse as the reader: flows_raw ends up
holding exactly the truth, once.

Set-up: a private clickhouse-server 18.16 (scripts/clickhouse.sh start) with the json DDL of
proto/clickhouse/json applied (Kafka engine table flows_queue, JSONEachRow, consumer group of its
own -> materialized view -> flows_raw) against nm_mock_broker (4 partitions). The engine
(kafka.format = json, a spool_dir in the test's temp dir, message.timeout.ms = 4 s) captures a
veth whose peer is in a network namespace of the test's own (kafkaoutage.py's machinery) and the
test sends the corpus's valid NetFlow v5 captures 16 times over 46 s from there, one exporter
address per capture. From 8 s to 38 s the broker is down: nm_mock_broker SIGUSR1 / SIGUSR2
(rd_kafka_mock_broker_set_down/up: connections closed and refused, the port stays bound, the
topic's data and the group's committed offsets are kept). Killing the helper and restarting it
on the same port is not possible: librdkafka 2.0.2's mock cluster listens on ephemeral ports
(no setting for the port), and a new mock cluster would start with an empty topic and no
committed offsets -- a different broker, not an outage. Then SIGTERM; the engine drains, exits;
the test waits for flows_raw to reach the totals, then 20 s more for late duplicates.

What ClickHouse 18.16 does (seen in its logs, the temp dir's log/stderr.log, where librdkafka
writes): when the broker goes down its consumer logs "Disconnected", "Connect to ... failed:
Connection refused" and "2/2 brokers are down", keeps its partition assignment and its fetch
positions, and retries with librdkafka's reconnect backoff; when the broker is back it fetches on
from where it stopped (no offset reset in its log, no row twice in flows_raw; the outage, 30 s,
is shorter than librdkafka 2.0.2's session.timeout.ms, 45 s, so the group does not rebalance). Its inserts: 18.16's Kafka engine keeps
a block open as long as a message arrives within 500 ms of the last one (READ_POLL_MS;
stream_flush_interval_ms is only checked between blocks), so under the engine's steady output
flows_raw does not grow while the run goes on; it grows when the stream pauses -- the outage
itself flushes what was consumed before it (flows_raw is non-zero during the outage), and the
end of the run flushes the rest.

Why kafka.compression = lz4: the mock broker keeps only the newest ~5 MiB of each partition
(librdkafka 2.0.2, hard-coded). This run's JSON is ~19 MB, ~9 MB on the busiest partition;
uncompressed, the replay of the spool after the outage pushed partitions past 5 MiB before
ClickHouse fetched them, and ClickHouse's
consumer logged "offset reset (at offset 8, broker 1) to cached BEGINNING offset 13: ... Offset
out of range" -- rows evicted by the mock, lost before anyone read them (the topic check with kcat
fails the same way). lz4 batches (~20x smaller for this JSON) keep each partition far below
that; ClickHouse's librdkafka decompresses them.

Asserted, exactly: the engine decoded what was sent (TRUTH packets/bytes x 16); /netmeta/kafka said
broker down with rows spooled at the end of the outage and up after it; the summary shows rows
spooled, none dropped or lost, exit 0, the spool empty, acked == rows; the topic (kcat, every
partition) holds exactly `rows` JSON rows with the TRUTH sums; flows_raw held rows during the
outage (consumed before it), no more than were acknowledged then; at the end SELECT count(),
sum(Packets), sum(Bytes) FROM flows_raw == (rows, TRUTH packets x 16, TRUTH bytes x 16), still
20 s later, and flows_raw's rows equal the topic's row by row (multiset of TimeReceived,
addresses, ports, protocol, interfaces, Packets, Bytes): no duplicate, no loss. ClickHouse's
consumer must not have reset an offset (that would mean rows evicted unread).
NM_KEEP_TMP=1 keeps the temp dirs (engine output, spool, ClickHouse's logs).
"""
import collections
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage as ko  # noqa: E402
import nmtest  # noqa: E402

SEND_S, DOWN_AT, UP_AT, ROUNDS = 46.0, 8.0, 38.0, 16
PARTITIONS = 4
GROUP = "nmtest-outage"
WAIT_S = 120          # at most this long after the engine's exit for flows_raw to catch up
SETTLE_S = 20         # then this long more, to catch late duplicates (> 2 x 7.5 s flush interval)

ROW_COLS = ["TimeReceived", "SamplerAddress", "SrcAddr", "DstAddr", "NextHop", "SrcPort",
            "DstPort", "Proto", "InIf", "OutIf", "Packets", "Bytes"]
class Sampler(threading.Thread):
    """flows_raw's totals every `every` seconds: samples of (seconds since t0, count, packets,
    bytes)."""

    def __init__(self, ch, t0, every=1.0):
        super().__init__(daemon=True)
        self.ch, self.t0, self.every = ch, t0, every
        self.samples, self.errors = [], []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.samples.append((time.time() - self.t0,) + self.ch.totals())
            except Exception as e:  # noqa: BLE001 - reported, the final check decides
                self.errors.append("%.1f s: %s" % (time.time() - self.t0, e))
            self.done.wait(self.every)

    def last(self):
        return self.samples[-1] if self.samples else None

    def changes(self):
        """The samples where the totals changed (and the first)."""
        out, prev = [], None
        for s in self.samples:
            if prev is None or s[1:] != prev[1:]:
                out.append(s)
            prev = s
        return out


def consumer_log(ch):
    """librdkafka's lines of ClickHouse's consumer (18.16 sets no log callback: they go to the
    server's stderr, log/stderr.log)."""
    try:
        with open(os.path.join(ch.dir, "log", "stderr.log"), errors="replace") as f:
            return [ln.rstrip() for ln in f if ln.startswith("%")]
    except OSError:
        return []


def main():
    ko.require()
    cases = ko.nf5_cases()
    tmp = ko.tmpdir()
    spool = os.path.join(tmp, "spool")
    port = ko.free_udp_port()
    sets = ["kafka.format=json", "kafka.compression=lz4", "kafka.exporter_groups=8",
            "kafka.linger_ms=100",
            # undelivered batches leave librdkafka's queue for the spool after 4 s
            "kafka.property.message.timeout.ms=4000",
            "kafka.property.reconnect.backoff.max.ms=1000"]
    problems = []
    broker = eng = veth = ch = sampler = None
    try:
        ch = nmtest.ClickHouse()
        veth = ko.Veth(len(cases))
        broker = ko.Broker(partitions=PARTITIONS)
        ch.apply("json", broker.bootstrap, nmtest.TOPIC, GROUP)
        nmtest.log("clickhouse-server pid %d on 127.0.0.1:%d (dir %s), json DDL applied, group %s"
                   % (ch.pid, ch.tcp, ch.dir, GROUP))
        nmtest.log("mock broker at %s (%d partitions); engine captures %s, UDP port %d; spool %s"
                   % (broker.bootstrap, PARTITIONS, veth.b, port, spool))
        eng = ko.LiveEngine(tmp, broker.bootstrap, port, spool, sets=sets, iface=veth.b)
        eng.wait_ready()
        sampler = Sampler(ch, time.time())
        sampler.start()
        seen = {}

        def peek(label):
            k = eng.telemetry()
            seen[label] = (k or {}, sampler.last())
            if k:
                nmtest.log("%s: /netmeta/kafka broker %s, queue %s msgs, spool %s records, acked %s, "
                           "dropped %s; flows_raw %s" % (
                               label, k["broker_state"], k["queue_messages"], k["spool_records"],
                               k["records_acked"], k["records_dropped"],
                               "count %d packets %d bytes %d (%.1f s)" % (
                                   sampler.last()[1:] + sampler.last()[:1])
                               if sampler.last() else None))
        schedule = [(DOWN_AT - 1, lambda: peek("before the outage")), (DOWN_AT, broker.down),
                    (UP_AT - 1, lambda: peek("end of the outage")), (UP_AT, broker.up),
                    (SEND_S + 1, lambda: peek("after the outage"))]
        pk, by, n_sent = ko.send_paced(veth, port, ROUNDS, SEND_S, schedule)
        # Until the capture delivered every datagram (libpcap hands frames over in blocks).
        deadline, got = time.time() + 15, None
        while time.time() < deadline:
            st = eng.telemetry("/netmeta/stats") or {}
            got = st.get("datagrams_nf5")
            if got == n_sent:
                break
            time.sleep(0.5)
        nmtest.log("engine saw %r of %d datagrams" % (got, n_sent))
        time.sleep(2)  # the last datagrams' second closes
        t = time.time()
        rc, s = eng.stop()
        nmtest.log("engine exit %d after a %.1f s drain" % (rc, time.time() - t))
        if s is None:
            problems.append("no summary JSON; engine output:\n" + eng.tail())
            return problems
        keys = ["records", "records_packets", "records_bytes", "rows", "kafka_records_acked",
                "kafka_records_spooled", "kafka_messages_spooled", "kafka_messages_replayed",
                "kafka_records_dropped", "kafka_messages_possibly_persisted", "spool_records",
                "lost_records"]
        nmtest.log("summary: " + ", ".join("%s %s" % (k, s.get(k)) for k in keys))
        rows = s.get("rows") or 0
        want = (rows, pk, by)

        # The engine's side.
        if (s.get("records_packets"), s.get("records_bytes")) != (pk, by):
            problems.append("engine decoded %r packets %r bytes, sent %d/%d (capture lost datagrams?)"
                            % (s.get("records_packets"), s.get("records_bytes"), pk, by))
        k_end = seen.get("end of the outage", ({}, None))[0]
        if k_end.get("broker_state") != "down" or not k_end.get("spool_records"):
            problems.append("telemetry at the end of the outage: broker_state %r, spool_records %r; "
                            "expected down and rows spooled" % (k_end.get("broker_state"),
                                                                k_end.get("spool_records")))
        k_after = seen.get("after the outage", ({}, None))[0]
        if k_after.get("broker_state") != "up":
            problems.append("telemetry after the outage: broker_state %r, expected up"
                            % k_after.get("broker_state"))
        if not s.get("kafka_records_spooled"):
            problems.append("the outage sent nothing to the spool (kafka_records_spooled 0)")
        if s.get("spool_records") != 0:
            problems.append("spool_records %r left after the drain" % s.get("spool_records"))
        if rc != 0 or s.get("lost_records") or s.get("kafka_records_dropped"):
            problems.append("exit %d, lost_records %r, kafka_records_dropped %r" % (
                rc, s.get("lost_records"), s.get("kafka_records_dropped")))
        if s.get("kafka_records_acked") != rows:
            problems.append("kafka_records_acked %r != rows %r" % (s.get("kafka_records_acked"), rows))

        msgs = ko.kcat_partitions(broker.bootstrap, PARTITIONS)
        topic = collections.Counter()
        tpk = tby = 0
        for p in range(PARTITIONS):
            n = 0
            for m in msgs[p]:
                for d in nmtest.decode_json_lines(m):
                    topic[nmtest.row_key(d, ROW_COLS)] += 1
                    tpk += int(d["Packets"])
                    tby += int(d["Bytes"])
                    n += 1
            nmtest.log("  partition %d: %d messages, %d rows, %d JSON bytes" % (
                p, len(msgs[p]), n, sum(len(m) for m in msgs[p])))
        trows = sum(topic.values())
        nmtest.log("topic (kcat): %d rows, %d packets, %d bytes; want %r" % (trows, tpk, tby, want))
        if (trows, tpk, tby) != want:
            problems.append("topic holds %d rows %d packets %d bytes, want %r" % (trows, tpk, tby, want))

        # ClickHouse's side.
        during = seen.get("end of the outage", ({}, None))[1]
        if during is None or during[1] == 0:
            problems.append("flows_raw was empty at the end of the outage (%r): nothing produced "
                            "before the outage had been consumed" % (during,))
        elif during[1] > (k_end.get("records_acked") or 0):
            problems.append("flows_raw held %d rows during the outage, more than the %r acknowledged"
                            % (during[1], k_end.get("records_acked")))
        tw = time.time()
        cur = ch.totals()
        while cur != want and time.time() - tw < WAIT_S:
            if cur[0] > rows:
                break  # duplicates: no point waiting
            time.sleep(1)
            cur = ch.totals()
        nmtest.log("flows_raw %.1f s after the engine's exit: count %d, packets %d, bytes %d"
                   % ((time.time() - tw,) + cur))
        if cur == want:
            time.sleep(SETTLE_S)
            cur = ch.totals()
            nmtest.log("flows_raw %d s later: count %d, packets %d, bytes %d" % ((SETTLE_S,) + cur))
        sampler.done.set()
        sampler.join(10)
        nmtest.log("flows_raw over time (changes only; outage %.0f-%.0f s):" % (DOWN_AT, UP_AT))
        for smp in sampler.changes():
            nmtest.log("  %5.1f s: count %d, packets %d, bytes %d" % smp)
        for e in sampler.errors[:5]:
            nmtest.log("  query error at " + e)
        if cur[0] != rows:
            problems.append("flows_raw count() %d != engine rows %d (%s)" % (
                cur[0], rows, "duplicates" if cur[0] > rows else "missing rows"))
        if cur[1:] != (pk, by):
            problems.append("flows_raw sum(Packets) %d sum(Bytes) %d != TRUTH x %d: %d / %d" % (
                cur[1], cur[2], ROUNDS, pk, by))
        table = ch.row_counter(ROW_COLS)
        if table != topic:
            only_t, only_c = topic - table, table - topic
            problems.append("flows_raw differs from the topic row by row: %d rows only on the topic "
                            "(e.g. %r), %d only in flows_raw (e.g. %r)" % (
                                sum(only_t.values()), next(iter(only_t), None),
                                sum(only_c.values()), next(iter(only_c), None)))
        else:
            nmtest.log("row by row: flows_raw == topic (%d rows)" % sum(table.values()))

        log = consumer_log(ch)
        kinds = collections.Counter()
        for ln in log:
            for what in ("Disconnected", "Connection refused", "brokers are down", "Offset out of range",
                         "offset reset", "rebalance", "Heartbeat failed", "session timed out"):
                if what.lower() in ln.lower():
                    kinds[what] += 1
        nmtest.log("ClickHouse's consumer (librdkafka, %d lines): %s" % (
            len(log), ", ".join("%s x%d" % kv for kv in sorted(kinds.items())) or "nothing"))
        if kinds["Offset out of range"] or kinds["offset reset"]:
            problems.append("ClickHouse's consumer reset an offset: the mock broker evicted messages "
                            "before ClickHouse read them")
        if problems:
            for ln in log[-30:]:
                nmtest.log("  " + ln[:300])
            nmtest.log("--- clickhouse-server.err.log (tail) ---\n" + ch.log_tail(20))
            nmtest.log("--- engine output (tail) ---\n" + eng.tail(30))
    finally:
        if sampler is not None:
            sampler.done.set()
        if eng is not None:
            eng.cleanup()
        if broker is not None:
            broker.stop()
        if veth is not None:
            veth.remove()
        if ch is not None:
            ch.stop(keep_dir=bool(problems))
        if problems or os.environ.get("NM_KEEP_TMP"):
            nmtest.log("temp dir kept: %s" % tmp)
        else:
            subprocess.run(["rm", "-rf", tmp])
    return problems


if __name__ == "__main__":
    sys.exit(ko.report(main(), "30 s broker outage mid-run: flows_raw holds exactly the truth, once"))
