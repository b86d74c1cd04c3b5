#!/usr/bin/env python3
"""Mirror-path benchmark: frames/s on one RX lcore at 1:1 and 1:N sampling.

    bench_mirror.py [--runs N] [--seconds S] [--rates 1,1000] [--inputs 64,imix,mixed] [--ab ENGINE]
                    [--smoke]

Input: net_pcap with infinite_rx (the PMD replays the file from memory, copying each frame into
a fresh mbuf), role mirror-rx, full parsing and per-second aggregation, rows to an embedded Kafka
broker. Three inputs: 64-byte frames (1024 distinct UDP flows, generated here), a generated IMIX
(64/594/1518 bytes, 7:4:1) and a copy of the corpus' mixed.pcap (real traffic) without its frames
above 1518 bytes (291 GRO-merged ones, up to 37506 bytes): infinite_rx keeps every frame in one
2048-byte mbuf and refuses longer ones.
rx_seconds (the denominator) runs from the workers' launch to the stop of RX, so EAL/port set-up
and the final flush and Kafka drain are outside it; each run checks that every sampled frame
became a record that was aggregated. Prints one line per (input, rate) with the median of the
runs and the RX lcore's CPU time per frame (its thread's /proc schedstat: on a shared machine
the wall-clock rate also counts the time the lcore waited for a CPU, this does not); --smoke does one short run and only checks that the figures are there (suite bench-smoke).
--ab ENGINE: an A/B, the runs alternate between ENGINE (A, e.g. a build of main) and this build's
engine (B), and each line gives both medians.
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("NM_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CORPORA = os.environ.get("NM_CORPORA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "corpora"))
ENGINE = os.path.join(BUILD, "dpdk_app", "netmeta")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write_64b_pcap(path, flows=1024):
    """60-byte frames (64 on the wire with FCS): Ethernet/IPv4/UDP, one flow per source port."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(flows):
            payload = b"\0" * 18
            udp = struct.pack("!HHHH", 1024 + i, 53, 8 + len(payload), 0) + payload
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                             bytes([10, 0, i >> 8, i & 0xFF]), bytes([10, 1, 0, 1]))
            ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
            eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
            frame = eth + ip + udp
            f.write(struct.pack("<IIII", 1700000000, i, len(frame), len(frame)))
            f.write(frame)


def pcap_frames(path):
    """(header bytes, [(ts_sec, ts_frac, caplen, origlen, data)]) of a classic pcap."""
    d = open(path, "rb").read()
    if struct.unpack_from("<I", d)[0] not in (0xA1B2C3D4, 0xA1B23C4D):
        raise SystemExit("%s: not a classic little-endian pcap" % path)
    out, i = [], 24
    while i + 16 <= len(d):
        ts, frac, cl, ol = struct.unpack_from("<IIII", d, i)
        out.append((ts, frac, cl, ol, d[i + 16:i + 16 + cl]))
        i += 16 + cl
    return d[:24], out


def write_mixed_le1518(src, path, limit=1518):
    """mixed.pcap without its frames longer than limit bytes (the capture holds 291 GRO-merged
    frames up to 37506 bytes: net_pcap's infinite_rx mode keeps each frame in one 2048-byte mbuf
    and refuses them). Returns (kept, dropped)."""
    hdr, frames = pcap_frames(src)
    kept = [f for f in frames if f[2] <= limit and f[3] <= limit]
    with open(path, "wb") as f:
        f.write(hdr)
        for ts, frac, cl, ol, data in kept:
            f.write(struct.pack("<IIII", ts, frac, cl, ol))
            f.write(data)
    return len(kept), len(frames) - len(kept)


def write_imix_pcap(path, flows=1024):
    """Simple IMIX: 64/594/1518-byte frames (on the wire, FCS included) in the ratio 7:4:1,
    interleaved, Ethernet/IPv4/UDP, one flow per source address/port."""
    pattern = [64, 594, 64, 64, 594, 64, 1518, 64, 594, 64, 594, 64]   # 7 x 64, 4 x 594, 1 x 1518
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(flows * len(pattern) // 4):
            wire = pattern[i % len(pattern)]
            flen = wire - 4
            plen = flen - 14 - 20 - 8
            udp = struct.pack("!HHHH", 1024 + i % flows, 53, 8 + plen, 0) + b"\0" * plen
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                             bytes([10, 0, (i % flows) >> 8, i & 0xFF]), bytes([10, 1, 0, 1]))
            ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
            frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp
            f.write(struct.pack("<IIII", 1700000000, i, len(frame), len(frame)))
            f.write(frame)


def run_once(pcap, rate, seconds, prefix, engine=ENGINE):
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "bench.ini")
        summ = os.path.join(d, "summary.json")
        with open(cfg, "w") as f:
            f.write("[eal]\nargs = -l 0-1\n[engine]\nstats_interval_ms = 0\n"
                    "[mirror]\nsample_rate = %d\n"
                    "[port.bench]\ndevice = net_pcap0,rx_pcap=%s,infinite_rx=1\nrole = mirror-rx\n"
                    % (rate, pcap))
        cmd = [engine, "-c", cfg, "--duration", str(seconds), "--summary-json", summ,
               "--", "--file-prefix=" + prefix, "--log-level=warning"]
        out = os.path.join(d, "engine.out")
        with open(out, "w") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            cpu_ns = rx_lcore_cpu_ns(p, seconds + 120)
        if p.returncode != 0:
            sys.stdout.write(open(out).read())
            raise SystemExit("engine exited %d" % p.returncode)
        s = json.load(open(summ))
        s["rx_lcore_cpu_ns"] = cpu_ns
        # EAL leaves its runtime directory (telemetry socket) behind; it is this run's alone
        shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)
        return s["mirror_frames"] / s["rx_seconds"], s


def rx_lcore_cpu_ns(p, timeout):
    """Wait for the engine p; return the CPU time (ns, /proc schedstat) its RX lcore's thread
    (EAL's lcore 1 thread, named *worker-1) used, or None when it could not be read. On a
    shared machine this, per frame, is the figure that load does not divide: the wall-clock
    rate counts the time the lcore's thread waited for a CPU. The thread outlives its loop
    (EAL keeps lcore threads until exit), so the last value read before exit is complete."""
    tid, cpu = None, None
    t_end = time.monotonic() + timeout
    while p.poll() is None:
        if time.monotonic() > t_end:
            p.kill()
            p.wait()
            raise SystemExit("engine did not finish within %.0f s" % timeout)
        try:
            if tid is None:
                for t in os.listdir("/proc/%d/task" % p.pid):
                    if open("/proc/%d/task/%s/comm" % (p.pid, t)).read().strip().endswith("worker-1"):
                        tid = t
            if tid is not None:
                cpu = int(open("/proc/%d/task/%s/schedstat" % (p.pid, tid)).read().split()[0])
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rates", default="1,1000")
    ap.add_argument("--inputs", default="64,imix,mixed")
    ap.add_argument("--ab", help="engine binary A to alternate with this build's (B)")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    want = a.inputs.split(",")
    engines = [("B", ENGINE)] if not a.ab else [("A", a.ab), ("B", ENGINE)]
    if a.smoke:
        a.runs, a.seconds = 1, 1
    if not os.access(ENGINE, os.X_OK):
        raise SystemExit("engine not built at %s" % ENGINE)
    with tempfile.TemporaryDirectory() as d:
        inputs = []
        small = os.path.join(d, "64b.pcap")
        write_64b_pcap(small)
        if "64" in want:
            inputs.append(("64-byte frames", small))
        imix = os.path.join(d, "imix.pcap")
        write_imix_pcap(imix)
        if "imix" in want:
            inputs.append(("IMIX 64/594/1518 7:4:1", imix))
        mixed = os.path.join(CORPORA, "generated", "inputs", "mixed.pcap")
        if "mixed" not in want:
            pass
        elif os.path.exists(mixed):
            cut = os.path.join(d, "mixed-le1518.pcap")
            kept, dropped = write_mixed_le1518(mixed, cut)
            print("mixed-size inputs: a generated IMIX (64/594/1518 bytes, 7:4:1) and a copy of "
                  "mixed.pcap keeping its %d frames <= 1518 bytes (%d larger, GRO-merged frames left "
                  "out: net_pcap infinite_rx holds a frame in one 2048-byte mbuf)" % (kept, dropped))
            inputs.append(("mixed.pcap frames <= 1518 B", cut))
        else:
            print("corpus absent at %s: mixed.pcap input skipped (IMIX still runs)" % CORPORA)
        print("load average before: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
        print("%-32s %8s %12s %12s %s" % ("input", "rate", "median Mpps", "min..max", "runs"))
        for name, path in inputs:
            for rate in [int(x) for x in a.rates.split(",")]:
                figs, cpu = {}, {}
                for r in range(a.runs):
                    for tag, engine in engines:
                        pps, s = run_once(path, rate, a.seconds, "bench%d_%d_%d%s" % (os.getpid(), rate, r, tag),
                                          engine)
                        assert s["lost_records"] == 0, s
                        assert s["mirror_sampled"] > 0, s
                        # every sampled frame was parsed into a record and aggregated: it merged
                        # into an entry, made one (a row) or folded into an overflow entry
                        assert s["records"] == s["mirror_sampled"] == s["records_packets"], s
                        assert s["rows"] + s["agg_merged"] + s["agg_folded"] >= s["records"], s
                        figs.setdefault(tag, []).append(pps / 1e6)
                        if s["rx_lcore_cpu_ns"]:
                            cpu.setdefault(tag, []).append(s["rx_lcore_cpu_ns"] / s["mirror_frames"])
                for tag, _ in engines:
                    f = figs[tag]
                    c = cpu.get(tag, [])
                    print("%-32s %8s %12.2f %5.2f..%-5.2f %d x %.0fs%s%s" % (
                        name, "1:%d" % rate, statistics.median(f), min(f), max(f), a.runs, a.seconds,
                        "  RX lcore CPU %.1f ns/frame (%.1f..%.1f)" % (statistics.median(c), min(c), max(c))
                        if c else "", "  (%s)" % tag if a.ab else ""))
                sys.stdout.flush()
        print("load average after: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
