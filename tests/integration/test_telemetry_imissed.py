#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""/netmeta/ports shows the NIC's drops (imissed) when the RX lcore is too slow, and none when it
is not (issue 13).

The port is net_af_packet, then net_af_xdp, on a veth pair inside a network namespace created
here. DPDK 22.11's net_af_packet reports no imissed: when its PACKET_RX_RING is full the kernel
drops the frame and counts it in the socket's PACKET_STATISTICS, which the PMD never reads; its
net_af_xdp counts XDP_STATISTICS rx_dropped but not rx_ring_full, which is what a slow lcore
causes. The engine reads both (tel_ports.c) and adds them to imissed (and kernel_drops), so this
is the kernel's own count. (net_tap's drops are its interface's tx_dropped, read while the
interface is in the engine's namespace.)

Two runs of the same engine and the same traffic, two rounds of 3,000 NetFlow v5 datagrams sent
from a raw packet socket on the peer end at ~3,500 frames/s:
 - engine.test_rx_delay_us = 0: imissed stays 0 after both rounds and every datagram arrives;
 - engine.test_rx_delay_us = 20000 (the RX lcore waits 20 ms after every burst: at most ~1,600
   frames/s): imissed > 0 after the first round and higher after the second, drops include it,
   and the port's frames + imissed account for every datagram sent.
Takes ~60 s (two port kinds, two runs each).
"""
import json
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

STATS = os.path.join(nmtest.SOURCE, "scripts", "netmeta-stats")
FLOOD = 3000
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


SEND = r'''
import socket, struct, sys, time
iface, dmac, n = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
smac = open("/sys/class/net/%s/address" % iface).read().strip().replace(":", "")
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
frames = []
for i in range(n):
    hdr = struct.pack("!HHIIIIBBH", 5, 1, 100000, 1700000000, 0, i, 0, 0, 0)
    rec = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", bytes([10, 1, i >> 8 & 255, i & 255]),
                      bytes([10, 2, 0, 1]), bytes(4), 1, 2, 1, 100, 0, 0, 1000, 80, 0, 0, 6, 0,
                      0, 0, 24, 24, 0)
    udp = struct.pack("!HHHH", 40000, 2055, 8 + len(hdr) + len(rec), 0) + hdr + rec
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                     bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frames.append(dmac + bytes.fromhex(smac) + b"\x08\x00" + ip + udp)
# Paced, ~3,500 frames/s: a lcore at full speed keeps up even on a busy 2-core machine (the ring
# holds 512 frames, ~150 ms of this); a lcore that waits 20 ms a burst (<= 1,600 frames/s) not.
for i, f in enumerate(frames):
    s.send(f)
    if i % 4 == 3:
        time.sleep(0.001)
print(len(frames))
'''


def ports(prefix):
    p = subprocess.run([sys.executable, STATS, "--prefix", prefix, "--json", "/netmeta/ports"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)["/netmeta/ports"]


def settle(prefix):
    """/netmeta/ports once the port's counters stop moving."""
    prev, r = None, None
    for _ in range(40):
        r = ports(prefix)
        p = r and r.get("port/0")
        key = p and (p["ipackets"], p["imissed"])
        if key is not None and key == prev:
            return r
        prev = key
        time.sleep(0.5)
    return r


DEVICES = {
    "af_packet": "net_af_packet0,iface=%s",
    "af_xdp": "net_af_xdp0,iface=%s,start_queue=0,queue_count=1",
}


def run(ns, mac, kind, delay):
    prefix = nmtest.file_prefix("nmimiss")
    cfg = ("[eal]\nargs = -l 0-1\n[port.p]\ndevice = %s\nrole = collector\n"
           % (DEVICES[kind] % ns.a))
    eng = nmtest.start_engine(
        "embedded", "imissed", netns=ns.name, config_text=cfg, in_memory=False, prefix=prefix,
        huge=True, sets=["engine.test_rx_delay_us=%d" % delay])
    seen = []
    try:
        if not eng.wait_output("polls", timeout=60):
            raise RuntimeError("engine did not start:\n" + eng.output()[-3000:])
        deadline = time.time() + 30
        while ports(prefix) is None and time.time() < deadline:
            time.sleep(0.5)
        sent = 0
        for _ in range(2):
            p = subprocess.run(["ip", "netns", "exec", ns.name, "python3", "-c", SEND, ns.b,
                                mac.replace(":", ""), str(FLOOD)], stdout=subprocess.PIPE,
                               text=True, check=True, timeout=120)
            sent += int(p.stdout)
            r = settle(prefix)
            seen.append((sent, r))
            print("%s, delay %d us, %d sent: port %s; lcore %s" % (
                kind, delay, sent, {k: r["port/0"][k] for k in ("ipackets", "imissed", "rx_nombuf",
                                                          "ierrors", "drops",
                                                          "kernel_drops")},
                r.get("lcore/1")), flush=True)
        eng.send_signal(2)
    except Exception:
        eng.kill()
        raise
    res = eng.finish(120)
    if res.rc != 0:
        fail("%s, delay %d: engine exit %d\n%s" % (kind, delay, res.rc, res.tail(20)))
    return seen, res.summary


def check(kind, fast, s_fast, slow):
    for sent, r in fast:
        p = r["port/0"]
        if p["imissed"] != 0 or p["drops"] != 0 or r["drops"] != 0:
            fail("%s, no delay: imissed %d, drops %d after %d datagrams" % (
                kind, p["imissed"], p["drops"], sent))
        if p["ipackets"] < sent:
            fail("%s, no delay: %d frames of %d sent arrived" % (kind, p["ipackets"], sent))
    if s_fast and s_fast["datagrams_nf5"] != 2 * FLOOD:
        fail("%s, no delay: summary %d NetFlow datagrams, %d sent" % (
            kind, s_fast["datagrams_nf5"], 2 * FLOOD))
    (sent1, r1), (sent2, r2) = slow
    m1, m2 = r1["port/0"]["imissed"], r2["port/0"]["imissed"]
    if not 0 < m1 < m2:
        fail("%s, delay 20000 us: imissed %d after the first round, %d after the second: should "
             "be > 0 and rising" % (kind, m1, m2))
    if r2["drops"] < m2 or r2["port/0"]["drops"] < m2:
        fail("%s, delay: drops %d / port drops %d do not include imissed %d" % (
            kind, r2["drops"], r2["port/0"]["drops"], m2))
    got = r2["port/0"]["ipackets"] + m2
    if got != sent2:
        fail("%s, delay: frames %d + imissed %d = %d, sent %d" % (
            kind, r2["port/0"]["ipackets"], m2, got, sent2))
    lc = r2.get("lcore/1", {})
    if not lc or lc.get("busy_polls", 0) <= 0:
        fail("%s, delay: lcore/1 %r" % (kind, lc))
    return kind, m1, m2, sent2


def main():
    nmtest.exit_on_signals()
    nmtest.require_programs(nmtest.ENGINE)
    if not dptest.have_netns():
        nmtest.skip("needs root and ip netns")
    results = []
    for kind in DEVICES:
        with dptest.Netns("imiss") as ns:
            ns.ip("addr", "add", "10.77.0.1/24", "dev", ns.b)
            mac = subprocess.run(["ip", "netns", "exec", ns.name, "cat",
                                  "/sys/class/net/%s/address" % ns.a], stdout=subprocess.PIPE,
                                 text=True, check=True).stdout.strip()
            fast, s_fast = run(ns, mac, kind, 0)
            slow, s_slow = run(ns, mac, kind, 20000)
        results.append(check(kind, fast, s_fast, slow))
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    for kind, m1, m2, sent2 in results:
        print("%s: imissed 0 at full speed; %d, then %d, of %d when the RX lcore is slowed" % (
            kind, m1, m2, sent2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
