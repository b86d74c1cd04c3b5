#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Rows/s into one Kafka partition and out of it into one ClickHouse 18.16 shard, for the README's
sizing table ("Scaling out"). Not a test: prints figures.

    python3 tests/integration/bench_cluster.py [ROWS] [RUNS]      (default 50000 rows, 3 runs)

The rows are the engine's own JSON (kafka.format = json) for the corpus capture
public/ipfixcol2/example_flows.pcap, read back from a mock broker and repeated up to ROWS, in
messages of 1,000 rows (the engine's batch at ~870 bytes/row is ~1,150 rows). Per run: a fresh
nm_mock_broker -n 3 -p 1; kcat -P -z lz4 writes them into partition 0 (acks=all) -> rows/s per
partition (the producer side: the mock broker, not a Kafka's disks); then a fresh
clickhouse-server 18.16 with the json schema (one Kafka table, one consumer) reads the partition
-> rows/s per shard, from CREATE of the Kafka table to count() = ROWS in flows_raw. Medians and
ranges of RUNS runs. ROWS stays below the mock's ~5 MiB per partition (lz4 here: ~70 bytes a row; 100,000 rows lost the oldest 26 %).
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import nmtest  # noqa: E402

CAPTURE = "public/ipfixcol2/example_flows.pcap"
PER_MSG = 1000


def rows_of_capture():
    t = [r for r in nmtest.truth_rows() if r["file"] == CAPTURE][0]
    with nmtest.MockBroker() as b:
        run = nmtest.run_engine(t["path"], b.bootstrap, fmt="json", ports=t["udp_ports"])
        if run.rc != 0:
            raise RuntimeError("engine: %s" % run.tail())
        lines = []
        for m in nmtest.kcat_consume(b.bootstrap):
            lines += [ln for ln in m.split(b"\n") if ln.strip()]
    return lines


def one_run(lines, n):
    rows = (lines * (n // len(lines) + 1))[:n]
    msgs = [b"\n".join(rows[i:i + PER_MSG]) + b"\n" for i in range(0, n, PER_MSG)]
    payload = b"\x1e".join(msgs)
    with cluster.ClusterBroker(3, 1) as b:
        t = time.time()
        p = subprocess.run(["kcat", "-P", "-b", b.bootstrap, "-t", nmtest.TOPIC, "-p", "0",
                            "-z", "lz4", "-D", "\x1e", "-X", "acks=all",
                            "-X", "message.max.bytes=10000000"],
                           input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=300)
        produce_s = time.time() - t
        if p.returncode != 0:
            raise RuntimeError("kcat -P: %s" % p.stderr.decode(errors="replace"))
        with nmtest.ClickHouse() as ch:
            t = time.time()
            ch.apply("json", b.bootstrap, nmtest.TOPIC, "bench")
            got = None
            deadline = time.time() + 300
            while time.time() < deadline:
                got = int(ch.query("SELECT count() FROM flows_raw")[0][0])
                if got >= n:
                    break
                time.sleep(0.2)
            consume_s = time.time() - t
            if got != n:
                raise RuntimeError("flows_raw holds %r of %d rows" % (got, n))
    return n / produce_s, n / consume_s


def main():
    nmtest.require_corpora()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    lines = rows_of_capture()
    print("%d JSON rows from %s, repeated to %d rows, %d rows a message" % (
        len(lines), CAPTURE, n, PER_MSG), flush=True)
    prod, cons = [], []
    for i in range(runs):
        a, c = one_run(lines, n)
        prod.append(a)
        cons.append(c)
        print("run %d: into one partition %.0f rows/s; one 18.16 shard %.0f rows/s" % (i + 1, a, c),
              flush=True)
    print("median of %d: one partition (mock broker, kcat -P lz4, acks=all) %.0f rows/s "
          "(%.0f..%.0f); one ClickHouse 18.16 shard (Kafka engine, JSONEachRow, 1 consumer) "
          "%.0f rows/s (%.0f..%.0f)" % (runs, statistics.median(prod), min(prod), max(prod),
                                         statistics.median(cons), min(cons), max(cons)))


if __name__ == "__main__":
    main()
