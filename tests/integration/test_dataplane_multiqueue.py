#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Multi-queue RX: a live net_af_packet port on a veth pair inside a network namespace created
here, fed by a raw-socket replay of mixed.pcap (its 2154 frames <= 1518 bytes: the veth MTU)
from the peer end; Kafka is a mock broker inside the namespace, read back with kcat there.
The engine is stopped with SIGTERM once the replay is done.

Asserted:
 1. one queue on lcore 1, and two queues (qpairs=2, kernel fanout hash) on lcores 1 and 2 from
    `lcores = 1,2`: exit 0 on SIGTERM, nothing lost; the engine received exactly the frames sent;
    Kafka rows sum to the frames and bytes sent; the two runs give the same totals;
 2. lcore assignment follows port.NAME.lcores: with `1,2` queue 0 is polled by lcore 1 and queue 1
    by lcore 2 and both queues received frames (the hash spread them); with `2` one worker on
    lcore 2 polls both queues;
 3. 1:10 deterministic on two queues: each queue samples exactly ceil(its frames / 10) (the 1st,
    11th, ... frame of the queue); Kafka holds that many packets, SamplingRate 10 on every row;
 4. a port whose device cannot do what the config asks is refused at start with exit 3 and a
    message naming it: two queues on net_pcap (no RSS), more queues than net_af_packet's qpairs,
    the main lcore or an lcore EAL does not run in `lcores`. (net_af_xdp on the veth: see
    test_afxdp*.py when present.)
"""
import os
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


# main lcore 0 on CPU 0, workers 1 and 2 (both on CPU 1 when the machine has two CPUs)
LCORES = "--lcores=0@0,1@1,2@%d" % (1 if os.cpu_count() < 3 else 2)


def config(ns, queues, lcores, rate=1):
    return ("[mirror]\nsample_rate = %d\n" % rate +
            "[port.mq]\ndevice = net_af_packet0,iface=%s,qpairs=%d\nrole = mirror-rx\n"
            "rx_queues = %d\n%s" % (ns.a, queues, queues,
                                      "lcores = %s\n" % lcores if lcores else ""))


def live_run(ns, broker, topic, queues, lcores, rate=1):
    proc = nmtest.start_engine(broker.bootstrap, topic, netns=ns.name,
                               config_text=config(ns, queues, lcores, rate), eal=[LCORES],
                               huge=True)
    t0 = time.time()
    try:
        n_workers = len(set(lcores.split(","))) if lcores else 2
        if not proc.wait_output("polls", count=n_workers, timeout=60):
            raise RuntimeError("engine did not start:\n" + proc.output()[-3000:])
        time.sleep(0.5)
        sent = dptest.replay(ns.name, ns.b, dptest.MIXED)
        time.sleep(2)   # the last frames through the kernel and the PMD
        proc.send_signal(signal.SIGTERM)
    except Exception:
        proc.kill()
        raise
    run = proc.finish(timeout=120, t0=t0)
    return run, sent


def check(run, sent, rows, what):
    s = run.summary
    if run.rc != 0 or s is None:
        fail("%s: exit %s\n%s" % (what, run.rc, run.tail(25)))
        return
    pk, by = dptest.sums(rows)
    print("  %-28s sent %d frames %d bytes; engine rx %d/%d, records %d/%d; Kafka rows %d: "
          "%d packets %d bytes; lost %d" % (what, sent[0], sent[1], s["rx_packets"], s["rx_bytes"],
                                            s["records_packets"], s["records_bytes"], len(rows), pk,
                                            by, s["lost_records"]), flush=True)
    for w in s["workers"]:
        print("      lcore %d: %s" % (w["lcore"], ", ".join(
            "port %d queue %d: %d frames" % (q["port"], q["queue"], q["rx_packets"])
            for q in w["queues"])))
    if (s["rx_packets"], s["rx_bytes"]) != sent:
        fail("%s: engine received %d frames %d bytes, sent %r" % (what, s["rx_packets"],
                                                                 s["rx_bytes"], sent))
    if (pk, by) != sent or (s["records_packets"], s["records_bytes"]) != sent:
        fail("%s: Kafka %d/%d, records %d/%d, sent %r" % (what, pk, by, s["records_packets"],
                                                          s["records_bytes"], sent))
    if s["lost_records"] or s["rows"] != len(rows) or s["rows"] != s["kafka_records_acked"]:
        fail("%s: lost %d, rows %d, on the topic %d, acked %d" % (
            what, s["lost_records"], s["rows"], len(rows), s["kafka_records_acked"]))


def assignment(run, want, what):
    """want: {lcore: [queue, ...]} on port 0."""
    if run.summary is None:
        return
    got = {w["lcore"]: [q["queue"] for q in w["queues"]] for w in run.summary["workers"]}
    if got != want:
        fail("%s: lcores poll %r, expected %r" % (what, got, want))
    empty = [(w["lcore"], q["queue"]) for w in run.summary["workers"] for q in w["queues"]
             if q["rx_packets"] == 0]
    if empty:
        fail("%s: queue(s) that received nothing (the hash did not spread): %r" % (what, empty))


def refused(ns, broker, cfg, expect_text, what, eal=(LCORES,)):
    run = nmtest.run_engine(brokers=broker.bootstrap, topic="refused", netns=ns.name,
                            config_text=cfg, eal=list(eal), timeout=60, huge=True)
    ok = run.rc == 3 and expect_text in run.output
    line = next((ln for ln in run.output.splitlines() if expect_text in ln), run.tail(3))
    print("  %-44s exit %s: %s" % (what, run.rc, line.strip()[:200]), flush=True)
    if not ok:
        fail("%s: exit %s, expected 3 and %r in:\n%s" % (what, run.rc, expect_text, run.tail(15)))


def main():
    nmtest.exit_on_signals()
    dptest.require_mirror_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    if not dptest.have_netns():
        nmtest.skip("needs root and ip netns")
    with dptest.Netns("mq", queues=2) as ns, dptest.NetnsBroker(ns.name) as broker:
        print("namespace %s, veth %s <-> %s, mock broker %s" % (ns.name, ns.a, ns.b,
                                                               broker.bootstrap), flush=True)
        totals = {}
        for queues, lcores, want in ((1, "1", {1: [0]}), (2, "1,2", {1: [0], 2: [1]}),
                                     (2, "2", {2: [0, 1]})):
            what = "%d queue(s), lcores = %s" % (queues, lcores)
            topic = "mq-%d-%s" % (queues, lcores.replace(",", "_"))
            try:
                run, sent = live_run(ns, broker, topic, queues, lcores)
                rows = broker.rows(topic)
                check(run, sent, rows, what)
                assignment(run, want, what)
                totals[what] = dptest.sums(rows)
            except Exception:  # noqa: BLE001
                fail("%s: %s" % (what, traceback.format_exc()))
        if len(set(totals.values())) > 1:
            fail("totals differ between queue layouts: %r" % totals)

        print("\n== 1:10 deterministic on 2 queues: ceil(frames/10) per queue", flush=True)
        try:
            run, sent = live_run(ns, broker, "mq-det10", 2, "1,2", rate=10)
            rows = broker.rows("mq-det10")
            s = run.summary
            if run.rc != 0 or s is None:
                fail("1:10: exit %s\n%s" % (run.rc, run.tail(20)))
            else:
                qs = [q for w in s["workers"] for q in w["queues"]]
                for q in qs:
                    exp = -(-q["rx_packets"] // 10)
                    print("  queue %d: %d frames -> %d sampled (ceil %d)" % (
                        q["queue"], q["rx_packets"], q["mirror_sampled"], exp))
                    if q["mirror_sampled"] != exp:
                        fail("1:10 queue %d: %d sampled of %d frames, expected %d" % (
                            q["queue"], q["mirror_sampled"], q["rx_packets"], exp))
                pk = sum(r["Packets"] for r in rows)
                if sum(q["rx_packets"] for q in qs) != sent[0] or \
                        pk != sum(q["mirror_sampled"] for q in qs) or \
                        any(r["SamplingRate"] != 10 for r in rows) or s["lost_records"]:
                    fail("1:10: sent %d, queues %r, Kafka packets %d, lost %d" % (
                        sent[0], qs, pk, s["lost_records"]))
        except Exception:  # noqa: BLE001
            fail("1:10: %s" % traceback.format_exc())

        print("\n== refused at start", flush=True)
        pcap = dptest.MIXED
        # net_pcap with two rx_pcap files has two RX queues but no RSS
        refused(ns, broker, "[port.p]\ndevice = net_pcap0,rx_pcap=%s,rx_pcap=%s\n"
                "role = mirror-rx\nrx_queues = 2\n" % (pcap, pcap),
                "cannot spread traffic over queues", "net_pcap, 2 files, rx_queues = 2 (no RSS)")
        refused(ns, broker, "[port.p]\ndevice = net_af_packet0,iface=%s,qpairs=1\n"
                "role = mirror-rx\nrx_queues = 2\n" % ns.a, "has at most 1 RX queues",
                "af_packet qpairs=1 with rx_queues = 2")
        refused(ns, broker, "[port.p]\ndevice = net_af_packet0,iface=%s\nrole = mirror-rx\n"
                "lcores = 0\n" % ns.a, "is the main (flusher) lcore", "lcores = 0 (the main lcore)")
        refused(ns, broker, "[port.p]\ndevice = net_af_packet0,iface=%s\nrole = mirror-rx\n"
                "lcores = 7\n" % ns.a, "is not an EAL lcore", "lcores = 7 (not run by EAL)")
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("all multi-queue checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
