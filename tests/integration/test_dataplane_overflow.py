#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Bounded aggregation: random-source floods larger than aggregation.max_flows, and late data.

Floods are written here: 64-byte UDP frames from distinct random IPv4 sources (seeded), half in
one second and half in the next, read through a mirror port at 1:1 with max_flows = 1024.
Asserted for 50,000 and 200,000 sources:
 - exit 0, nothing lost, agg_dropped 0;
 - Kafka rows sum to exactly the flood's frames and bytes;
 - the folding is counted: agg_folded == frames - 2 x 1024 (each second keeps 1024 distinct
   keys, every further record folds), and the rows are 2 x (1024 + 1): per second 1024 detailed
   keys and one overflow entry (same second, exporter, interface, protocol) holding the rest;
 - memory is bounded: the engine's peak RSS (VmHWM) with 200,000 sources is within 16 MiB of the
   peak with 50,000 (the tables are sized by max_flows, not by the input).
Late data: a capture whose time goes back (seconds 100, 101, 102, then 100 again, then 104, then
103): the records of second 100, whose table was already handed to the flusher, are counted as
late_records and land in the current second (TimeReceived 102) with their original
TimeFlowStart/TimeFlowEnd (100); second 103 was never handed off (the jump went from 102 to 104),
so its records keep their own second and are not late; every total stays exact.
"""
import os
import random
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

MAX_FLOWS = 1024
T0 = 1700000000
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def write_flood(path, sources, seed):
    rnd = random.Random(seed)
    addrs = rnd.sample(range(1 << 24, 0xDF000000), sources)   # distinct unicast sources
    dst = bytes([192, 0, 2, 1])
    frames = []
    for i, a in enumerate(addrs):
        sec = T0 + (0 if i < sources // 2 else 1)
        frames.append((sec, i % 1000000, dptest.udp_frame(struct.pack("!I", a), dst,
                                                          rnd.randrange(1024, 65536), 53,
                                                          ident=i)))
    dptest.write_pcap(path, frames)
    return len(frames), sum(len(f[2]) for f in frames)


def peak_rss_run(broker, topic, pcap):
    """Run the engine, sampling its VmHWM (peak resident set) until it exits."""
    proc = nmtest.start_engine(broker.bootstrap, topic, mirror_pcaps=[pcap],
                               sets=["mirror.sample_rate=1", "aggregation.max_flows=%d" % MAX_FLOWS],
                               huge=True)
    peak = proc.peak_rss_kb(0.02, timeout=170)
    run = proc.finish(timeout=170)
    run.peak_rss_kb = peak
    return run


def flood(broker, tmpdir):
    peaks = {}
    for sources in (50000, 200000):
        path = os.path.join(tmpdir, "flood-%d.pcap" % sources)
        n, nbytes = write_flood(path, sources, seed=sources)
        topic = "flood-%d" % sources
        run = peak_rss_run(broker, topic, path)
        s = run.summary
        if run.rc != 0 or s is None:
            fail("flood %d: exit %s\n%s" % (sources, run.rc, run.tail(20)))
            continue
        rows = dptest.kafka_rows(broker.bootstrap, topic)
        pk, by = dptest.sums(rows)
        per_sec = dptest.sums(rows, key=lambda r: r["TimeReceived"])
        print("  %6d sources: %d frames %d bytes -> Kafka %d rows %d packets %d bytes; agg_folded "
              "%d agg_dropped %d agg_merged %d; lost %d; peak RSS %.1f MiB; per second %r" % (
                  sources, n, nbytes, len(rows), pk, by, s["agg_folded"], s["agg_dropped"],
                  s["agg_merged"], s["lost_records"], run.peak_rss_kb / 1024.0, per_sec),
              flush=True)
        if (pk, by) != (n, nbytes):
            fail("flood %d: Kafka holds %d/%d, input %d/%d" % (sources, pk, by, n, nbytes))
        if s["lost_records"] or s["agg_dropped"] or s["rows"] != s["kafka_records_acked"]:
            fail("flood %d: lost %d dropped %d rows %d acked %d" % (
                sources, s["lost_records"], s["agg_dropped"], s["rows"], s["kafka_records_acked"]))
        if s["agg_folded"] != n - 2 * MAX_FLOWS:
            fail("flood %d: agg_folded %d, expected %d" % (sources, s["agg_folded"],
                                                           n - 2 * MAX_FLOWS))
        if len(rows) != 2 * (MAX_FLOWS + 1):
            fail("flood %d: %d rows, expected %d (per second %d keys + 1 overflow)" % (
                sources, len(rows), 2 * (MAX_FLOWS + 1), MAX_FLOWS))
        # the overflow row: no addresses or ports, the same second/interface/protocol
        big = [r for r in rows if r["Packets"] > 1]
        if len(big) != 2 or any(r["SrcAddr"] != bytes(16) or r["SrcPort"] or r["Proto"] != 17
                                for r in big):
            fail("flood %d: overflow rows %r" % (sources, [(r["TimeReceived"], r["Packets"],
                                                           r["SrcAddr"], r["Proto"]) for r in big]))
        peaks[sources] = run.peak_rss_kb
    if len(peaks) == 2:
        growth = (peaks[200000] - peaks[50000]) / 1024.0
        print("  peak RSS growth from 50,000 to 200,000 sources: %.1f MiB" % growth)
        if growth > 16:
            fail("peak RSS grew by %.1f MiB with the flood size" % growth)


def late(broker, tmpdir):
    path = os.path.join(tmpdir, "late.pcap")
    src, dst = bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2])
    plan = [(100, 5), (101, 5), (102, 5), (100, 3), (104, 4), (103, 2)]
    frames, i = [], 0
    for sec, n in plan:
        for _ in range(n):
            frames.append((T0 + sec, i, dptest.udp_frame(src, dst, 5000 + i, 53, ident=i)))
            i += 1
    dptest.write_pcap(path, frames)
    total = (len(frames), sum(len(f[2]) for f in frames))
    run = nmtest.run_engine(brokers=broker.bootstrap, topic="late", mirror_pcaps=[path],
                            sets=["mirror.sample_rate=1"], huge=True)
    s = run.summary
    if run.rc != 0 or s is None:
        fail("late: exit %s\n%s" % (run.rc, run.tail(20)))
        return
    rows = dptest.kafka_rows(broker.bootstrap, "late")
    by = dptest.sums(rows, key=lambda r: (r["TimeReceived"], r["TimeFlowStart"], r["TimeFlowEnd"]))
    flen = len(frames[0][2])
    want = {(T0 + 100, T0 + 100, T0 + 100): (5, 5 * flen),
            (T0 + 101, T0 + 101, T0 + 101): (5, 5 * flen),
            (T0 + 102, T0 + 102, T0 + 102): (5, 5 * flen),
            (T0 + 102, T0 + 100, T0 + 100): (3, 3 * flen),
            (T0 + 104, T0 + 104, T0 + 104): (4, 4 * flen),
            (T0 + 103, T0 + 103, T0 + 103): (2, 2 * flen)}
    print("  late: (TimeReceived, TimeFlowStart, TimeFlowEnd) -> (packets, bytes): %r; "
          "late_records %d" % ({(a - T0, b - T0, c - T0): v for (a, b, c), v in by.items()},
                               s["late_records"]), flush=True)
    if by != want or s["late_records"] != 3 or dptest.sums(rows) != total or s["lost_records"]:
        fail("late: rows %r, late_records %d, expected %r and 3" % (by, s["late_records"], want))


def main():
    nmtest.exit_on_signals()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    with tempfile.TemporaryDirectory() as tmpdir, nmtest.MockBroker() as broker:
        print("mock broker at %s\n== random-source floods, max_flows = %d" % (broker.bootstrap,
                                                                             MAX_FLOWS), flush=True)
        flood(broker, tmpdir)
        print("\n== late data", flush=True)
        late(broker, tmpdir)
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("all overflow and late-data checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
