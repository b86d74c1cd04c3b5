#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""net_af_xdp collector port with the project's XDP filter (dpdk_app/xdp/nm_xdp_collector.bpf.c)
on a veth pair inside a network namespace created here.

The peer end (vb, 10.77.0.1/24) carries two kinds of traffic towards the engine's end (va):
 - NetFlow v9 from a real exporter: softflowd reading mixed.pcap, sending to 10.77.0.2:2055
   (a permanent neighbour entry points 10.77.0.2 at va's MAC);
 - everything else: a raw-socket replay of mixed.pcap's frames (<= 1518 bytes) that are not UDP
   to a collector port.
Kafka is a mock broker inside the namespace, read back with kcat there.

Asserted:
 - the XDP program redirects only collector UDP to the AF_XDP socket: the engine receives only
   NetFlow datagrams (no frame of another class, not_collector_port 0), and a packet socket on
   va (which sees what XDP passed to the kernel) sees every replayed frame and no NetFlow;
 - softflowd's export arrives whole: Kafka rows sum to TRUTH.tsv's softflowd-v9.pcap packets and
   bytes (the same exporter, the same input), exit 0 on SIGTERM, nothing lost.
"""
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

XDP_OBJ = os.path.join(nmtest.BUILD, "dpdk_app", "nm_xdp_collector.bpf.o")
COLLECTOR = {2055, 2056, 4739, 6343}
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def udp_dport(frame):
    """UDP destination port of an Ethernet frame (VLAN tags skipped), or None."""
    et, off = struct.unpack_from("!H", frame, 12)[0], 14
    for _ in range(2):
        if et in (0x8100, 0x88A8) and len(frame) >= off + 4:
            et, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
    if et == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 15) * 4
        if frame[off + 9] == 17 and not struct.unpack_from("!H", frame, off + 6)[0] & 0x3FFF \
                and len(frame) >= off + ihl + 4:
            return struct.unpack_from("!H", frame, off + ihl + 2)[0]
    if et == 0x86DD and len(frame) >= off + 44 and frame[off + 6] == 17:
        return struct.unpack_from("!H", frame, off + 42)[0]
    return None


COUNT = r'''
import socket, sys, time, select
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
print("ready", flush=True)
n = nf = 0
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    r, _, _ = select.select([s], [], [], 0.2)
    if not r:
        continue
    d, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    n += 1
    # NetFlow to 2055 over IPv4: UDP at 34, destination port at 36
    if len(d) > 38 and d[12:14] == b"\x08\x00" and d[23] == 17 and d[36:38] == b"\x08\x07":
        nf += 1
print(n, nf, flush=True)
'''


def main():
    nmtest.exit_on_signals()
    dptest.require_mirror_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat", "softflowd")
    if not os.path.isfile(XDP_OBJ):
        nmtest.skip("%s not built (needs clang and libbpf headers)" % XDP_OBJ)
    if not dptest.have_netns():
        nmtest.skip("needs root and ip netns")
    truth = next((t for t in nmtest.truth_rows("nf9") if t["file"] == "generated/softflowd-v9.pcap"),
                 None)
    if truth is None:
        nmtest.skip("TRUTH.tsv has no generated/softflowd-v9.pcap row")
    tmp = tempfile.mkdtemp(prefix="nmdp-xdp-")
    other = [f for f in dptest.read_pcap(dptest.MIXED)
             if len(f[2]) <= 1518 and udp_dport(f[2]) not in COLLECTOR]
    other_pcap = os.path.join(tmp, "other.pcap")
    dptest.write_pcap(other_pcap, [(f[0], f[1], f[2]) for f in other])
    with dptest.Netns("xdp") as ns, dptest.NetnsBroker(ns.name) as broker:
        ns.ip("addr", "add", "10.77.0.1/24", "dev", ns.b)
        mac = subprocess.run(["ip", "netns", "exec", ns.name, "cat",
                              "/sys/class/net/%s/address" % ns.a], stdout=subprocess.PIPE,
                             text=True, check=True).stdout.strip()
        ns.ip("neigh", "replace", "10.77.0.2", "lladdr", mac, "dev", ns.b, "nud", "permanent")
        print("namespace %s, veth %s (engine, %s) <-> %s (10.77.0.1), broker %s" % (
            ns.name, ns.a, mac, ns.b, broker.bootstrap), flush=True)
        cfg = ("[eal]\nargs = -l 0-1\n[collector]\nports = 2055,2056,4739,6343\n"
               "[port.xdp]\ndevice = net_af_xdp0,iface=%s,start_queue=0,queue_count=1,"
               "xdp_prog=%s\nrole = collector\n" % (ns.a, XDP_OBJ))
        proc = nmtest.start_engine(broker.bootstrap, "afxdp", netns=ns.name, config_text=cfg,
                                   huge=True)
        counter = None
        try:
            if not proc.wait_output("polls", timeout=60):
                raise RuntimeError("engine did not start:\n" + proc.output()[-3000:])
            counter = ns.popen(["python3", "-c", COUNT, ns.a, "10"], stdout=subprocess.PIPE,
                               text=True)
            assert counter.stdout.readline().strip() == "ready"
            sent = dptest.replay(ns.name, ns.b, other_pcap)
            sfd = subprocess.run(["ip", "netns", "exec", ns.name, "softflowd", "-d", "-r",
                                  dptest.MIXED, "-n", "10.77.0.2:2055", "-v", "9", "-p", "sfd.pid",
                                  "-c", "sfd.ctl"], cwd=tmp, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=120)
            print("replayed %d other frames (%d bytes); softflowd exit %d" % (
                sent[0], sent[1], sfd.returncode), flush=True)
            time.sleep(2)
            proc.send_signal(signal.SIGTERM)
        except Exception:
            proc.kill()
            raise
        run = proc.finish(timeout=120)
        seen, seen_nf = (int(x) for x in counter.communicate(timeout=60)[0].split())
        s = run.summary
        if run.rc != 0 or s is None:
            fail("engine exit %s\n%s" % (run.rc, run.tail(30)))
        else:
            rows = broker.rows("afxdp")
            pk, by = dptest.sums(rows)
            print("engine: rx %d frames, classes %r, not_collector_port %d, nf9 datagrams %d, "
                  "records %d; Kafka %d rows %d packets %d bytes; lost %d" % (
                      s["rx_packets"], s["frames"], s["not_collector_port"], s["datagrams_nf9"],
                      s["records"], len(rows), pk, by, s["lost_records"]))
            print("kernel (packet socket on %s after XDP): %d frames, %d of them NetFlow" % (
                ns.a, seen, seen_nf))
            other_classes = {k: v for k, v in s["frames"].items() if k != "ok" and v}
            if other_classes or s["not_collector_port"] or s["rx_packets"] != s["frames"]["ok"]:
                fail("the engine got frames that are not collector UDP: %r, not_collector_port %d"
                     % (other_classes, s["not_collector_port"]))
            if s["datagrams_nf9"] != s["rx_packets"] or s["rx_packets"] == 0:
                fail("rx %d frames but %d NetFlow v9 datagrams" % (s["rx_packets"],
                                                                   s["datagrams_nf9"]))
            if (pk, by) != (truth["packets"], truth["bytes"]):
                fail("Kafka %d packets %d bytes, softflowd-v9 truth %d / %d" % (
                    pk, by, truth["packets"], truth["bytes"]))
            if s["lost_records"] or s["rows"] != len(rows):
                fail("lost %d, rows %d, on the topic %d" % (s["lost_records"], s["rows"], len(rows)))
            if seen != sent[0] or seen_nf:
                fail("the kernel saw %d frames (%d NetFlow), the replay sent %d" % (
                    seen, seen_nf, sent[0]))
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("XDP filter: collector UDP to the engine, the rest to the kernel; nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
