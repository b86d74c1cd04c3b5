#!/usr/bin/env python3
"""Live mode end to end: the engine on a net_tap port with the embedded Kafka broker, fed by a
NetFlow v5 exporter in a network namespace of the test's own, read through the DPDK telemetry
socket (scripts/netmeta-stats), then stopped with SIGTERM: it must flush, get every row
acknowledged and exit 0 with the counters telemetry showed.

The tap's kernel side is moved into a namespace created here, so the test's datagrams never
leave it (the engine holds the tap's file descriptor, which keeps working across namespaces).
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("NM_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("NM_BUILD", os.path.join(SRC, "build"))
ENGINE = os.path.join(BUILD, "dpdk_app", "netmeta")
STATS = os.path.join(SRC, "scripts", "netmeta-stats")

NS = "nmtel%d" % os.getpid()
IFACE = "nmtel%d" % (os.getpid() % 10000)
PREFIX = "nmtel%d" % os.getpid()
KERNEL_ADDR, ENGINE_ADDR = "169.254.77.1", "169.254.77.2"


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def nf5_datagram(seq, n):
    """A NetFlow v5 datagram of n records: record i has dPkts i+1, dOctets 1000*(i+1). seq is
    flow_sequence, the count of flows exported before this datagram."""
    now = int(time.time())
    hdr = struct.pack("!HHIIIIBBH", 5, n, 100000, now, 0, seq, 0, 0, 0)
    recs = b""
    for i in range(n):
        recs += struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH",
                            bytes([10, 9, 0, i]), bytes([10, 9, 1, 1]), bytes(4), 1, 2,
                            i + 1, 1000 * (i + 1), 99000, 99900, 5000 + i, 80, 0, 0x18, 6, 0,
                            0, 0, 24, 24, 0)
    return hdr + recs


def telemetry(cmd="/netmeta/stats"):
    p = sh(sys.executable, STATS, "--prefix", PREFIX, "--json", cmd, check=False)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)[cmd]


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (net_tap, network namespaces)")
        return 77
    tmp = tempfile.mkdtemp()
    summary = os.path.join(tmp, "summary.json")
    cfg = os.path.join(tmp, "live.ini")
    with open(cfg, "w") as f:
        f.write("[kafka]\nbrokers = embedded\n[engine]\nstats_interval_ms = 500\n"
                "[port.tap]\ndevice = net_tap0,iface=%s\naddress = %s/24\npeer = %s\n"
                % (IFACE, KERNEL_ADDR, ENGINE_ADDR))
    eng = subprocess.Popen([ENGINE, "-c", cfg, "--summary-json", summary, "--",
                            "--file-prefix=" + PREFIX],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        stats = None
        while time.time() < deadline and stats is None:
            if eng.poll() is not None:
                print(eng.stdout.read())
                raise SystemExit("engine exited early: %d" % eng.returncode)
            time.sleep(0.5)
            stats = telemetry()
        assert stats is not None, "telemetry socket never answered"
        for key in ("rx_packets", "datagrams_nf5", "records", "rows", "kafka_records_acked",
                    "decode_err_truncated", "agg_dropped"):
            assert key in stats, key
        # Move the tap's kernel side into our namespace and address it there.
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "set", IFACE, "netns", NS)
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", KERNEL_ADDR + "/24", "dev", IFACE)
        sh("ip", "netns", "exec", NS, "ip", "link", "set", IFACE, "up")
        sh("ip", "netns", "exec", NS, "ip", "neigh", "replace", ENGINE_ADDR, "lladdr",
           "02:00:00:00:00:02", "dev", IFACE, "nud", "permanent")
        sender = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                  "d=sys.stdin.buffer.read();n=int(sys.argv[1]);"
                  "[s.sendto(d[i*%d:(i+1)*%d],('%s',2055)) for i in range(n)]"
                  % (24 + 48 * 5, 24 + 48 * 5, ENGINE_ADDR))
        dgrams = b"".join(nf5_datagram(5 * i, 5) for i in range(20))
        sent_pkts = 20 * sum(i + 1 for i in range(5))
        sent_bytes = 20 * sum(1000 * (i + 1) for i in range(5))
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", sender, "20"],
                       input=dgrams, check=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            stats = telemetry()
            if stats and stats["records"] >= 100:
                break
            time.sleep(0.3)
        print("telemetry:", json.dumps({k: stats[k] for k in ("rx_packets", "datagrams_nf5", "records",
                                                               "records_packets", "records_bytes")}))
        assert stats["datagrams_nf5"] == 20, stats
        assert stats["records"] == 100, stats
        assert stats["records_packets"] == sent_pkts, stats
        assert stats["records_bytes"] == sent_bytes, stats
        # The exporter as /netmeta/exporters sees it: the tap's kernel address, NetFlow v5, every
        # datagram and record, the header's rate (0 in these datagrams: the default, and said so),
        # no sequence loss or restart (flow_sequence advances by 5 a datagram). And the CLI's table form.
        exps = telemetry("/netmeta/exporters")
        rows = [v for v in exps.values() if isinstance(v, dict)]
        print("exporters:", json.dumps(rows))
        assert len(rows) == 1 and exps["exporters"] == 1, exps
        e = rows[0]
        assert e["address"] == KERNEL_ADDR and e["protocol"] == "nf5", e
        assert e["datagrams"] == 20 and e["records"] == 100 and e["bad_datagrams"] == 0, e
        assert e["rate_default_records"] == 100, e
        assert e["lost_datagrams_estimate"] == 0 and e["seq_resets"] == 0, e
        p = sh(sys.executable, STATS, "--prefix", PREFIX, "/netmeta/exporters", check=False)
        table = [l.split() for l in p.stdout.splitlines()]
        head = next(l for l in table if l and l[0] == "address")
        line = next(l for l in table if l and l[0] == KERNEL_ADDR)
        assert dict(zip(head, line))["datagrams"] == "20", p.stdout
        eng.send_signal(signal.SIGTERM)
        out, _ = eng.communicate(timeout=120)
        print(out[-3000:])
        assert eng.returncode == 0, "exit %d" % eng.returncode
        s = json.load(open(summary))
        assert s["records"] == 100 and s["lost_records"] == 0, s
        assert s["rows"] >= 1 and s["kafka_records_acked"] == s["rows"], s
        return 0
    finally:
        if eng.poll() is None:
            eng.kill()
            eng.wait()
        sh("ip", "netns", "del", NS, check=False)


if __name__ == "__main__":
    sys.exit(main())
