#!/usr/bin/env python3
"""NetFlow v9 collector throughput, the engine against a peer (pmacct's nfacctd) on the same input.

    bench_peer.py [--flows N] [--runs R] [--smoke] [--keep DIR]

Input, made here by a real exporter: a pcap of N one-packet TCP flows (distinct 5-tuples) is read
by softflowd (-v 9), which exports every flow to 127.0.0.1:2055 inside a private network namespace
(unshare -n: only lo, a UDP sink bound so softflowd sees no ICMP errors), captured by dumpcap.
That export capture (about N/31 datagrams) is what both collectors read:
  - netmeta --pcap (net_pcap, one RX lcore, decode + per-second aggregation + protobuf to the
    embedded Kafka broker, every row acknowledged before it exits);
  - nfacctd with pcap_savefile (pmacct 1.7.7; print plugin, CSV, aggregated by exporter and
    protocol only: with the 5-tuple its print cache (4 KiB an entry) overflows at 1M flows and it
    drops records, so the peer gets the easier job: every record decoded, few keys kept).
Both must account for all N packets, or the run fails. Each runs on N/20 and on N flows; the
marginal rate (N - N/20) / (t(N) - t(N/20)) takes out start-up and exit, which are fixed (about
4 s for nfacctd's plugin set-up and exit; for the engine EAL and tables presized for N keys).
Prints wall-clock seconds, the engine's time from first frame to last acknowledgement, its
records/s over the RX loop alone, and the ratio of marginal rates, medians of R runs.
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

BUILD = os.environ.get("NM_BUILD", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
ENGINE = os.path.join(BUILD, "dpdk_app", "netmeta")


def write_flows(path, n):
    """n Ethernet/IPv4/TCP SYN frames, each its own flow; 100,000 per second of capture time."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            tcp = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i, 0, 0x50, 0x02, 65535, 0, 0) + b"\0" * 18
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0, 64, 6, 0,
                             bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]),
                             bytes([198, 51, 100, i % 251]))
            fr = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + tcp
            f.write(struct.pack("<IIII", 1700000000 + i // 100000, i % 100000 * 10, len(fr), len(fr)))
            f.write(fr)


CAPTURE = r'''
set -e
ip link set lo up
python3 -c "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1<<24); s.bind(('127.0.0.1',2055))
while True: s.recv(65535)" & SINK=$!
dumpcap -q -i lo -B 256 -s 0 -P -w "$1" -f "udp port 2055" 2>"$1.dumpcap.log" & DC=$!
sleep 1
softflowd -d -r "$2" -n 127.0.0.1:2055 -v 9 -m "$3" -p sfd.pid -c sfd.ctl > "$1.softflowd.log" 2>&1
sleep 1
kill -INT $DC; wait $DC || true
kill $SINK
'''


def make_export(d, n):
    flows = os.path.join(d, "flows.pcap")
    out = os.path.join(d, "v9.pcap")
    write_flows(flows, n)
    # softflowd wants relative paths for its pid and control files (see the corpus' RECIPES.md).
    subprocess.run(["unshare", "-n", "sh", "-c", CAPTURE, "sh", out, flows, str(n + 1000)],
                   cwd=d, check=True)
    log = open(out + ".dumpcap.log").read()
    if "dropped" in log and "/0 " not in log:
        raise SystemExit("dumpcap dropped export datagrams: %s" % log)
    os.chmod(out, 0o644)
    return out


def run_engine(pcap, n, prefix, max_flows):
    with tempfile.TemporaryDirectory() as d:
        summ = os.path.join(d, "s.json")
        cmd = [ENGINE, "--pcap", pcap, "--set", "engine.stats_interval_ms=0",
               "--set", "aggregation.max_flows=%d" % max_flows, "--summary-json", summ,
               "--", "--file-prefix=" + prefix, "--log-level=warning"]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            sys.stdout.write(p.stdout)
            raise SystemExit("netmeta exited %d" % p.returncode)
        s = json.load(open(summ))
    if s["records_packets"] != n or s["lost_records"] != 0:
        raise SystemExit("netmeta accounted %d packets of %d (lost %d)" % (s["records_packets"], n, s["lost_records"]))
    return wall, s["seconds"], s["records"] / s["rx_seconds"]


NFACCTD_CONF = """daemonize: false
pcap_savefile: {pcap}
pcap_savefile_wait: false
plugins: print
aggregate: peer_src_ip, proto
print_output: csv
print_output_file: {out}
print_output_file_append: true
print_refresh_time: 1
plugin_pipe_size: 268435456
plugin_buffer_size: 10240000
"""


def run_nfacctd(pcap, n):
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "nfacctd.conf")
        out = os.path.join(d, "out.csv")
        with open(conf, "w") as f:
            f.write(NFACCTD_CONF.format(pcap=pcap, out=out))
        t0 = time.monotonic()
        p = subprocess.run(["nfacctd", "-f", conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=600)
        wall = time.monotonic() - t0
        pkts = 0
        for line in open(out) if os.path.exists(out) else []:
            f = line.rstrip("\n").split(",")
            if f[0] != "PEER_SRC_IP" and len(f) >= 4:
                pkts += int(f[-2])
    if p.returncode != 0 or pkts != n:
        sys.stdout.write(p.stdout[-3000:])
        raise SystemExit("nfacctd exited %d and accounted %d packets of %d" % (p.returncode, pkts, n))
    return wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--keep", help="keep the generated inputs in this directory")
    a = ap.parse_args()
    if a.smoke:
        a.flows, a.runs = 40000, 1
    for prog in ("softflowd", "dumpcap", "nfacctd", "unshare"):
        if shutil.which(prog) is None:
            print("SKIP: %s not installed (scripts/setup.sh --test installs it)" % prog)
            sys.exit(77)
    if os.geteuid() != 0:
        print("SKIP: needs root (unshare -n, DPDK)")
        sys.exit(77)
    d = a.keep or tempfile.mkdtemp(prefix="nmpeer")
    os.makedirs(d, exist_ok=True)
    try:
        # Two sizes: start-up and exit cost the same for both, so the difference in time over the
        # difference in records is the marginal rate, free of fixed costs (nfacctd's are ~4 s).
        sizes = [a.flows // 20, a.flows]
        pcaps = []
        for n in sizes:
            sub = os.path.join(d, str(n))
            os.makedirs(sub, exist_ok=True)
            pcaps.append(make_export(sub, n))
            print("input: %d flows exported by softflowd -v 9 (%s, %.1f MB)"
                  % (n, pcaps[-1], os.path.getsize(pcaps[-1]) / 1e6))
        res = {}
        lo, hi = sizes
        for r in range(a.runs):
            for n, pcap in zip(sizes, pcaps):
                w, run, rx_rate = run_engine(pcap, n, "peer%d_%d_%d" % (os.getpid(), n, r), hi + 1024)
                res.setdefault(("nm_wall", n), []).append(w)
                res.setdefault(("nm_run", n), []).append(run)
                res.setdefault(("nm_rx", n), []).append(rx_rate)
                res.setdefault(("nf_wall", n), []).append(run_nfacctd(pcap, n))
        med = {k: statistics.median(v) for k, v in res.items()}
        dn = hi - lo

        def marginal(key):
            dt = med[(key, hi)] - med[(key, lo)]
            return dn / dt if dt > 0 else float("inf")

        print("%-38s %10s %10s %16s" % ("collector", "wall s", "wall s", "marginal"))
        print("%-38s %10d %10d %16s" % ("", lo, hi, "records/s"))
        print("%-38s %10.2f %10.2f %16.0f" % ("netmeta, whole process", med[("nm_wall", lo)],
                                              med[("nm_wall", hi)], marginal("nm_wall")))
        print("%-38s %10.2f %10.2f %16.0f" % ("netmeta, first frame to last ack", med[("nm_run", lo)],
                                              med[("nm_run", hi)], marginal("nm_run")))
        print("%-38s %10s %10s %16.0f" % ("netmeta, RX loop (decode+aggregate)", "-", "-", med[("nm_rx", hi)]))
        print("%-38s %10.2f %10.2f %16.0f" % ("nfacctd 1.7.7, whole process", med[("nf_wall", lo)],
                                              med[("nf_wall", hi)], marginal("nf_wall")))
        print("ratio of marginal records/s, netmeta/nfacctd (whole processes): %.2fx  (medians of %d runs)"
              % (marginal("nm_wall") / marginal("nf_wall"), a.runs))
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
