#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The offline drain (kafka.drain_timeout_ms) rides out a broker outage, then spools what is left.

Run 1: the mock broker (4 partitions) is down when the engine starts reading the valid NetFlow v5
captures of the corpus (--pcap, one port each), with a spool and librdkafka's default
message.timeout.ms (5 min). The sink sees the broker down and moves every batch to the spool at
once (kafka.spool_after_ms: a kill -9 would not lose them). 12 s later the broker comes up.
Asserted: the engine waited (exit 0 after more than 10 s), every row went through the spool
(kafka_records_spooled == rows, one outage) and was acknowledged, nothing lost, and the topic's
Packets/Bytes equal the TRUTH.tsv sums, rows == the summary's rows.
Run 2: the broker is down again and stays down; kafka.drain_timeout_ms = 3000.
Asserted: exit status 4 (nothing lost, rows wait in the spool), stderr says how many records wait
in the spool, the summary's spool_records == rows and kafka_records_spooled == rows.
Run 2b: still down, the default drain_timeout_ms (60 s), the last capture; SIGTERM 4 s in.
Asserted: the engine exits 4 within 10 s of the signal, the spool holds run 2's and run 2b's rows.
Run 3: broker up, same spool, the last capture again: the spool is replayed; the topic then holds
run 1 + run 2 + run 2b + run 3 exactly (rows and TRUTH sums).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage as ko  # noqa: E402
import nmtest  # noqa: E402


def main():
    ko.require()
    cases = ko.nf5_cases()
    if len(cases) < 2:
        nmtest.skip("fewer than two valid nf5 captures in TRUTH.tsv")
    first, last = cases[:-1], cases[-1]
    ports = ",".join(sorted({t["udp_ports"] for t in cases}))
    pk1 = sum(t["packets"] for t in first)
    by1 = sum(t["bytes"] for t in first)
    tmp = ko.tmpdir()
    spool = os.path.join(tmp, "spool")
    base = ["kafka.exporter_groups=8", "kafka.batch_bytes=16384"]
    problems = []
    broker = None
    engines = []
    try:
        broker = ko.Broker(partitions=4)
        # Run 1: outage during the drain, shorter than drain_timeout_ms.
        broker.down()
        e = ko.LiveEngine(tmp, broker.bootstrap, ports, spool, sets=base, name="run1",
                          pcaps=[t["path"] for t in first])
        engines.append(e)
        time.sleep(12)
        broker.up()
        rc, s = e.wait(timeout=120)
        secs = time.time() - e.t0
        s = s or {}
        nmtest.log("run 1: exit %d after %.1f s, rows %r acked %r spooled %r lost %r" % (
            rc, secs, s.get("rows"), s.get("kafka_records_acked"), s.get("kafka_records_spooled"),
            s.get("lost_records")))
        if rc != 0 or secs < 10 or s.get("kafka_records_acked") != s.get("rows") or \
                s.get("kafka_records_spooled") != s.get("rows") or s.get("kafka_outages") != 1 or \
                s.get("spool_records") or s.get("lost_records"):
            problems.append("run 1 did not ride out the outage: exit %d after %.1f s, %r" % (
                rc, secs, s))
        rows1 = s.get("rows", 0)
        rows, pk, by, _ = ko.topic_rows(broker.bootstrap, broker.partitions)
        if (rows, pk, by) != (rows1, pk1, by1):
            problems.append("after run 1 the topic holds %d rows %d packets %d bytes, expected "
                            "%d/%d/%d" % (rows, pk, by, rows1, pk1, by1))

        # Run 2: the broker stays down; a short drain spools everything.
        broker.down()
        e = ko.LiveEngine(tmp, broker.bootstrap, ports, spool,
                          sets=base + ["kafka.drain_timeout_ms=3000"], name="run2",
                          pcaps=[t["path"] for t in first])
        engines.append(e)
        rc, s = e.wait(timeout=60)
        s = s or {}
        said = [ln for ln in e.output().splitlines() if "wait in the spool" in ln]
        nmtest.log("run 2: exit %d, rows %r, spooled %r, spool_records %r, spool_bytes %r; %s" % (
            rc, s.get("rows"), s.get("kafka_records_spooled"), s.get("spool_records"),
            s.get("spool_bytes"), said))
        rows2 = s.get("rows", 0)
        if rc != 4 or s.get("spool_records") != rows2 or s.get("kafka_records_spooled") != rows2 \
                or s.get("lost_records") or not rows2:
            problems.append("run 2: exit %d (want 4), summary %r" % (rc, s))
        if not said or ("kafka: %d records" % rows2) not in said[0]:
            problems.append("run 2: stderr does not say that %d records wait in the spool: %r"
                            % (rows2, said))

        # Run 2b: still down, the default drain (60 s) cut short by SIGTERM: spooled at once.
        e = ko.LiveEngine(tmp, broker.bootstrap, ports, spool, sets=base, name="run2b",
                          pcaps=[last["path"]])
        engines.append(e)
        time.sleep(4)
        t = time.time()
        rc, s = e.stop(timeout=60)
        s = s or {}
        rows2b = s.get("rows", 0)
        nmtest.log("run 2b: SIGTERM during the drain: exit %d %.1f s later, rows %r, spooled %r, "
                   "recovered %r, spool_records %r" % (
                       rc, time.time() - t, rows2b, s.get("kafka_records_spooled"),
                       s.get("kafka_records_recovered"), s.get("spool_records")))
        if rc != 4 or time.time() - t > 10 or s.get("kafka_records_recovered") != rows2 or \
                s.get("spool_records") != rows2 + rows2b or not rows2b:
            problems.append("run 2b: exit %d after %.1f s, summary %r" % (rc, time.time() - t, s))
        rows2 += rows2b

        # Run 3: broker up; the spool goes out first thing.
        broker.up()
        e = ko.LiveEngine(tmp, broker.bootstrap, ports, spool, sets=base, name="run3",
                          pcaps=[last["path"]])
        engines.append(e)
        rc, s = e.wait(timeout=120)
        s = s or {}
        nmtest.log("run 3: exit %d, rows %r, recovered %r, acked %r, spool_records %r" % (
            rc, s.get("rows"), s.get("kafka_records_recovered"), s.get("kafka_records_acked"),
            s.get("spool_records")))
        if rc != 0 or s.get("kafka_records_recovered") != rows2 or s.get("spool_records") != 0 \
                or s.get("kafka_records_acked") != rows2 + s.get("rows", 0):
            problems.append("run 3: exit %d, summary %r" % (rc, s))
        want = (rows1 + rows2 + s.get("rows", 0), 2 * pk1 + 2 * last["packets"],
                2 * by1 + 2 * last["bytes"])
        rows, pk, by, _ = ko.topic_rows(broker.bootstrap, broker.partitions)
        nmtest.log("topic: %d rows, %d packets, %d bytes; expected %r" % (rows, pk, by, want))
        if (rows, pk, by) != want:
            problems.append("topic holds %d rows %d packets %d bytes, expected %r" % (
                rows, pk, by, want))
        if problems:
            for e in engines:
                nmtest.log("--- %s (tail) ---\n%s" % (e.out_path, e.tail(15)))
    finally:
        for e in engines:
            e.cleanup()
        if broker is not None:
            broker.stop()
        if not problems:
            subprocess.run(["rm", "-rf", tmp])
    return problems


if __name__ == "__main__":
    sys.exit(ko.report(main(), "the drain rode out a 12 s outage, then a short one spooled, and "
                               "the next start delivered it"))
