#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""[collector] allow enforced in the XDP filter (dpdk_app/xdp/nm_xdp_collector.bpf.c, filled by
dpdk_app/xdp_allow.c) of a net_af_xdp collector port on a veth pair in a namespace made here.

The peer end (vb) has three addresses: 10.77.0.1 (softflowd, the real exporter, reading
mixed.pcap), 10.77.0.3 and 10.77.0.4 (strangers: NetFlow v5 datagrams from a UDP socket bound to
each, paced so veth drops none). [collector] allow = 10.77.0.1/32. The frames of mixed.pcap that
are not collector UDP are replayed too, as in test_afxdp.py. Then a SIGHUP adds
[exporter.s3] address = 10.77.0.3 (an exporter's address is admitted; a reload updates the XDP
map) and both strangers send again, with raw IPv6 frames from 2001:db8::99 (a stranger) and
2001:db8:1::5 (inside allow's 2001:db8:1::/48). A second SIGHUP takes [exporter.s3] out again
and 10.77.0.3 sends REMOVED more. Last, a flood of FLOOD frames from as many source addresses
(raw frames from vb) overflows the filter's per-source LRU table.

First the engine starts with xdp_prog= a program without the allow maps (xdp_noallow.bpf.c)
and allow set: start-up must fail (exit 3) naming the port, the interface and the missing map.

Asserted:
 - Kafka rows of 10.77.0.1 sum to TRUTH.tsv's softflowd-v9.pcap packets and bytes;
 - before the reload the strangers never reach the engine (live /netmeta/refused: RX path's
   refused 0) and the XDP filter counted them, per source and in total, exactly: packets =
   datagrams sent (live /netmeta/refused xdp_*);
 - after it, 10.77.0.3's datagrams all reach the engine (NetFlow v5 datagrams = those sent
   after the reload, its rows = their packets) and 10.77.0.4's are still dropped: the summary's
   live /netmeta/refused: 10.77.0.3's first batch, both of 10.77.0.4's and 2001:db8::99's
   frames, exactly; 2001:db8:1::5's frames reach the engine (rx); after the second reload
   10.77.0.3's datagrams are dropped in XDP again (its count + REMOVED);
 - after the flood, the summary's xdp_dropped* = all of the above + FLOOD (datagrams and frame
   bytes: the total counts what the LRU evicted), its per-source table holds at most 1,024
   sources, and its text line says so; the RX path refused none;
 - nothing else changed: a packet socket on va sees every replayed frame and no collector UDP
   (XDP_DROP, not XDP_PASS, for the strangers).
About 35 s.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

XDP_OBJ = dptest.XDP_OBJ
NOALLOW_OBJ = os.path.join(nmtest.BUILD, "tests", "integration", "xdp_noallow.bpf.o")
STRANGERS = {"10.77.0.3": 300, "10.77.0.4": 200}
AFTER = {"10.77.0.3": 100, "10.77.0.4": 50}  # sent after the reload
REMOVED = 20  # sent by 10.77.0.3 once its exporter section is gone again
FLOOD = 2000  # sources, one datagram each: more than the LRU's 1,024
V5_LEN = 24 + 48  # a NetFlow v5 header and one record
FRAME_LEN = 14 + 20 + 8 + V5_LEN
V6_STRANGER, V6_ADMITTED = ("2001:db8::99", 7), ("2001:db8:1::5", 5)
FRAME6_LEN = 14 + 40 + 8 + V5_LEN
problems = []

SEND = r'''
import socket, struct, sys, time
src, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
rec = struct.pack("!IIIHHIIIIHHBBBBHHBBH", 0x0a000001, 0x0a000002, 0, 1, 2, 10, 1000, 0, 0,
                  1234, 80, 0, 0, 6, 0, 0, 0, 24, 24, 0)
for i in range(n):
    s.sendto(struct.pack("!HHIIIIBBH", 5, 1, 1000, int(time.time()), 0, i, 0, 0, 0) + rec,
             ("10.77.0.2", 2055))
    if i % 16 == 15:
        time.sleep(0.002)
print(n)
'''


def udp6_frame(src, sport, dport, payload_len, smac, dmac):
    """Ethernet/IPv6/UDP to 2001:db8:77::2 from src (text); the payload zeros."""
    udp = struct.pack("!HHHH", sport, dport, 8 + payload_len, 0) + b"\0" * payload_len
    ip = struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64,
                     socket.inet_pton(socket.AF_INET6, src),
                     socket.inet_pton(socket.AF_INET6, "2001:db8:77::2"))
    return bytes.fromhex(dmac.replace(":", "") + smac.replace(":", "")) + b"\x86\xdd" + ip + udp


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def main():
    nmtest.exit_on_signals()
    truth, tmp, other_pcap = dptest.xdp_prologue("xdpa", (XDP_OBJ, NOALLOW_OBJ))
    prefix = nmtest.file_prefix("xdpa")
    with dptest.Netns("xa") as ns, dptest.NetnsBroker(ns.name) as broker:
        mac = dptest.xdp_peer(ns, STRANGERS)
        cfg_text = dptest.xdp_config(ns.a, "allow = 10.77.0.1/32, 2001:db8:1::/48\n")
        # A program without our maps and an allow list: start-up stops, saying why.
        bad = nmtest.start_engine(broker.bootstrap, "afxdpallow", netns=ns.name, huge=True,
                                  config_text=cfg_text.replace(XDP_OBJ, NOALLOW_OBJ))
        bad = bad.finish(timeout=120)
        why = "[port.xdp] interface %s: the XDP program" % ns.a
        line = next((ln for ln in bad.output.splitlines() if why in ln), "")
        print("without the allow maps: exit %d: %s" % (bad.rc, line.strip()), flush=True)
        if bad.rc != 3 or "lacks the map nm_allow" not in line:
            fail("an XDP program without the allow maps: exit %d, want 3 with %r ... "
                 "lacks the map nm_allow\n%s" % (bad.rc, why, bad.tail(15)))
        cfg = os.path.join(tmp, "netmeta.ini")
        with open(cfg, "w") as f:
            f.write(cfg_text)
        # not --in-memory: the telemetry socket lives under /var/run/dpdk/<prefix>/
        proc = nmtest.start_engine(broker.bootstrap, "afxdpallow", netns=ns.name, config=cfg,
                                   huge=True, in_memory=False, prefix=prefix)
        counter, live, live2, live3 = None, None, None, None
        mac_b = ns.mac(ns.b)
        v6_pcap = os.path.join(tmp, "v6.pcap")
        dptest.write_pcap(v6_pcap, [(1700000000, i, udp6_frame(a, 40000, 2055, V5_LEN, mac_b, mac))
                                    for a, n in (V6_STRANGER, V6_ADMITTED) for i in range(n)])
        flood_pcap = os.path.join(tmp, "flood.pcap")
        dptest.write_pcap(flood_pcap, [(1700000000, i, dptest.udp_frame(
            bytes([10, 200, i >> 8, i & 255]), bytes([10, 77, 0, 2]), 40000, 2055, V5_LEN,
            smac=mac_b.replace(":", ""), dmac=mac.replace(":", ""), ident=i))
            for i in range(FLOOD)])

        def send(batch):
            for a, n in batch.items():
                out = subprocess.run(["ip", "netns", "exec", ns.name, "python3", "-c", SEND, a,
                                      str(n)], stdout=subprocess.PIPE, text=True, check=True,
                                     timeout=60).stdout
                assert int(out) == n

        with proc:
            proc.wait_started()
            counter = dptest.PacketCounter(ns, 20)
            sent = dptest.replay(ns.name, ns.b, other_pcap)
            send(STRANGERS)
            sfd = dptest.softflowd_v9(ns, tmp)
            print("replayed %d other frames; strangers sent %r; softflowd exit %d" % (
                sent[0], STRANGERS, sfd.returncode), flush=True)
            time.sleep(1)
            live = nmtest.telemetry(prefix, "/netmeta/refused")
            with open(cfg, "w") as f:
                f.write(cfg_text + "[exporter.s3]\naddress = 10.77.0.3\n")
            proc.send_signal(signal.SIGHUP)
            if not proc.wait_output("config version 2 live", timeout=20):
                fail("the reload did not apply:\n" + proc.output()[-2000:])
            send(AFTER)
            time.sleep(1)
            v6 = dptest.replay(ns.name, ns.b, v6_pcap)
            assert v6[0] == V6_STRANGER[1] + V6_ADMITTED[1], v6
            time.sleep(0.5)
            live2 = nmtest.telemetry(prefix, "/netmeta/refused")
            with open(cfg, "w") as f:
                f.write(cfg_text)
            proc.send_signal(signal.SIGHUP)
            if not proc.wait_output("config version 3 live", timeout=20):
                fail("the second reload did not apply:\n" + proc.output()[-2000:])
            send({"10.77.0.3": REMOVED})
            time.sleep(0.5)
            live3 = nmtest.telemetry(prefix, "/netmeta/refused")
            flood = dptest.replay(ns.name, ns.b, flood_pcap)
            assert flood == (FLOOD, FLOOD * FRAME_LEN), flood
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
        run = proc.finish(timeout=120)
        seen, seen_nf = counter.count()
        peer_drops = int(subprocess.run(
            ["ip", "netns", "exec", ns.name, "cat", "/sys/class/net/%s/statistics/tx_dropped"
             % ns.b], stdout=subprocess.PIPE, text=True).stdout or 0)
        s = run.summary
        if run.rc != 0 or s is None:
            fail("engine exit %s\n%s" % (run.rc, run.tail(30)))
        else:
            rows = broker.rows("afxdpallow")
            by_src = dptest.sums(rows, key=lambda r: r["SamplerAddress"])
            sfd_sum = by_src.pop(nmtest.addr16("::ffff:10.77.0.1"), (0, 0))
            s3_sum = by_src.pop(nmtest.addr16("::ffff:10.77.0.3"), (0, 0))
            dropped = {"10.77.0.3": STRANGERS["10.77.0.3"],
                       "10.77.0.4": STRANGERS["10.77.0.4"] + AFTER["10.77.0.4"]}
            v4 = sum(dropped.values())
            dropped[V6_STRANGER[0]] = V6_STRANGER[1]
            total = v4 + V6_STRANGER[1] + REMOVED + FLOOD
            total_bytes = (v4 + REMOVED + FLOOD) * FRAME_LEN + V6_STRANGER[1] * FRAME6_LEN
            print("engine: rx %d frames, nf9 datagrams %d, nf5 %d, refused (RX path) %d; Kafka "
                  "%d rows: softflowd %r, 10.77.0.3 %r, others %r; lost %d" % (
                      s["rx_packets"], s["datagrams_nf9"], s["datagrams_nf5"], s["refused"],
                      len(rows), sfd_sum, s3_sum, by_src, s["lost_records"]))
            print("XDP: dropped %d datagrams %d bytes from %d sources, the heaviest: %r" % (
                s["xdp_dropped"], s["xdp_dropped_bytes"], s["xdp_dropped_sources"],
                list(s["xdp_dropped_by_source"].items())[:4]))
            text = [ln.strip() for ln in run.output.splitlines()
                    if "xdp allow dropped" in ln or "XDP filter on" in ln]
            print("engine says:\n  " + "\n  ".join(text))
            if not any(ln.startswith("xdp allow dropped") and " %d datagrams, %d bytes, from %d "
                       % (total, total_bytes, s["xdp_dropped_sources"]) in ln
                       for ln in text):
                fail("the summary's text has no (right) xdp allow dropped line")
            print("live /netmeta/refused before the reload: %r" % live)
            print("live /netmeta/refused after the first reload: %r" % live2)
            print("live /netmeta/refused after the second reload: %r" % live3)
            print("kernel (packet socket on %s after XDP): %d frames, %d of them NetFlow; "
                  "%s tx_dropped %d" % (ns.a, seen, seen_nf, ns.b, peer_drops))
            if s["refused"] or s["datagrams_nf5"] != AFTER["10.77.0.3"] or \
                    s["datagrams_nf9"] + s["datagrams_nf5"] + V6_ADMITTED[1] != s["rx_packets"] \
                    or s["datagrams_nf9"] == 0:
                fail("rx %d frames, nf9 %d, nf5 %d (want %d: 10.77.0.3 after the reload; and %d "
                     "IPv6 frames from %s), RX path refused %d (want 0)" % (
                         s["rx_packets"], s["datagrams_nf9"], s["datagrams_nf5"],
                         AFTER["10.77.0.3"], V6_ADMITTED[1], V6_ADMITTED[0], s["refused"]))
            if s["xdp_dropped"] != total or s["xdp_dropped_bytes"] != total_bytes or \
                    not 0 < s["xdp_dropped_sources"] <= 1024 or \
                    len(s["xdp_dropped_by_source"]) != 16:
                fail("XDP counted %d / %d bytes / %d sources (%d listed), want %d / %d / at "
                     "most 1,024 (16 listed)" % (
                         s["xdp_dropped"], s["xdp_dropped_bytes"], s["xdp_dropped_sources"],
                         len(s["xdp_dropped_by_source"]), total, total_bytes))
            if live2 is None or live2.get("refused") != 0 or \
                    live2.get("xdp_dropped") != v4 + V6_STRANGER[1] or \
                    live2.get("xdp_dropped_bytes") != v4 * FRAME_LEN + \
                    V6_STRANGER[1] * FRAME6_LEN or \
                    live2.get("xdp_by_source") != {a.replace(".", "_").replace(":", "_"): n
                                                   for a, n in dropped.items()}:
                fail("/netmeta/refused after the first reload: %r, want refused 0 and XDP %r" % (
                    live2, dropped))
            want3 = dict(dropped, **{"10.77.0.3": dropped["10.77.0.3"] + REMOVED})
            if live3 is None or live3.get("refused") != 0 or \
                    live3.get("xdp_dropped") != v4 + V6_STRANGER[1] + REMOVED or \
                    live3.get("xdp_by_source") != {a.replace(".", "_").replace(":", "_"): n
                                                   for a, n in want3.items()}:
                fail("/netmeta/refused after the second reload: %r, want refused 0 and XDP %r"
                     % (live3, want3))
            if live is None or live.get("refused") != 0 or \
                    live.get("xdp_dropped") != sum(STRANGERS.values()) or \
                    live.get("xdp_by_source") != {a.replace(".", "_"): n
                                                  for a, n in STRANGERS.items()}:
                fail("/netmeta/refused before the reload: %r, want refused 0 and XDP %r" % (
                    live, STRANGERS))
            n3 = AFTER["10.77.0.3"]
            if s3_sum != (n3 * 10, n3 * 1000) or by_src:
                fail("Kafka: 10.77.0.3's rows %r (want %r, its records after the reload), "
                     "others %r" % (s3_sum, (n3 * 10, n3 * 1000), by_src))
            dptest.xdp_checks(fail, s, rows, sfd_sum, truth, (seen, seen_nf), sent[0])
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("XDP allow: the real exporter whole, stranger datagrams dropped in XDP and counted per "
          "source, a reload admitted an exporter's address, a %d-source flood counted in the "
          "total with the per-source table bounded" % FLOOD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
