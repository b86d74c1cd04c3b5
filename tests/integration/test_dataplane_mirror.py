#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Port-mirror conservation: raw captures -> engine (--mirror-pcap, net_pcap) -> Kafka (mock
broker) -> kcat -> independent protobuf decoder, against MIRROR-TRUTH.tsv / mirror_truth.py and
tshark.

Asserted:
 1. 1:1, every capture of MIRROR-TRUTH.tsv (mixed.pcap among them), one engine run each:
    exit 0, nothing lost, no late record; FlowMessages on the topic == summary rows == Kafka acks;
    sum(Packets) == frames and sum(Bytes) == wire bytes exactly; per TimeReceived second the same
    (frames, bytes) as `mirror_truth.py --per-second`; every row Type SFLOW_5 (as NetMeta's
    portmirror types them), SamplerAddress ::ffff:127.0.0.1, SamplingRate 1, FlowDirection 0,
    InIf = the port's if_index, TimeFlowStart == TimeFlowEnd == TimeReceived.
 2. Fields against tshark (mixed.pcap and the VLAN/MPLS/IPv6 captures): per frame tshark's MACs,
    VLAN id, addresses, protocol, ports, TCP flags and wire length give a key; the multiset of
    (key -> packets, bytes) per second equals the engine's rows projected on the same fields.
 3. Direction: one run with two net_pcap ports from a config file, the same capture as mirror-rx
    and as mirror-tx: rx rows have FlowDirection 0 and InIf set (OutIf 0), tx rows FlowDirection 1
    and OutIf set (InIf 0), each side sums to the capture's totals.
 4. 1:N deterministic (N = 10, 100), two captures as two ports (one queue each) in one run: per
    port exactly ceil(frames/N) packets (the 1st, (N+1)th, ... frame of the queue: bytes equal the
    sum of exactly those frames), SamplingRate N on every row.
 5. 1:N random (N = 10, 100) on mixed.pcap: sum(Packets*SamplingRate) and sum(Bytes*SamplingRate)
    within the binomial 99.9% bound (3.29 standard deviations) of the capture's totals.
"""
import collections
import math
import os
import shutil
import socket
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

LOCALHOST = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
Z = 3.29   # two-sided 99.9%

problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def check_run(run, what):
    s = run.summary
    if run.rc != 0 or s is None:
        fail("%s: exit %s, summary %s\n%s" % (what, run.rc, "present" if s else "missing",
                                               run.tail(20)))
        return False
    if s["lost_records"] or s["kafka_records_failed"] or s["rows"] != s["kafka_records_acked"]:
        fail("%s: lost %d, failed %d, rows %d acked %d" % (
            what, s["lost_records"], s["kafka_records_failed"], s["rows"], s["kafka_records_acked"]))
        return False
    return True


# --------------------------------------------------------------------------------------------
# 1. conservation at 1:1

def conservation(broker, truth, per_second):
    print("\n== 1:1 conservation on %d captures" % len(truth), flush=True)
    print("%-58s %7s %9s %6s %5s  %s" % ("capture", "frames", "bytes", "rows", "secs", "result"))
    for i, t in enumerate(truth):
        topic = "mirror-cons-%d" % i
        run = nmtest.run_engine(brokers=broker.bootstrap, topic=topic, mirror_pcaps=[t["path"]],
                                sets=["mirror.sample_rate=1"], huge=True)
        bad = len(problems)
        if not check_run(run, t["file"]):
            continue
        s = run.summary
        rows = dptest.kafka_rows(broker.bootstrap, topic)
        pk, by = dptest.sums(rows)
        if len(rows) != s["rows"]:
            fail("%s: %d FlowMessages on the topic, summary rows %d" % (t["file"], len(rows), s["rows"]))
        if (pk, by) != (t["frames"], t["bytes"]):
            fail("%s: sum(Packets) %d sum(Bytes) %d, truth %d / %d" % (t["file"], pk, by,
                                                                    t["frames"], t["bytes"]))
        if (s["mirror_frames"], s["mirror_sampled"], s["records_packets"], s["records_bytes"]) != \
                (t["frames"], t["frames"], t["frames"], t["bytes"]):
            fail("%s: summary mirror_frames/sampled/records_packets/bytes %d/%d/%d/%d" % (
                t["file"], s["mirror_frames"], s["mirror_sampled"], s["records_packets"],
                s["records_bytes"]))
        if s["late_records"]:
            fail("%s: %d late records in a capture whose time never goes back" % (
                t["file"], s["late_records"]))
        got = dptest.sums(rows, key=lambda r: r["TimeReceived"])
        want = per_second[t["path"]]
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:6]
            fail("%s: per-second totals differ from mirror_truth.py --per-second (%d vs %d "
                 "seconds), e.g. %r" % (t["file"], len(got), len(want), diff))
        for r in rows:
            exp = {"Type": 1, "SamplerAddress": LOCALHOST, "SamplingRate": 1, "FlowDirection": 0,
                   "InIf": 1, "OutIf": 0, "TimeFlowStart": r["TimeReceived"],
                   "TimeFlowEnd": r["TimeReceived"]}
            off = {k: r[k] for k, v in exp.items() if r[k] != v}
            if off or r["_unknown"]:
                fail("%s: row fields %r (expected %r), unknown %r" % (
                    t["file"], off, {k: exp[k] for k in off}, r["_unknown"]))
                break
        print("%-58s %7d %9d %6d %5d  %s" % (t["file"], pk, by, len(rows), len(got),
                                            "ok" if len(problems) == bad else "FAIL"), flush=True)


# --------------------------------------------------------------------------------------------
# 2. fields against tshark

TSHARK_FIELDS = ["frame.time_epoch", "frame.len", "eth.src", "eth.dst", "vlan.id", "ip.src",
                 "ip.dst", "ip.proto", "ipv6.src", "ipv6.dst", "ipv6.nxt", "tcp.srcport",
                 "tcp.dstport",
                 "udp.srcport", "udp.dstport", "tcp.flags", "icmp.type", "icmpv6.type",
                 "mpls.label"]


def mac_int(text):
    return int(text.replace(":", ""), 16) if text else 0


def addr16(text):
    if not text:
        return bytes(16)
    if ":" in text:
        return socket.inet_pton(socket.AF_INET6, text)
    return bytes(10) + b"\xff\xff" + socket.inet_aton(text)


def tshark_keys(path):
    """{(second, src_mac, dst_mac, vlan, src, dst, proto, sport, dport, tcp_flags): (pkts, bytes)} from
    tshark. The engine parses the outermost IP header and the transport header right after it
    (tunnels are not followed), so the addresses are those of the first IP layer in
    frame.protocols, and ports/flags count only when TCP/UDP/SCTP follows that layer directly
    (tshark also dissects inner packets of 6in4/IP-in-IP/GRE and the packet an ICMP error quotes)."""
    fields = ["frame.protocols"] + TSHARK_FIELDS
    p = subprocess.run(["tshark", "-r", path, "-n", "-T", "fields", "-E", "separator=\t",
                        "-E", "occurrence=f"] + sum([["-e", f] for f in fields], []),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True,
                       timeout=120)
    out = collections.defaultdict(lambda: [0, 0])
    for line in p.stdout.splitlines():
        v = dict(zip(fields, line.split("\t")))
        layers = v["frame.protocols"].split(":")
        first_ip = next((i for i, x in enumerate(layers) if x in ("ip", "ipv6")), None)
        src = dst = ""
        sport = dport = flags = proto = 0
        if first_ip is not None:
            fam = layers[first_ip]
            src, dst = v[fam + ".src"], v[fam + ".dst"]
            # IPv6 extension headers are layers of their own in tshark ("ipv6.hopopts"...)
            j = first_ip + 1
            while j < len(layers) and layers[j].startswith("ipv6."):
                j += 1
            nxt = layers[j] if j < len(layers) else ""
            if fam == "ip" or j == first_ip + 1:
                proto = int(v["ip.proto" if fam == "ip" else "ipv6.nxt"] or 0)
            else:   # after extension headers: the protocol of the next layer
                proto = {"tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}.get(nxt, -1)
            if nxt in ("tcp", "udp"):
                sport, dport = int(v[nxt + ".srcport"] or 0), int(v[nxt + ".dstport"] or 0)
            if nxt == "tcp" and v["tcp.flags"]:
                flags = int(v["tcp.flags"], 16) & 0xFF
        key = (int(float(v["frame.time_epoch"])), mac_int(v["eth.src"]), mac_int(v["eth.dst"]),
               int(v["vlan.id"] or 0), addr16(src), addr16(dst), proto, sport, dport, flags)
        out[key][0] += 1
        out[key][1] += int(v["frame.len"])
    return {k: tuple(v) for k, v in out.items()}


def engine_key(r):
    return (r["TimeReceived"], r["SrcMac"], r["DstMac"], r["VlanId"],
            r["SrcAddr"] if r["Etype"] in (0x800, 0x86DD) or r["MPLSCount"] else bytes(16),
            r["DstAddr"] if r["Etype"] in (0x800, 0x86DD) or r["MPLSCount"] else bytes(16),
            r["Proto"], r["SrcPort"], r["DstPort"], r["TCPFlags"])


FIELD_CASES = ["generated/inputs/mixed.pcap",
               "generated/inputs/src/tcpdump-dns_tcp.vlan42.pcap",
               "generated/inputs/src/tcpdump-dhcpv6-ia-na.vlan43.pcap",
               "generated/inputs/src/nDPI-http_ipv6.pcap",
               "public/akvorado/decoder/mpls-ipv4.pcap",
               "public/akvorado/decoder/mpls-ipv6.pcap",
               "public/akvorado/decoder/vlan-ipv6.pcap"]


def fields_vs_tshark(broker):
    if shutil.which("tshark") is None:
        print("\n== fields vs tshark: SKIPPED (tshark not installed)")
        return
    print("\n== record fields vs tshark (MACs, VLAN, addresses, protocol, ports, TCP flags, bytes)",
          flush=True)
    for i, rel in enumerate(FIELD_CASES):
        path = os.path.join(nmtest.CORPORA, rel)
        topic = "mirror-fields-%d" % i
        run = nmtest.run_engine(brokers=broker.bootstrap, topic=topic, mirror_pcaps=[path],
                                sets=["mirror.sample_rate=1"], huge=True)
        if not check_run(run, rel):
            continue
        rows = dptest.kafka_rows(broker.bootstrap, topic)
        got = dptest.sums(rows, key=engine_key)
        want = tshark_keys(path)
        only_e = {k: v for k, v in got.items() if want.get(k) != v}
        only_t = {k: v for k, v in want.items() if got.get(k) != v}
        nkeys = len(want)
        if only_e or only_t:
            fail("%s: %d of %d keys differ from tshark; engine %r; tshark %r" % (
                rel, max(len(only_e), len(only_t)), nkeys, list(only_e.items())[:3],
                list(only_t.items())[:3]))
        # protocols: every row's Proto/Etype against the frames' (checked on the summed level)
        protos = collections.Counter((r["Etype"], r["Proto"]) for r in rows)
        print("  %-56s %5d keys  %s  etype/proto %s" % (
            rel, nkeys, "ok" if not (only_e or only_t) else "FAIL",
            ", ".join("%04x/%d" % k for k in sorted(protos)[:8])), flush=True)


# --------------------------------------------------------------------------------------------
# 3. direction

def direction(broker):
    print("\n== mirror-rx vs mirror-tx (one run, two net_pcap ports from a config)", flush=True)
    path = dptest.MIXED
    t = next(r for r in dptest.mirror_truth_rows() if r["path"] == path)
    cfg = ("[eal]\nargs = -l 0-1\n[mirror]\nsample_rate = 1\n"
           "[port.rx]\ndevice = net_pcap10,rx_pcap=%s\nrole = mirror-rx\n"
           "[port.tx]\ndevice = net_pcap11,rx_pcap=%s\nrole = mirror-tx\n" % (path, path))
    run = nmtest.run_engine(brokers=broker.bootstrap, topic="mirror-dir", config_text=cfg,
                            huge=True)
    if not check_run(run, "direction"):
        return
    rows = dptest.kafka_rows(broker.bootstrap, "mirror-dir")
    by = dptest.sums(rows, key=lambda r: (r["FlowDirection"], r["InIf"], r["OutIf"]))
    # DPDK port ids follow the vdev order: rx is port 0 (if_index 1), tx port 1 (if_index 2)
    want = {(0, 1, 0): (t["frames"], t["bytes"]), (1, 0, 2): (t["frames"], t["bytes"])}
    print("  (FlowDirection, InIf, OutIf) -> (packets, bytes): %r" % by)
    if by != want:
        fail("direction: %r, expected %r" % (by, want))


# --------------------------------------------------------------------------------------------
# 4./5. sampling

def deterministic(broker):
    print("\n== 1:N deterministic, two ports (one queue each) in one run", flush=True)
    files = [dptest.MIXED, os.path.join(nmtest.CORPORA, "generated/inputs/src/nDPI-1kxun.pcap")]
    frames = [dptest.read_pcap(f) for f in files]
    for n in (10, 100):
        topic = "mirror-det-%d" % n
        run = nmtest.run_engine(brokers=broker.bootstrap, topic=topic, mirror_pcaps=files,
                                sets=["mirror.sample_rate=%d" % n, "mirror.mode=deterministic"],
                                huge=True)
        if not check_run(run, "deterministic 1:%d" % n):
            continue
        rows = dptest.kafka_rows(broker.bootstrap, topic)
        if any(r["SamplingRate"] != n for r in rows):
            fail("1:%d: rows with SamplingRate %r" % (n, {r["SamplingRate"] for r in rows}))
        got = dptest.sums(rows, key=lambda r: r["InIf"])
        for i, fr in enumerate(frames):
            exp = (math.ceil(len(fr) / n), sum(f[3] for j, f in enumerate(fr) if j % n == 0))
            print("  1:%-4d port %d %-40s %d frames -> %r (expected %r: ceil(frames/N), the "
                  "bytes of frames 1, N+1, ...)" % (n, i, os.path.basename(files[i]), len(fr),
                                                    got.get(i + 1), exp))
            if got.get(i + 1) != exp:
                fail("deterministic 1:%d port %d: %r, expected %r" % (n, i, got.get(i + 1), exp))


def random_mode(broker):
    print("\n== 1:N random on mixed.pcap: scaled totals within the binomial 99.9%% bound", flush=True)
    fr = dptest.read_pcap(dptest.MIXED)
    n_fr, n_by = len(fr), sum(f[3] for f in fr)
    sq = sum(f[3] ** 2 for f in fr)
    for n in (10, 100):
        topic = "mirror-rand-%d" % n
        run = nmtest.run_engine(brokers=broker.bootstrap, topic=topic, mirror_pcaps=[dptest.MIXED],
                                sets=["mirror.sample_rate=%d" % n, "mirror.mode=random"],
                                huge=True)
        if not check_run(run, "random 1:%d" % n):
            continue
        rows = dptest.kafka_rows(broker.bootstrap, topic)
        sp = sum(r["Packets"] * r["SamplingRate"] for r in rows)
        sb = sum(r["Bytes"] * r["SamplingRate"] for r in rows)
        p = 1.0 / n
        # scaled count N*K, K ~ Bin(frames, 1/N): sd = N*sqrt(frames p (1-p));
        # scaled bytes N*sum(b_i X_i): sd = N*sqrt(p (1-p) sum b_i^2)
        bp = Z * n * math.sqrt(n_fr * p * (1 - p))
        bb = Z * n * math.sqrt(p * (1 - p) * sq)
        print("  1:%-4d scaled packets %d (truth %d, bound +-%.0f)  scaled bytes %d (truth %d, "
              "bound +-%.0f)" % (n, sp, n_fr, bp, sb, n_by, bb))
        if abs(sp - n_fr) > bp or abs(sb - n_by) > bb:
            fail("random 1:%d: scaled totals outside the 99.9%% bound" % n)
        if run.summary["mirror_frames"] != n_fr or run.summary["mirror_sampled"] != sum(
                r["Packets"] for r in rows):
            fail("random 1:%d: summary mirror_frames %d sampled %d, rows hold %d packets" % (
                n, run.summary["mirror_frames"], run.summary["mirror_sampled"],
                sum(r["Packets"] for r in rows)))


def main():
    nmtest.exit_on_signals()
    dptest.require_mirror_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    truth = dptest.mirror_truth_rows()
    per_second = dptest.mirror_truth_per_second([t["path"] for t in truth])
    with nmtest.MockBroker() as broker:
        print("mock broker at %s" % broker.bootstrap, flush=True)
        for step in (lambda: conservation(broker, truth, per_second),
                     lambda: fields_vs_tshark(broker), lambda: direction(broker),
                     lambda: deterministic(broker), lambda: random_mode(broker)):
            try:
                step()
            except Exception:  # noqa: BLE001
                fail(traceback.format_exc())
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("all mirror checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
