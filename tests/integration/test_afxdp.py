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
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def main():
    nmtest.exit_on_signals()
    truth, tmp, other_pcap = dptest.xdp_prologue("xdp")
    with dptest.Netns("xdp") as ns, dptest.NetnsBroker(ns.name) as broker:
        mac = dptest.xdp_peer(ns)
        print("namespace %s, veth %s (engine, %s) <-> %s (10.77.0.1), broker %s" % (
            ns.name, ns.a, mac, ns.b, broker.bootstrap), flush=True)
        cfg = dptest.xdp_config(ns.a)
        proc = nmtest.start_engine(broker.bootstrap, "afxdp", netns=ns.name, config_text=cfg,
                                   huge=True)
        counter = None
        with proc:
            proc.wait_started()
            counter = dptest.PacketCounter(ns, 10)
            sent = dptest.replay(ns.name, ns.b, other_pcap)
            sfd = dptest.softflowd_v9(ns, tmp)
            print("replayed %d other frames (%d bytes); softflowd exit %d" % (
                sent[0], sent[1], sfd.returncode), flush=True)
            time.sleep(2)
            proc.send_signal(signal.SIGTERM)
        run = proc.finish(timeout=120)
        seen, seen_nf = counter.count()
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
            dptest.xdp_checks(fail, s, rows, (pk, by), truth, (seen, seen_nf), sent[0])
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("XDP filter: collector UDP to the engine, the rest to the kernel; nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
