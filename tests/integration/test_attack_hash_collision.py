#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Attack: a hash-collision flood against the per-second aggregation table.

Before the keyed hash (lib/agg, commit 641672b) the table hashed a key with CRC32C in four lanes
(commit 55dbb77). CRC32C without its final inversion is linear over GF(2): the first 8 bytes of
an IPv6 source address go through one lane, a linear map from 64 bits to 32 whose kernel has 32
dimensions or more. A sender that XORs kernel vectors into those bytes makes distinct keys with
one old hash value (as tests/unit/test_agg.c test_hash_collisions_spread does): every one of them
lands on the same index slot, and each insert walks all the keys before it.

Here a sender (10.98.0.1) sends N_KEYS (32,768) IPFIX records whose keys differ only there, by
every combination of 15 kernel vectors, all in one second, interleaved with softflowd's real IPFIX
export (generated/softflowd-v10.pcap). A control run sends the same number of records with random
address bytes instead. tests/integration/oldhash_model (C: the old hash and a linear-probing
index of 1.5 slots a key) first confirms that the flood keys share one old hash value and times
the old index on the first 8,192 of them and on as many random keys. Asserted:
  - the real exporter's rows sum to TRUTH.tsv's packets and bytes in both runs, and are
    identical between them;
  - nothing is lost: N_KEYS flood rows, one per key, packets and bytes as sent; the tables took
    every record; nothing lost, folded or dropped in the summary;
  - the engine's cost is bounded: the attacked run's RX time (summary rx_seconds) is at most
    2 x the control run's + 1 s;
    the old index alone needs N(N-1)/2 key comparisons for the flood (5.4e8; a few per key for
    random keys), at least 20 x its random-key time, and more than twice that bound (its time on 8,192
    keys scaled by the exact ratio of comparisons); both printed;
  - memory is bounded: the attacked run's peak RSS is within 32 MiB of the control run's.
About 30 s (the model ~2 s, two engine runs of ~2 s, their 33,000 rows read back and decoded by
nmtest's protobuf decoder, ~10 s each).
The rows go out as protobuf (3.9 MB, the flood's all in one partition): librdkafka's mock
broker keeps about 5 MiB a partition and drops the oldest message sets beyond it (rdkafka_mock.c
max_size), so a larger flood, or the JSON format (27 MB), would read back short and fail here.
"""
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dptest  # noqa: E402
import nmtest  # noqa: E402

CAPTURE = "generated/softflowd-v10.pcap"
KERNEL_BITS = 15
N_KEYS = 1 << KERNEL_BITS
# The old design's index is timed on the first MODEL_KEYS flood keys (a quarter of a second's
# work on a quiet core); its cost for N_KEYS is that time x N(N-1) / K(K-1), the exact ratio of
# key comparisons when all keys share one slot.
MODEL_KEYS = 8192
PER_DGRAM = 25
ATTACKER = socket.inet_aton("10.98.0.1")
BASE_PREFIX = bytes.fromhex("20010db8aaaa0000")
TEMPLATE_ID = 300
# sourceIPv6Address, destinationIPv6Address, sourceTransportPort, destinationTransportPort,
# protocolIdentifier, packetDeltaCount, octetDeltaCount
FIELDS = [(27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (2, 8), (1, 8)]
DST = bytes.fromhex("20010db8bbbb00000000000000000001")


def crc32c_lane(data):
    """_mm_crc32_u64(0, w) of the 8 bytes in memory order: the linear part of one CRC lane."""
    c = 0
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c


def kernel(n):
    """n independent 64-bit differences d (as 8 bytes, memory order) with crc32c_lane(d) == 0,
    by Gaussian elimination of the lane's response to each bit."""
    piv_x, piv_c, out = {}, {}, []
    for i in range(64):
        c = 1 << i
        x = crc32c_lane(c.to_bytes(8, "little"))
        for j in range(31, -1, -1):
            if not x >> j & 1:
                continue
            if j not in piv_x:
                piv_x[j], piv_c[j] = x, c
                x = c = 0
                break
            x ^= piv_x[j]
            c ^= piv_c[j]
        if c:
            out.append(c.to_bytes(8, "little"))
    assert len(out) >= 32 and all(crc32c_lane(d) == 0 for d in out)
    return out[:n]


def flood_prefixes():
    ker = kernel(KERNEL_BITS)
    out = []
    for i in range(N_KEYS):
        p = bytearray(BASE_PREFIX)
        for j in range(KERNEL_BITS):
            if i >> j & 1:
                p = bytearray(a ^ b for a, b in zip(p, ker[j]))
        out.append(bytes(p))
    return out


def random_prefixes():
    rnd = random.Random(7)
    return [bytes([0x20, 0x01]) + rnd.getrandbits(48).to_bytes(6, "big") for _ in range(N_KEYS)]


def frame(payload, dport):
    return dptest.datagram_frame(ATTACKER, payload, dport)


def ipfix(sets, ts):
    body = b"".join(sets)
    # A constant sequence number: the key's SequenceNum must not tell the records apart.
    return struct.pack("!HHIII", 10, 16 + len(body), ts, 0, 0) + body


def template_set():
    rec = struct.pack("!HH", TEMPLATE_ID, len(FIELDS)) + \
        b"".join(struct.pack("!HH", ie, ln) for ie, ln in FIELDS)
    return struct.pack("!HH", 2, 4 + len(rec)) + rec


def record(prefix, i):
    return prefix + bytes(8) + DST + struct.pack("!HHBQQ", 40000, 53, 17, 1 + i % 3, 100 + i % 7)


def flood_frames(prefixes, ts, dport):
    out = [frame(ipfix([template_set()], ts), dport)]
    for o in range(0, len(prefixes), PER_DGRAM):
        recs = b"".join(record(p, o + k) for k, p in enumerate(prefixes[o:o + PER_DGRAM]))
        out.append(frame(ipfix([struct.pack("!HH", TEMPLATE_ID, 4 + len(recs)) + recs], ts),
                         dport))
    return out


def sent_totals():
    return (sum(1 + i % 3 for i in range(N_KEYS)), sum(100 + i % 7 for i in range(N_KEYS)))


def mix(real, flood):
    """The flood's frames after the real capture's first one, all with its timestamp: one second,
    one table; the real exporter's frames keep their own times."""
    ts, us = real[0][0], real[0][1]
    return [(ts, us, real[0][2])] + [(ts, us, f) for f in flood] + \
        [(t, u, d) for t, u, d, _ in real[1:]]


def run(broker, name, pcap, port):
    topic = "attack-hc-%s-%d" % (name, os.getpid())
    eng = nmtest.start_engine(broker.bootstrap, topic, pcaps=[pcap], ports=port)
    peak = eng.peak_rss_kb()
    r = eng.finish(timeout=150)
    if r.rc != 0 or r.summary is None:
        raise RuntimeError("engine run %s failed (%s):\n%s" % (name, r.rc, r.tail()))
    return r, dptest.kafka_rows(broker.bootstrap, topic), peak


def model(prefixes):
    exe = os.path.join(nmtest.BUILD, "tests", "integration", "oldhash_model")
    if not os.path.exists(exe):
        nmtest.skip("%s not built (x86-64 with SSE4.2 only)" % exe)
    p = subprocess.run([exe], input="".join(p.hex() + "\n" for p in prefixes), text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("oldhash_model: %s" % p.stdout)
    w = p.stdout.split()
    return {w[i]: float(w[i + 1]) for i in range(0, len(w) - 1, 2)}


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    truth = [r for r in nmtest.truth_rows() if r["file"] == CAPTURE]
    if not truth or not os.path.exists(truth[0]["path"]):
        nmtest.skip("%s absent" % CAPTURE)
    truth = truth[0]
    port = truth["udp_ports"].split(",")[0]
    t0 = time.time()
    flood = flood_prefixes()
    m = model(flood[:MODEL_KEYS])
    n, k = N_KEYS, MODEL_KEYS
    old_n = m["seconds_flood"] * n * (n - 1) / (k * (k - 1))
    nmtest.log("old design (oldhash_model), %d keys: flood %d probes %.2f s, random %d probes "
               "%.4f s; for %d keys: %d probes, %.1f s" % (
                   k, m["probes_flood"], m["seconds_flood"], m["probes_random"],
                   m["seconds_random"], n, n * (n - 1) // 2, old_n))
    problems = []
    if m["old_hashes"] != 1 or m["probes_flood"] != k * (k - 1) // 2:
        problems.append("the flood does not collide under the old hash: %r" % m)
    if m["probes_random"] > 4 * k:
        problems.append("the model's index is not a fair table for random keys: %r" % m)
    if m["seconds_flood"] < 20 * max(m["seconds_random"], 1e-4):
        problems.append("the old design's flood cost is not 20 x its random-key cost: %r" % m)

    real = dptest.read_pcap(truth["path"])
    tmp = tempfile.mkdtemp(prefix="nm-attack-hc-")
    res = {}
    with nmtest.MockBroker() as broker:
        for name, pfx in (("control", random_prefixes()), ("attacked", flood)):
            pcap = os.path.join(tmp, name + ".pcap")
            dptest.write_pcap(pcap, mix(real, flood_frames(pfx, real[0][0], int(port))))
            res[name] = run(broker, name, pcap, port)
            os.unlink(pcap)
    attacker = "::ffff:10.98.0.1"
    want = sent_totals()
    for name, (r, rows, peak) in res.items():
        own = [x for x in rows if nmtest.addr_text(x["SamplerAddress"]) == attacker]
        them = [x for x in rows if nmtest.addr_text(x["SamplerAddress"]) != attacker]
        s = r.summary
        nmtest.log("%-8s %.1f s, peak RSS %d KiB, flood rows %d %r, real rows %d %r, agg records "
                   "%s, lost %s, folded %s, dropped %s, %s bytes to Kafka" % (
                       name, r.seconds, peak, len(own), dptest.sums(own), len(them),
                       dptest.sums(them), s.get("agg_records"), s.get("lost_records"),
                       s.get("agg_folded"), s.get("agg_dropped"), s.get("kafka_bytes_acked")))
        if dptest.sums(them) != (truth["packets"], truth["bytes"]):
            problems.append("%s: real exporter's rows %r, TRUTH %r" % (
                name, dptest.sums(them), (truth["packets"], truth["bytes"])))
        if len(own) != n or len({bytes(x["SrcAddr"]) for x in own}) != n or \
                dptest.sums(own) != want:
            problems.append("%s: flood rows %d (%d sources) %r, sent %d keys %r" % (
                name, len(own), len({bytes(x["SrcAddr"]) for x in own}), dptest.sums(own), n,
                want))
        if s.get("agg_records") != n + truth["records"]:
            problems.append("%s: the tables took %r records, sent %d" % (
                name, s.get("agg_records"), n + truth["records"]))
        # kafka_records_dropped is in the summary only when non-zero.
        for k in ("lost_records", "agg_folded", "agg_dropped", "kafka_records_dropped"):
            if s.get(k, 0 if k.startswith("kafka") else None) != 0:
                problems.append("%s: summary %s = %r" % (name, k, s.get(k)))
    (rc, rows_c, pc), (ra, rows_a, pa) = res["control"], res["attacked"]
    key = lambda x: (x["SrcAddr"], x["DstAddr"], x["SrcPort"], x["DstPort"], x["Proto"])  # noqa: E731
    real_c = sorted((key(x), x["Packets"], x["Bytes"]) for x in rows_c
                    if nmtest.addr_text(x["SamplerAddress"]) != attacker)
    real_a = sorted((key(x), x["Packets"], x["Bytes"]) for x in rows_a
                    if nmtest.addr_text(x["SamplerAddress"]) != attacker)
    if real_c != real_a:
        problems.append("the real exporter's rows differ between the runs")
    # The engine's own receive time (summary rx_seconds: the workers' launch to the stop of RX),
    # not the process's wall clock, whose EAL start-up and Kafka drain are a constant that would
    # need an additive slack larger than the old design's cost on a fast, quiet machine.
    rx_c, rx_a = rc.summary["rx_seconds"], ra.summary["rx_seconds"]
    bound = 2 * rx_c + 1
    if rx_a > bound:
        problems.append("attacked run's RX %.2f s > 2 x control's %.2f s + 1 s" % (rx_a, rx_c))
    if old_n <= 2 * bound:
        problems.append("the old design's cost (%.1f s) would not exceed twice the bound (%.1f s): "
                        "the test could not tell them apart" % (old_n, bound))
    if pc and pa > pc + 32 * 1024:
        problems.append("peak RSS %d KiB vs %d KiB in the control run" % (pa, pc))
    nmtest.log("engine RX: attacked %.2f s vs control %.2f s (bound %.2f s; whole runs %.1f s and "
               "%.1f s); old design's index alone: %.1f s for the flood; test %.0f s" % (
                   rx_a, rx_c, bound, ra.seconds, rc.seconds, old_n, time.time() - t0))
    for p in problems:
        nmtest.log("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
