#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Attack: a template flood from many sources, then a template-withdrawal flood.

2,000 sources (10.99.x.y) each publish 8 IPFIX templates (16,000 in the cache), then send 2,000
datagrams of 350 withdraw-all records each (700,000 withdrawals), interleaved with the real
exporter's capture (softflowd IPFIX, generated/softflowd-v10.pcap). One engine run on net_pcap
for the real capture alone, one for the attacked mix. Asserted:
  - the real exporter's rows (packets, bytes, rate by SamplerAddress) are identical;
  - the attacked run finishes within 60 s: a withdraw-all walks its own (exporter, domain)'s
    templates, so the flood costs ~700,000 short walks; the whole-table walk it replaced cost
    700,000 x 16,000 = 1.1e10 template visits under the writer mutex;
  - peak RSS of the attacked run stays within 64 MiB of the real-only run (state is
    preallocated; the flood makes none).
About 15 s.
"""
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dptest  # noqa: E402
import nmtest  # noqa: E402

CAPTURE = "generated/softflowd-v10.pcap"
N_SRC, N_TMPL, N_FLOOD, PER_DGRAM = 2000, 8, 2000, 350


def ipfix(sets, seq):
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1700000000, seq, 0) + body


def templates():
    recs = b""
    for t in range(N_TMPL):
        fields = [(8, 4), (12, 4), (2, 4), (1, 4), (4, 1)][: 2 + t % 4]
        recs += struct.pack("!HH", 256 + t, len(fields))
        recs += b"".join(struct.pack("!HH", ie, ln) for ie, ln in fields)
    return struct.pack("!HH", 2, 4 + len(recs)) + recs


def withdrawals():
    recs = struct.pack("!HH", 2, 0) * PER_DGRAM
    return struct.pack("!HH", 2, 4 + len(recs)) + recs


def src_addr(i):
    return bytes([10, 99, i >> 8, i & 255])


def rows_of(rows):
    return dptest.sums(rows, key=lambda r: (nmtest.addr_text(r["SamplerAddress"]),
                                            r["SamplingRate"]))


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    path = os.path.join(nmtest.CORPORA, CAPTURE)
    if not os.path.exists(path):
        nmtest.skip("%s absent" % path)
    real = dptest.read_pcap(path)
    ts0 = real[0][0]
    attack = [(ts0, 0, dptest.datagram_frame(src_addr(i), ipfix([templates()], 0))) for i in range(N_SRC)]
    wd = withdrawals()
    attack += [(ts0, 0, dptest.datagram_frame(src_addr(i % N_SRC), ipfix([wd], 1 + i // N_SRC)))
               for i in range(N_FLOOD)]
    mixed, step = [], max(1, len(attack) // max(1, len(real)))
    ai = 0
    for ts, us, data, _ in real:
        mixed.append((ts, us, data))
        for f in attack[ai:ai + step]:
            mixed.append((ts, us, f[2]))
        ai += step
    mixed += [(real[-1][0], real[-1][1], f[2]) for f in attack[ai:]]
    tmp = tempfile.mkdtemp(prefix="nm-attack-wd-")
    attacked = os.path.join(tmp, "attacked.pcap")
    dptest.write_pcap(attacked, mixed)

    problems, res = [], {}
    with nmtest.MockBroker() as broker:
        for name, pcap in (("real", path), ("attacked", attacked)):
            topic = "attack-wd-%s-%d" % (name, os.getpid())
            eng = nmtest.start_engine(broker.bootstrap, topic, pcaps=[pcap], ports="2055")
            peak = eng.peak_rss_kb()
            run = eng.finish(timeout=120)
            if run.rc != 0 or run.summary is None:
                raise RuntimeError("engine run %s failed (%s):\n%s" % (name, run.rc, run.tail()))
            rows = [r for r in dptest.kafka_rows(broker.bootstrap, topic)]
            res[name] = (run, rows_of(rows), peak)
            nmtest.log("%-8s %d frames, %.1f s, peak RSS %d KiB, rows by sampler %s"
                       % (name, len(real) if name == "real" else len(mixed), run.seconds, peak,
                          res[name][1]))
    (_, g0, p0), (r1, g1, p1) = res["real"], res["attacked"]
    s1 = r1.summary
    nmtest.log("attacked: templates %s, template_withdrawals %s"
               % (s1.get("templates"), s1.get("template_withdrawals")))
    if s1.get("templates", 0) < N_SRC * N_TMPL or \
            s1.get("template_withdrawals", 0) < N_FLOOD * PER_DGRAM:
        problems.append("the flood was not decoded: %r / %r" % (s1.get("templates"),
                                                                s1.get("template_withdrawals")))
    if g1 != g0:
        problems.append("real exporter's rows changed: %r -> %r" % (g0, g1))
    if r1.seconds > 60:
        problems.append("attacked run took %.1f s (> 60)" % r1.seconds)
    if p0 and p1 > p0 + 64 * 1024:
        problems.append("peak RSS %d KiB vs %d KiB without the attack" % (p1, p0))
    for p in problems:
        nmtest.log("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
