#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""CPU of each engine thread while the engine is idle (BENCHMARKS.md, "Idle main lcore").

A live engine captures a veth of its own (net_af_packet; nothing is sent on it) with the embedded
Kafka broker; after a settling time, /proc/<pid>/task/*/stat is read twice SECONDS apart and each
thread's user+sys ticks are printed as a share of one core: the main lcore (the flusher, tid ==
pid), the RX lcores (EAL's rte-worker-N) and the rest (librdkafka, telemetry, call_rcu).

    python3 tests/integration/idle_cpu.py [--seconds 10] [--set engine.idle_sleep_us=100] ...

Also used by test_rcu_outage.py for its idle bound (idle_run())."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage  # noqa: E402
import nmtest  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def thread_ticks(pid):
    """{tid: (name, user+sys ticks)} of every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        out[int(tid)] = (name, int(fields[11]) + int(fields[12]))
    return out


def cpu_shares(pid, seconds):
    """{tid: (name, share of one core)} over seconds of wall time."""
    a, t0 = thread_ticks(pid), time.time()
    time.sleep(seconds)
    b, t1 = thread_ticks(pid), time.time()
    return {tid: (name, (ticks - a.get(tid, (name, ticks))[1]) / HZ / (t1 - t0))
            for tid, (name, ticks) in b.items()}


def is_rx(name):
    """EAL names its lcore threads rte-worker-N (22.11) or lcore-worker-N (older)."""
    return name.startswith("rte-worker") or name.startswith("lcore-worker")


def summarise(pid, shares):
    """(main lcore share, [RX lcore shares], other threads' share)."""
    main = shares.get(pid, ("", 0.0))[1]
    rx = [s for tid, (n, s) in sorted(shares.items()) if is_rx(n)]
    other = sum(s for tid, (n, s) in shares.items()
                if tid != pid and not is_rx(n))
    return main, rx, other


def idle_run(seconds=10.0, settle=3.0, sets=(), veth=None):
    """Start a live engine on a silent veth (a kafkaoutage.Veth: veth, else one of its own),
    measure; returns (main, [rx], other)."""
    own = veth is None
    veth = veth or kafkaoutage.Veth(1)
    tmp = kafkaoutage.tmpdir()
    eng = None
    try:
        eng = kafkaoutage.LiveEngine(tmp, "embedded", kafkaoutage.free_udp_port(),
                                     os.path.join(tmp, "spool"), iface=veth.b, name="idle",
                                     sets=["engine.stats_interval_ms=0"] + list(sets))
        eng.wait_ready()
        time.sleep(settle)
        shares = cpu_shares(eng.proc.pid, seconds)
        for tid, (name, s) in sorted(shares.items()):
            nmtest.log("  thread %d %-16s %6.2f %% of a core" % (tid, name, 100 * s))
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
    a = ap.parse_args()
    kafkaoutage.require()
    for r in range(a.runs):
        main_s, rx, other = idle_run(a.seconds, sets=a.sets)
        print("idle %.0f s: main lcore %.2f %%, RX lcores %s, other threads %.2f %% of a core"
              % (a.seconds, 100 * main_s, ", ".join("%.1f %%" % (100 * s) for s in rx),
                 100 * other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
