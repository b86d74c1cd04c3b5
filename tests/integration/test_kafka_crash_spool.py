#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""kill -9 of the engine while its spool holds data; the next start replays it, exactly once.

Run 1: the mock broker (4 partitions) is down from the start; the engine reads the valid NetFlow v5
captures of the corpus offline (--pcap, one port each) with a spool and message.timeout.ms = 2 s,
so every batch times out into the spool while the drain waits for the broker. Once
/netmeta/kafka shows every row in the spool (spool_records == records_in, nothing in flight), the
engine is killed with SIGKILL, and a torn entry (a header cut short) is appended to the newest
segment file, as a crash in the middle of a write leaves it.
Run 2: the broker is up; the engine starts with the same spool_dir and reads one more capture.
Asserted: run 2 recovered exactly run 1's rows (kafka_records_recovered), counted one corrupt region
of the appended size and skipped it, exited 1 (a corrupt region lost rows, how many no header
says: lost_records and kafka_records_corrupt stay 0) with the spool empty; the topic
(kcat, every partition, independent decoder) holds exactly run-1 rows + run-2 rows FlowMessages,
whose Packets and Bytes equal the TRUTH.tsv sums of all the captures read in both runs.
"""
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage as ko  # noqa: E402
import nmtest  # noqa: E402

TORN = b"NMSR\x00\x10\x00\x00" + b"\x07" * 13


def main():
    ko.require()
    cases = ko.nf5_cases()
    if len(cases) < 2:
        nmtest.skip("fewer than two valid nf5 captures in TRUTH.tsv")
    first, second = cases[:-1], cases[-1]
    ports = ",".join(sorted({t["udp_ports"] for t in cases}))
    tmp = ko.tmpdir()
    spool = os.path.join(tmp, "spool")
    sets = ["kafka.exporter_groups=8", "kafka.batch_bytes=16384",
            "kafka.property.message.timeout.ms=2000",
            "kafka.drain_timeout_ms=600000"]
    problems = []
    broker = e1 = e2 = None
    try:
        broker = ko.Broker(partitions=4)
        broker.down()
        e1 = ko.LiveEngine(tmp, broker.bootstrap, ports, spool, sets=sets, name="run1",
                           pcaps=[t["path"] for t in first])
        e1.wait_ready()
        deadline, k = time.time() + 90, None
        while time.time() < deadline:
            k = e1.telemetry() or {}
            if k.get("records_in") and k.get("spool_records") == k.get("records_in") and \
                    k.get("records_inflight") == 0:
                break
            time.sleep(0.5)
        nmtest.log("run 1 before kill -9: %r" % {x: k.get(x) for x in (
            "broker_state", "records_in", "records_inflight", "spool_records", "spool_messages",
            "spool_bytes", "records_acked", "last_error")})
        if not k.get("records_in") or k.get("spool_records") != k.get("records_in"):
            problems.append("run 1: the rows never all reached the spool: %r" % k)
            return problems
        rows1 = k["records_in"]
        e1.kill9()
        segs = sorted(glob.glob(os.path.join(spool, "*.seg")))
        nmtest.log("spool after kill -9: %s" % ", ".join(
            "%s %d bytes" % (os.path.basename(p), os.path.getsize(p)) for p in segs))
        if not segs:
            problems.append("no segment files in the spool after kill -9")
            return problems
        with open(segs[-1], "ab") as f:
            f.write(TORN)

        broker.up()
        e2 = ko.LiveEngine(tmp, broker.bootstrap, ports, spool, sets=sets[:2], name="run2",
                           pcaps=[second["path"]])
        rc, s = e2.wait(timeout=150)
        out = e2.output()
        if s is None:
            problems.append("run 2: no summary JSON:\n" + e2.tail())
            return problems
        keys = ["rows", "kafka_records_recovered", "kafka_records_acked", "kafka_messages_replayed",
                "spool_records", "spool_corrupt", "spool_corrupt_bytes", "lost_records"]
        nmtest.log("run 2: exit %d, %s" % (rc, ", ".join("%s %s" % (x, s.get(x)) for x in keys)))
        for ln in out.splitlines():
            if "kafka spool" in ln:
                nmtest.log("run 2 said: " + ln)
        if s.get("kafka_records_recovered") != rows1:
            problems.append("run 2 recovered %r rows, run 1 spooled %d" % (
                s.get("kafka_records_recovered"), rows1))
        if s.get("spool_corrupt") != 1 or s.get("spool_corrupt_bytes") != len(TORN):
            problems.append("spool_corrupt %r (%r bytes), expected 1 (%d bytes)" % (
                s.get("spool_corrupt"), s.get("spool_corrupt_bytes"), len(TORN)))
        # The torn entry lost rows nobody can count (no whole header): exit 1, not 0 or 4.
        if rc != 1 or s.get("lost_records") or s.get("kafka_records_corrupt") or \
                s.get("spool_records"):
            problems.append("run 2: exit %d (expected 1: a corrupt region), lost %r, corrupt rows "
                            "%r, left in the spool %r" % (rc, s.get("lost_records"),
                                                          s.get("kafka_records_corrupt"),
                                                          s.get("spool_records")))
        if s.get("kafka_records_acked") != rows1 + s.get("rows", 0):
            problems.append("run 2 acked %r, expected %d + %r" % (
                s.get("kafka_records_acked"), rows1, s.get("rows")))
        want = (rows1 + s.get("rows", 0), sum(t["packets"] for t in cases),
                sum(t["bytes"] for t in cases))
        rows, pk, by, where = ko.topic_rows(broker.bootstrap, broker.partitions)
        nmtest.log("topic: %d rows, %d packets, %d bytes; expected %r (TRUTH of %d captures)" % (
            rows, pk, by, want, len(cases)))
        if (rows, pk, by) != want:
            problems.append("topic holds %d rows %d packets %d bytes, expected %r" % (
                rows, pk, by, want))
        if problems:
            nmtest.log("--- run 2 output (tail) ---\n" + e2.tail(40))
    finally:
        ko.teardown(tmp, problems, [e1, e2], broker)
    return problems


if __name__ == "__main__":
    sys.exit(ko.report(main(), "kill -9 with a full spool: the next start delivered every row once"))
