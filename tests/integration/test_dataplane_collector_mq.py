#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Multi-queue collector port fed by real exporters: a live net_af_packet collector port on a veth
pair inside a network namespace created here, once with one RX queue on lcore 1 and once with two
queues (qpairs=2, the kernel's fanout hash over addresses and ports) on lcores 1 and 2.

The exporters are twelve softflowd processes in the namespace, each reading the corpus'
mixed.pcap and exporting it to 10.77.0.2:2055 (a permanent neighbour entry points that address at
the engine's end of the veth): four with NetFlow v5, four with v9, four with IPFIX. Each sends
from its own UDP source port, so the fanout hash spreads the exporters over the queues.

Asserted, for each of the two runs:
 - exit 0 on SIGTERM, nothing lost, every row acknowledged;
 - datagrams per protocol and the Kafka rows' sum(Packets)/sum(Bytes) equal four times the
   TRUTH.tsv rows of generated/softflowd-v5.pcap, -v9.pcap and -v10.pcap (the same exporter on
   the same input; the corpus captures were made exactly so);
 - and so the two runs give the same totals.
For two queues: both lcores received datagrams (twelve exporters all hashing to one queue has
odds of 1 in 2048, and would mean RSS did not spread them). Per-exporter telemetry is not
needed here: the totals are per protocol.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

LCORES = "--lcores=0@0,1@1,2@%d" % (1 if os.cpu_count() < 3 else 2)
VERSIONS = {"5": "generated/softflowd-v5.pcap", "9": "generated/softflowd-v9.pcap",
            "10": "generated/softflowd-v10.pcap"}
PER_VERSION = 4
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def run(ns, broker, queues, lcores, want, tmp):
    topic = "cmq%d" % queues
    cfg = ("[collector]\nports = 2055\n"
           "[port.cmq]\ndevice = net_af_packet0,iface=%s,qpairs=%d\nrole = collector\n"
           "rx_queues = %d\nlcores = %s\n" % (ns.a, queues, queues, lcores))
    # console stats on (start_engine turns them off; the later --set wins): the test waits for
    # the datagram count there
    proc = nmtest.start_engine(broker.bootstrap, topic, netns=ns.name, config_text=cfg,
                               sets=["engine.stats_interval_ms=500"], eal=[LCORES], huge=True)
    try:
        if not proc.wait_output("polls", count=len(set(lcores.split(","))), timeout=60):
            raise RuntimeError("engine did not start:\n" + proc.output()[-3000:])
        for v in VERSIONS:
            for i in range(PER_VERSION):
                wd = os.path.join(tmp, "sfd-%s-%d-%d" % (v, queues, i))
                os.makedirs(wd)
                # softflowd wants relative pid/control paths (corpus RECIPES.md)
                p = subprocess.run(["ip", "netns", "exec", ns.name, "softflowd", "-d", "-r",
                                    dptest.MIXED, "-n", "10.77.0.2:2055", "-v", v, "-p", "sfd.pid",
                                    "-c", "sfd.ctl"], cwd=wd, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=120)
                if p.returncode != 0:
                    raise RuntimeError("softflowd -v %s: exit %d\n%s" % (v, p.returncode, p.stdout))
        # every export datagram is on the wire once softflowd exits; give RX a moment
        deadline = time.time() + 20
        expect_dgrams = sum(w["datagrams"] for w in want.values())
        while time.time() < deadline:
            out = proc.output()
            if "datagrams %d" % expect_dgrams in out:
                break
            time.sleep(0.5)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
    except Exception:
        proc.kill()
        raise
    r = proc.finish(timeout=120)
    what = "%d queue(s) on lcores %s" % (queues, lcores)
    s = r.summary
    if r.rc != 0 or s is None:
        fail("%s: exit %s\n%s" % (what, r.rc, r.tail(30)))
        return None
    rows = broker.rows(topic)
    pk, by = dptest.sums(rows)
    got = {"5": s["datagrams_nf5"], "9": s["datagrams_nf9"], "10": s["datagrams_ipfix"]}
    per_lcore = {w["lcore"]: w["rx_packets"] for w in s.get("workers", [])}
    print("%s: datagrams v5/v9/IPFIX %d/%d/%d, records %d, Kafka %d rows %d packets %d bytes, "
          "frames per lcore %r, lost %d" % (what, got["5"], got["9"], got["10"], s["records"],
                                            len(rows), pk, by, per_lcore, s["lost_records"]),
          flush=True)
    for v, w in want.items():
        if got[v] != w["datagrams"]:
            fail("%s: %d v%s datagrams, truth x%d says %d" % (what, got[v], v, PER_VERSION,
                                                              w["datagrams"]))
    want_pk = sum(w["packets"] for w in want.values())
    want_by = sum(w["bytes"] for w in want.values())
    if (pk, by) != (want_pk, want_by):
        fail("%s: Kafka %d packets %d bytes, truth %d / %d" % (what, pk, by, want_pk, want_by))
    if s["lost_records"] or s["rows"] != len(rows) or s["kafka_records_acked"] != s["rows"]:
        fail("%s: lost %d, rows %d, acked %d, on the topic %d" % (
            what, s["lost_records"], s["rows"], s["kafka_records_acked"], len(rows)))
    if queues > 1 and (len(per_lcore) < 2 or min(per_lcore.values()) == 0):
        fail("%s: the exporters were not spread over the queues: %r" % (what, per_lcore))
    return pk, by


def main():
    nmtest.exit_on_signals()
    dptest.require_mirror_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat", "softflowd")
    if not dptest.have_netns():
        nmtest.skip("needs root and ip netns")
    truth = {t["file"]: t for t in nmtest.truth_rows()}
    want = {}
    for v, f in VERSIONS.items():
        if f not in truth:
            nmtest.skip("TRUTH.tsv has no %s row" % f)
        want[v] = {k: PER_VERSION * truth[f][k] for k in ("datagrams", "packets", "bytes")}
    tmp = tempfile.mkdtemp(prefix="nmdp-cmq-")
    results = []
    with dptest.Netns("cmq", queues=2) as ns, dptest.NetnsBroker(ns.name) as broker:
        ns.ip("addr", "add", "10.77.0.1/24", "dev", ns.b)
        mac = subprocess.run(["ip", "netns", "exec", ns.name, "cat",
                              "/sys/class/net/%s/address" % ns.a], stdout=subprocess.PIPE,
                             text=True, check=True).stdout.strip()
        ns.ip("neigh", "replace", "10.77.0.2", "lladdr", mac, "dev", ns.b, "nud", "permanent")
        for queues, lcores in ((1, "1"), (2, "1,2")):
            results.append(run(ns, broker, queues, lcores, want, tmp))
    if None not in results and results[0] != results[1]:
        fail("one queue gave %r, two queues %r" % tuple(results))
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("collector port: 1 and 2 queues give the truth of %d real exporters exactly" % (
        PER_VERSION * len(VERSIONS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
