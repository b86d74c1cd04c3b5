#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""An offline run waits for the flusher instead of folding keys.

A live RX lcore that finds no free table at a second boundary keeps filling the one it has
(rotations_deferred): a NIC cannot be paused. A file can: --pcap reads faster than the flusher
drains, and a table filled with several seconds passes max_flows and folds records into
overflow rows (bench_peer at issue 10's size: 295,080 of 3,560,000 records). So offline, the RX
lcore waits while no table is free (offline_waits).

Input: one corpus export (softflowd IPFIX, TRUTH.tsv: 397 records, 2,445 packets) written 40
times over, copy i shifted by i * (span + 1) s, so each copy is a second or two of its own. The
flusher is slowed to 20 ms a table ([engine] test_drain_delay_us, test only) and max_flows is
512, room for one copy's keys but not two. Asserted: exit 0; records, packets, bytes = 40 x
TRUTH; rows = 40 x a single copy's rows; agg_folded = agg_dropped = 0; rotations_deferred = 0;
offline_waits > 0 (the wait happened, so the test exercises it). ~10 s.
"""
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

CASE = "generated/softflowd-v10.pcap"
COPIES = 40


def replicate(src, dst, k):
    """k copies of a little-endian classic pcap, copy i shifted by i * (span + 1) seconds."""
    data = open(src, "rb").read()
    recs, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        recs.append((sec, usec, data[off + 16:off + 16 + incl], orig))
        off += 16 + incl
    span = recs[-1][0] - recs[0][0] + 1
    with open(dst, "wb") as f:
        f.write(data[:24])
        for c in range(k):
            for sec, usec, fr, orig in recs:
                f.write(struct.pack("<IIII", sec + c * span, usec, len(fr), orig))
                f.write(fr)


def main():
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE)
    src = os.path.join(nmtest.CORPORA, CASE)
    truth = [r for r in nmtest.truth_rows() if r["path"] == src]
    if len(truth) != 1:
        nmtest.skip("%s has no TRUTH.tsv row" % CASE)
    truth = truth[0]
    sets = ("aggregation.max_flows=512", "engine.test_drain_delay_us=20000")
    problems = []
    with tempfile.TemporaryDirectory() as d:
        many = os.path.join(d, "x%d.pcap" % COPIES)
        replicate(src, many, COPIES)
        one = nmtest.run_engine(src, sets=sets, timeout=60)
        run = nmtest.run_engine(many, sets=sets, timeout=120)
    s1, s = one.summary or {}, run.summary or {}
    keys = ("records", "records_packets", "records_bytes", "rows", "agg_folded", "agg_dropped",
            "rotations", "rotations_deferred", "offline_waits")
    nmtest.log("x1:  %s" % {k: s1.get(k) for k in keys})
    nmtest.log("x%d: %s (%.1f s)" % (COPIES, {k: s.get(k) for k in keys}, run.seconds))
    if one.rc != 0 or run.rc != 0:
        problems.append("exit %s / %s\n%s" % (one.rc, run.rc, run.tail()))
    want = {"records": COPIES * truth["records"], "records_packets": COPIES * truth["packets"],
            "records_bytes": COPIES * truth["bytes"], "rows": COPIES * s1.get("rows", -1),
            "agg_folded": 0, "agg_dropped": 0, "rotations_deferred": 0}
    got = {k: s.get(k) for k in want}
    if got != want:
        problems.append("x%d: %s, expected %s" % (COPIES, got, want))
    if not s.get("offline_waits"):
        problems.append("offline_waits %r: the RX lcore never waited, the test did not exercise it"
                        % s.get("offline_waits"))
    if problems:
        print("FAIL:\n" + "\n".join(problems))
        sys.exit(1)
    print("OK: %d copies, %d rows, nothing folded; the RX lcore waited %d times"
          % (COPIES, s["rows"], s["offline_waits"]))


if __name__ == "__main__":
    nmtest.exit_on_signals()
    main()
