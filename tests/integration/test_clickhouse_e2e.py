#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""End to end into ClickHouse: NetFlow v5 captures -> engine (kafka.format=json) -> Kafka (mock
broker) -> ClickHouse 18.16 Kafka engine table -> materialized view -> flows_raw.

A private clickhouse-server runs on loopback in a temp dir (scripts/clickhouse.sh start) with the
json DDL of proto/clickhouse/json applied (scripts/clickhouse.sh apply) against the mock broker.
The first capture is produced BEFORE the tables exist, the rest after: ClickHouse's consumer group
is new, so this also checks that it starts at the beginning of the topic (auto_offset_reset =
smallest in the server config written by clickhouse.sh).

Asserted, exactly: flows_raw's count() == the rows the engine reported (so no duplicates and no
losses) == kafka_records_acked, sum(Packets) and sum(Bytes) == the TRUTH.tsv sums; and row by row,
the multiset of (TimeReceived, addresses, ports, protocol, Packets, Bytes) in flows_raw equals
what is on the topic (read with kcat), which checks the view's conversions (text addresses to
FixedString(16), Type to the FlowType enum, renamed columns).
The invalid logstash captures are left out (test_kafka_nf5 covers them).
"""
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

TOPIC = "flow-messages"
WAIT_S = 180          # at most this long for flows_raw to reach the expected totals
SETTLE_S = 20         # then this long more, to catch late duplicates (> 2 x 7.5 s flush interval)

ROW_COLS = ["TimeReceived", "SamplerAddress", "SrcAddr", "DstAddr", "NextHop", "SrcPort",
            "DstPort", "Proto", "SamplingRate", "InIf", "OutIf", "Packets", "Bytes"]
def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    cases = [t for t in nmtest.truth_rows("nf5") if "invalid" not in os.path.basename(t["file"])]
    if not cases:
        nmtest.skip("TRUTH.tsv has no valid nf5 rows")
    want_pk = sum(t["packets"] for t in cases)
    want_by = sum(t["bytes"] for t in cases)

    problems = []
    table = []
    broker = ch = None
    try:
        broker = nmtest.MockBroker()
        print("mock broker at %s" % broker.bootstrap, flush=True)
        ch = nmtest.ClickHouse()
        print("clickhouse-server pid %d on 127.0.0.1:%d (dir %s)" % (ch.pid, ch.tcp, ch.dir), flush=True)

        rows = acked = 0
        for i, t in enumerate(cases):
            if i == 1 or len(cases) == 1 and i == 0:
                # after the first capture (or before the only one): the consumer group is new
                ch.apply("json", broker.bootstrap, TOPIC, "nmtest-e2e")
                print("json DDL applied (%s)" % ("after the first capture" if i else "before"), flush=True)
            run = nmtest.run_engine(t["path"], broker.bootstrap, fmt="json", ports=t["udp_ports"],
                                    topic=TOPIC)
            s = run.summary or {}
            table.append([t["file"], t["packets"], t["bytes"], s.get("records"), s.get("rows"),
                          s.get("records_packets"), s.get("records_bytes"), run.rc])
            if run.rc != 0 or run.summary is None:
                problems.append("%s: engine exit %d, summary %s\n%s" % (
                    t["file"], run.rc, "present" if run.summary else "missing", run.tail(25)))
                continue
            if (s.get("records_packets"), s.get("records_bytes")) != (t["packets"], t["bytes"]):
                problems.append("%s: engine decoded %r packets %r bytes, TRUTH %d/%d" % (
                    t["file"], s.get("records_packets"), s.get("records_bytes"), t["packets"], t["bytes"]))
            if s.get("rows") != s.get("kafka_records_acked") or s.get("lost_records"):
                problems.append("%s: rows %r acked %r lost %r" % (
                    t["file"], s.get("rows"), s.get("kafka_records_acked"), s.get("lost_records")))
            rows += s.get("rows", 0)
            acked += s.get("kafka_records_acked", 0)

        hdr = ["file", "truth pkts", "truth bytes", "records", "rows", "pkts", "bytes", "rc"]
        w = [max(len(str(r[i])) for r in table + [hdr]) for i in range(len(hdr))]
        for r in [hdr] + table:
            print("  ".join(str(v).ljust(w[i]) if i == 0 else str(v).rjust(w[i]) for i, v in enumerate(r)))
        print("engine: %d rows, %d acked; TRUTH: %d packets, %d bytes" % (rows, acked, want_pk, want_by),
              flush=True)

        # Poll flows_raw until it holds what was produced (bounded).
        want = (rows, want_pk, want_by)
        t0 = time.time()
        got = ch.totals()
        last_print = 0
        while got != want and time.time() - t0 < WAIT_S:
            if got[0] > rows:
                break  # more rows than produced: duplicates, no point waiting
            if time.time() - last_print > 10:
                print("  %.0f s: flows_raw count/packets/bytes %r, want %r" % (time.time() - t0, got, want),
                      flush=True)
                last_print = time.time()
            time.sleep(1)
            got = ch.totals()
        print("flows_raw after %.1f s: count %d, packets %d, bytes %d" % ((time.time() - t0,) + got),
              flush=True)
        if got == want:
            time.sleep(SETTLE_S)
            got = ch.totals()
            print("flows_raw %d s later: count %d, packets %d, bytes %d" % ((SETTLE_S,) + got), flush=True)
        if got[0] != rows:
            problems.append("flows_raw count() %d != engine rows %d (%s)" % (
                got[0], rows, "duplicates" if got[0] > rows else "missing rows"))
        if got[1:] != (want_pk, want_by):
            problems.append("flows_raw sum(Packets) %d sum(Bytes) %d != TRUTH %d / %d" % (
                got[1], got[2], want_pk, want_by))

        # Row by row: what is on the topic == what is in flows_raw.
        topic_rows = collections.Counter()
        for p in nmtest.kcat_consume(broker.bootstrap, TOPIC):
            for d in nmtest.decode_json_lines(p):
                topic_rows[nmtest.row_key(d, ROW_COLS)] += 1
        ch_rows = ch.row_counter(ROW_COLS)
        if sum(topic_rows.values()) != rows:
            problems.append("topic holds %d JSON rows, engine reported %d" % (sum(topic_rows.values()), rows))
        if topic_rows != ch_rows:
            only_t = topic_rows - ch_rows
            only_c = ch_rows - topic_rows
            problems.append("flows_raw rows differ from the topic: %d only on the topic (e.g. %r), "
                            "%d only in flows_raw (e.g. %r)" % (
                                sum(only_t.values()), next(iter(only_t), None),
                                sum(only_c.values()), next(iter(only_c), None)))
        else:
            print("row by row: flows_raw == topic (%d rows)" % sum(ch_rows.values()))

        types = ch.query("SELECT FlowType, count() FROM flows_raw GROUP BY FlowType")
        print("FlowType:", types)
        if [r[0] for r in types] != ["NETFLOW_V5"]:
            problems.append("FlowType values %r, expected only NETFLOW_V5" % types)
        bad = ch.query("SELECT count() FROM flows_raw WHERE SamplingRate < 1 "
                       "OR SamplerAddress = toFixedString(IPv6StringToNum('::'), 16) "
                       "OR Date != toDate(TimeReceived)")[0][0]
        if bad != "0":
            problems.append("%s rows with SamplingRate < 1, no SamplerAddress or a wrong Date" % bad)
        errlog = ch.log_tail(20)
        if problems and errlog:
            print("--- clickhouse-server.err.log (tail) ---\n" + errlog)
    finally:
        if ch is not None:
            ch.stop()
        if broker is not None:
            broker.stop()

    if problems:
        for p in problems:
            print("FAIL: " + p)
        return 1
    print("PASS: flows_raw holds exactly the %d rows, %d packets, %d bytes of %d captures" % (
        rows, want_pk, want_by, len(cases)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
