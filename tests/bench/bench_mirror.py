#!/usr/bin/env python3
"""Mirror-path benchmark: frames/s on one RX lcore at 1:1 and 1:N sampling.

    bench_mirror.py [--runs N] [--seconds S] [--rates 1,1000] [--smoke]

Input: net_pcap with infinite_rx (the PMD replays the file from memory), role mirror-rx, full
parsing and per-second aggregation, rows to an embedded Kafka broker. Two inputs: 64-byte frames
(1024 distinct UDP flows, generated here) and the corpus' mixed.pcap (real traffic, mixed sizes).
Prints one line per (input, rate) with the median of the runs; --smoke does one short run and only
checks that the figures are there (suite bench-smoke).
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile

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


def run_once(pcap, rate, seconds, prefix):
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "bench.ini")
        summ = os.path.join(d, "summary.json")
        with open(cfg, "w") as f:
            f.write("[eal]\nargs = -l 0-1\n[engine]\nstats_interval_ms = 0\n"
                    "[mirror]\nsample_rate = %d\n"
                    "[port.bench]\ndevice = net_pcap0,rx_pcap=%s,infinite_rx=1\nrole = mirror-rx\n"
                    % (rate, pcap))
        cmd = [ENGINE, "-c", cfg, "--duration", str(seconds), "--summary-json", summ,
               "--", "--file-prefix=" + prefix, "--log-level=warning"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 120)
        if p.returncode != 0:
            sys.stdout.write(p.stdout)
            raise SystemExit("engine exited %d" % p.returncode)
        s = json.load(open(summ))
        return s["mirror_frames"] / s["rx_seconds"], s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rates", default="1,1000")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.runs, a.seconds = 1, 1
    if not os.access(ENGINE, os.X_OK):
        raise SystemExit("engine not built at %s" % ENGINE)
    with tempfile.TemporaryDirectory() as d:
        inputs = []
        small = os.path.join(d, "64b.pcap")
        write_64b_pcap(small)
        inputs.append(("64-byte frames", small))
        mixed = os.path.join(CORPORA, "generated", "inputs", "mixed.pcap")
        if os.path.exists(mixed):
            inputs.append(("mixed.pcap (real, mixed sizes)", mixed))
        else:
            print("corpus absent at %s: mixed-size input skipped" % CORPORA)
        print("%-32s %8s %12s %12s %s" % ("input", "rate", "median Mpps", "min..max", "runs"))
        for name, path in inputs:
            for rate in [int(x) for x in a.rates.split(",")]:
                figs = []
                for r in range(a.runs):
                    pps, s = run_once(path, rate, a.seconds, "bench%d_%d_%d" % (os.getpid(), rate, r))
                    assert s["lost_records"] == 0, s
                    assert s["mirror_sampled"] > 0, s
                    figs.append(pps / 1e6)
                print("%-32s %8s %12.2f %5.2f..%-5.2f %d x %.0fs" % (
                    name, "1:%d" % rate, statistics.median(figs), min(figs), max(figs), a.runs, a.seconds))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
