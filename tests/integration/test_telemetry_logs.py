#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Counters that agree, and logs an operator can live with (issue 13), on a live engine on a
net_tap port whose kernel side is moved into a network namespace of the test's own, started as
systemd would (JOURNAL_STREAM set).

Sent from the namespace: 20 good NetFlow v5 datagrams (5 records each), then 40 that announce 5
records and carry 1 (rejected whole as truncated, one decode error each).

Asserted:
 - /netmeta/stats and /netmeta/ports (dpdk-telemetry.py) and the Prometheus exposition
   (netmeta-stats --metrics) agree with each other once traffic has stopped, and the summary
   at exit (SIGTERM) equals them: frames, datagrams, records, the decode error, rows;
 - the 40 bad datagrams are logged as one line a second with their count (at most two lines:
   the burst may straddle a second boundary), not 40 lines, at warning priority;
 - every line the engine writes carries a syslog priority prefix (<N>): the banner (ports,
   queues, lcores, memory, broker, topic) as <6>, the warning as <4>.
Takes ~15 s.
"""
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

STATS = os.path.join(nmtest.SOURCE, "scripts", "netmeta-stats")
TELEMETRY_PY = "/usr/bin/dpdk-telemetry.py"
NS = "nmtlog%d" % os.getpid()
IFACE = "nmtlog%d" % (os.getpid() % 10000)
PREFIX = "nmtlog%d" % os.getpid()
KERNEL_ADDR, ENGINE_ADDR = "169.254.78.1", "169.254.78.2"
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def nf5(seq, n, announce=None):
    now = int(time.time())
    hdr = struct.pack("!HHIIIIBBH", 5, announce or n, 100000, now, 0, seq, 0, 0, 0)
    recs = b""
    for i in range(n):
        recs += struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", bytes([10, 9, 0, i]),
                            bytes([10, 9, 1, 1]), bytes(4), 1, 2, i + 1, 1000 * (i + 1), 99000,
                            99900, 5000 + i, 80, 0, 0x18, 6, 0, 0, 0, 24, 24, 0)
    return hdr + recs


def telemetry(cmds):
    p = subprocess.run([sys.executable, TELEMETRY_PY, "-f", PREFIX], input="\n".join(cmds) + "\n",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("{") and not line.startswith('{"version"'):
            out.update(json.loads(line))
    return out


def samples(text, name):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^%s(\{[^}]*\})? (\S+)$" % re.escape(name), line)
        if m:
            out[m.group(1) or ""] = int(float(m.group(2)))
    return out


def main():
    nmtest.exit_on_signals()
    if os.geteuid() != 0:
        nmtest.skip("needs root (net_tap, network namespaces)")
    nmtest.require_programs(nmtest.ENGINE)
    if not os.path.exists(TELEMETRY_PY):
        nmtest.skip("%s missing (Debian package dpdk-dev)" % TELEMETRY_PY)
    tmp = tempfile.mkdtemp(prefix="nmtlog-")
    summary = os.path.join(tmp, "summary.json")
    cfg = os.path.join(tmp, "live.ini")
    with open(cfg, "w") as f:
        f.write("[kafka]\nbrokers = embedded\n[engine]\nstats_interval_ms = 0\n"
                "[port.tap]\ndevice = net_tap0,iface=%s\naddress = %s/24\npeer = %s\n"
                % (IFACE, KERNEL_ADDR, ENGINE_ADDR))
    out_path = os.path.join(tmp, "engine.out")
    out = open(out_path, "w")
    env = dict(os.environ, JOURNAL_STREAM="8:424242")
    eng = subprocess.Popen([nmtest.ENGINE, "-c", cfg, "--summary-json", summary, "--",
                            "--file-prefix=" + PREFIX], stdout=out, stderr=subprocess.STDOUT,
                           env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and "/netmeta/stats" not in telemetry(["/netmeta/stats"]):
            if eng.poll() is not None:
                raise SystemExit("engine exited early: %d\n%s" % (eng.returncode,
                                                                   open(out_path).read()))
            time.sleep(0.5)
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "set", IFACE, "netns", NS)
        # No IPv6 on the kernel side: its router solicitations and MLD reports would arrive
        # between the reads that must agree.
        sh("ip", "netns", "exec", NS, "sysctl", "-qw",
           "net.ipv6.conf.%s.disable_ipv6=1" % IFACE)
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", KERNEL_ADDR + "/24", "dev", IFACE)
        sh("ip", "netns", "exec", NS, "ip", "link", "set", IFACE, "up")
        sh("ip", "netns", "exec", NS, "ip", "neigh", "replace", ENGINE_ADDR, "lladdr",
           "02:00:00:00:00:02", "dev", IFACE, "nud", "permanent")
        good = [nf5(5 * i, 5) for i in range(20)]
        bad = [nf5(100 + i, 1, announce=5) for i in range(40)]
        sender = ("import socket,sys,json;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                  "[s.sendto(bytes.fromhex(d),('%s',2055)) for d in json.load(sys.stdin)]"
                  % ENGINE_ADDR)
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", sender],
                       input=json.dumps([d.hex() for d in good + bad]), text=True, check=True)
        # Wait until every datagram is counted and the rows of their second have left.
        deadline = time.time() + 30
        prev = None
        while time.time() < deadline:
            r = telemetry(["/netmeta/stats"]).get("/netmeta/stats")
            if r and r["datagrams_nf5"] + sum(v for k, v in r.items()
                                              if k.startswith("decode_err_")) >= 60:
                key = (r["rx_packets"], r["rows"], r["kafka_records_acked"])
                if key == prev and r["rows"] > 0:
                    break
                prev = key
            time.sleep(1.2)
        r = telemetry(["/netmeta/stats", "/netmeta/ports"])
        st, ports = r["/netmeta/stats"], r["/netmeta/ports"]
        prom = subprocess.run([sys.executable, STATS, "--prefix", PREFIX, "--metrics"],
                              stdout=subprocess.PIPE, text=True, check=True).stdout
        errs = {k: v for k, v in st.items() if k.startswith("decode_err_") and v}
        print("telemetry: %s; errors %s; port %s" % (
            {k: st[k] for k in ("rx_packets", "datagrams_nf5", "records", "rows")}, errs,
            ports.get("port/0")), flush=True)
        if st["datagrams_nf5"] != 60 or st["records"] != 100:
            fail("60 NetFlow v5 datagrams sent, 20 good ones of 5 records; telemetry %d "
                 "datagrams, %d records" % (st["datagrams_nf5"], st["records"]))
        if len(errs) != 1 or sum(errs.values()) != 40:
            fail("40 bad datagrams sent; decode errors %r" % errs)
        p0 = ports.get("port/0", {})
        if p0.get("ipackets") != st["rx_packets"] or ports.get("port/0/q0", {}).get(
                "polled") != st["rx_packets"]:
            fail("port ipackets %r / queue polled %r, engine rx_packets %d" % (
                p0.get("ipackets"), ports.get("port/0/q0", {}).get("polled"), st["rx_packets"]))
        for metric, key in (("netmeta_worker_rx_packets_total", "rx_packets"),
                            ("netmeta_worker_records_total", "records"),
                            ("netmeta_flusher_rows_total", "rows"),
                            ("netmeta_decode_datagrams_nf5_total", "datagrams_nf5")):
            v = sum(samples(prom, metric).values())
            if v != st[key]:
                fail("Prometheus %s %d, /netmeta/stats %s %d" % (metric, v, key, st[key]))
        for k, v in errs.items():
            m = samples(prom, "netmeta_decode_errors_total")
            got = sum(x for l, x in m.items() if 'reason="%s"' % k[len("decode_err_"):] in l)
            if got != v:
                fail("Prometheus netmeta_decode_errors_total{reason} %d, /netmeta/stats %s %d" % (
                    got, k, v))
        eng.send_signal(signal.SIGTERM)
        eng.wait(120)
    finally:
        if eng.poll() is None:
            nmtest.kill_group(eng)
        sh("ip", "netns", "del", NS, check=False)
        out.close()
    output = open(out_path).read()
    print(output[-2500:])
    if eng.returncode != 0:
        fail("exit %d" % eng.returncode)
    s = json.load(open(summary))
    for k in ("rx_packets", "datagrams_nf5", "records", "rows", "kafka_records_acked"):
        if s.get(k) != st.get(k):
            fail("summary at exit %s %r, telemetry %r" % (k, s.get(k), st.get(k)))
    for k, v in errs.items():
        if s["decode_errors"].get(k[len("decode_err_"):]) != v:
            fail("summary at exit decode_errors %r, telemetry %s %d" % (s["decode_errors"], k, v))
    lines = [l for l in output.splitlines() if l.strip()]
    bare = [l for l in lines if not re.match(r"^<[0-7]>", l)]
    if bare:
        fail("%d line(s) without a priority prefix under JOURNAL_STREAM, e.g. %r" % (
            len(bare), bare[:3]))
    banner = [l for l in lines if "netmeta: start:" in l]
    if len(banner) != 1 or not banner[0].startswith("<6>") or "kafka: topic flow-messages" \
            not in banner[0] or "RX lcores 1" not in banner[0] or \
            not re.search(r"memory: (hugepages|no-huge)", banner[0]):
        fail("banner: %r" % banner)
    reason = next(iter(errs), "decode_err_?")[len("decode_err_"):]
    logged = [l for l in lines if "decode errors:" in l]
    counts = [int(m.group(1)) for m in (re.search(r"decode errors: (\d+) %s in the last second"
                                                  % re.escape(reason), l) for l in logged) if m]
    print("logged: %r" % logged)
    if not 1 <= len(logged) <= 2 or sum(counts) != 40 or len(counts) != len(logged):
        fail("40 bad datagrams should give 1-2 log lines counting 40: %r" % logged)
    if any(not l.startswith("<4>") for l in logged):
        fail("decode error lines should be warnings (<4>): %r" % logged)
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("telemetry, Prometheus and the summary agree; logs rate-limited with priorities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
