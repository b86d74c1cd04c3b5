#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Telemetry during shutdown never reads freed state (issue 11, point 7).

Five engine runs on a pcap (net_pcap, offline: the engine reads the file, drains Kafka and frees
workers, sink, template cache and exporter table by itself). During each run
scripts/netmeta-stats --watch 0.01 polls every /netmeta command, one process per command, and
a thread of this test queries the telemetry socket in a tight loop, until the engine has
exited. Asserted per run: exit status 0 (no crash, nothing lost), the pollers got answers while
the engine ran. Without the gate (dpdk_app/app.h, nm_tel_close()) a handler can run on freed
memory; a plain build may survive that by luck, an ASan build (b_sanitize=address) reports it.
About 20 s.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

CAPTURE = "generated/softflowd-v10.pcap"
COMMANDS = ("/netmeta/stats", "/netmeta/kafka", "/netmeta/exporters", "/netmeta/interfaces",
            "/netmeta/refused")
STATS = os.path.join(nmtest.SOURCE, "scripts", "netmeta-stats")


def hammer(path, stop, answers):
    """Query every command as fast as the socket answers until stop is set."""
    while not stop.is_set():
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(2)
            s.connect(path)
            s.recv(1024)
            for c in COMMANDS:
                s.send(c.encode())
                json.loads(s.recv(1 << 20).decode() or "{}")
                answers[0] += 1
            s.close()
        except (OSError, ValueError):
            time.sleep(0.001)


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    pcap = os.path.join(nmtest.CORPORA, CAPTURE)
    if not os.path.exists(pcap):
        nmtest.skip("%s absent" % pcap)
    failures = 0
    with nmtest.MockBroker() as broker:
        for run in range(5):
            prefix = "nmtelsd%d_%d" % (os.getpid(), run)
            eng = nmtest.start_engine(broker.bootstrap, "telsd-%d-%d" % (os.getpid(), run),
                                      pcaps=[pcap], prefix=prefix,
                                      sets=("kafka.linger_ms=200",))
            sock = "/var/run/dpdk/%s/dpdk_telemetry.v2" % prefix
            deadline = time.time() + 20
            while not os.path.exists(sock) and eng.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            stop, answers = threading.Event(), [0]
            th = threading.Thread(target=hammer, args=(sock, stop, answers))
            th.start()
            watchers = [subprocess.Popen([sys.executable, STATS, "--prefix", prefix, "--watch",
                                          "0.01", "--json", c], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL) for c in COMMANDS]
            res = eng.finish(timeout=120)
            stop.set()
            th.join()
            for w in watchers:
                try:
                    w.wait(5)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.wait()
            lost = res.summary.get("lost_records") if res.summary else None
            nmtest.log("run %d: exit %d, %d telemetry answers, lost %r, %.1f s"
                       % (run, res.rc, answers[0], lost, res.seconds))
            if res.rc != 0 or answers[0] == 0:
                nmtest.log("FAIL:", res.tail())
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
