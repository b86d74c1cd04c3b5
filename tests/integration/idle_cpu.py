#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""CPU of each engine thread while the engine is idle (BENCHMARKS.md, "Idle main lcore").

A live engine captures a veth of its own (net_af_packet; nothing is sent on it) with the embedded
Kafka broker; after a settling time, /proc/<pid>/task/*/stat is read twice SECONDS apart and each
thread's time on a CPU (schedstat) is printed as a share of one core, with its wakeups: the main lcore (the flusher, tid ==
pid), the RX lcores (EAL's rte-worker-N) and the rest (librdkafka, telemetry, call_rcu).

    python3 tests/integration/idle_cpu.py [--seconds 10] [--set engine.idle_sleep_us=100]
                                          [--traffic ROUNDS] [--runs N]

Also used by test_rcu_outage.py for its idle bound (idle_run())."""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage  # noqa: E402
import nmtest  # noqa: E402

def thread_times(pid):
    """{tid: (name, ns on a CPU, voluntary context switches)} of every thread of pid:
    /proc/<pid>/task/<tid>/schedstat (nanoseconds, not the 10 ms ticks of stat) and status."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        d = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(d + "comm") as f:
                name = f.read().strip()
            with open(d + "schedstat") as f:
                ns = int(f.read().split()[0])
            with open(d + "status") as f:
                vcs = [int(ln.split()[1]) for ln in f if ln.startswith("voluntary_ctxt_switches")]
        except (OSError, ValueError):
            continue
        out[int(tid)] = (name, ns, vcs[0] if vcs else 0)
    return out


def cpu_shares(pid, seconds):
    """{tid: (name, share of one core, wakeups per second)} over seconds of wall time (a
    wakeup: a voluntary context switch, i.e. the thread slept and woke up)."""
    a, t0 = thread_times(pid), time.time()
    time.sleep(seconds)
    b, t1 = thread_times(pid), time.time()
    dt = t1 - t0
    return {tid: (name, (ns - a.get(tid, (name, ns, vcs))[1]) / 1e9 / dt,
                  (vcs - a.get(tid, (name, ns, vcs))[2]) / dt)
            for tid, (name, ns, vcs) in b.items()}


def is_rx(name):
    """EAL names its lcore threads rte-worker-N (22.11) or lcore-worker-N (older)."""
    return name.startswith("rte-worker") or name.startswith("lcore-worker")


def summarise(pid, shares):
    """(main lcore share, [RX lcore shares], other threads' share, main lcore wakeups/s)."""
    main, wakeups = shares.get(pid, ("", 0.0, 0.0))[1:]
    rx = [s for tid, (n, s, w) in sorted(shares.items()) if is_rx(n)]
    other = sum(s for tid, (n, s, w) in shares.items() if tid != pid and not is_rx(n))
    return main, rx, other, wakeups


def idle_run(seconds=10.0, settle=3.0, sets=(), veth=None, traffic=0):
    """Start a live engine on a silent veth (a kafkaoutage.Veth: veth, else one of its own),
    measure; returns (main, [rx], other, main wakeups/s). traffic: send the corpus' NetFlow v5
    captures that many times, paced over the measurement (kafkaoutage.send_paced)."""
    own = veth is None
    veth = veth or kafkaoutage.Veth(len(kafkaoutage.nf5_cases()) if traffic else 1)
    tmp = kafkaoutage.tmpdir()
    eng = None
    try:
        port = kafkaoutage.free_udp_port()
        eng = kafkaoutage.LiveEngine(tmp, "embedded", port, os.path.join(tmp, "spool"),
                                     iface=veth.b, name="idle",
                                     sets=["engine.stats_interval_ms=0"] + list(sets))
        eng.wait_ready()
        time.sleep(settle)
        sender = None
        if traffic:
            sender = threading.Thread(target=kafkaoutage.send_paced,
                                      args=(veth, port, traffic, seconds + 1))
            sender.start()
            time.sleep(0.5)
        shares = cpu_shares(eng.proc.pid, seconds)
        if sender is not None:
            sender.join()
        for tid, (name, s, w) in sorted(shares.items()):
            nmtest.log("  thread %d %-16s %6.2f %% of a core, %6.0f wakeups/s"
                       % (tid, name, 100 * s, w))
        return summarise(eng.proc.pid, shares)
    finally:
        if eng is not None:
            eng.stop(60)
            eng.cleanup()
        if own:
            veth.remove()
        os.system("rm -rf " + tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--traffic", type=int, default=0, metavar="ROUNDS",
                    help="send the nf5 corpus captures ROUNDS times during the measurement")
    a = ap.parse_args()
    kafkaoutage.require()
    for r in range(a.runs):
        main_s, rx, other, wake = idle_run(a.seconds, sets=a.sets, traffic=a.traffic)
        print("%s %.0f s: main lcore %.2f %% (%.0f wakeups/s), RX lcores %s, other threads "
              "%.2f %% of a core" % ("traffic" if a.traffic else "idle", a.seconds, 100 * main_s, wake,
                                     ", ".join("%.1f %%" % (100 * s) for s in rx), 100 * other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
