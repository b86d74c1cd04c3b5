#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Attack: one datagram each from many (spoofed) sources takes every exporter entry.

A live engine (net_af_packet on a veth pair in a namespace of the test's own) with
[collector] max_exporters = 64. 500 sources (10.98.x.y, raw frames) each send one IPFIX datagram
holding a template: 64 of them get an entry (and a template), 436 are counted in
exporters_overflow. Then softflowd's IPFIX export (the corpus capture
generated/softflowd-v10.pcap, replayed frame by frame) arrives:
  - with exporter_timeout_s = 2 it is sent once the engine has expired the flood's entries
    (telemetry /netmeta/exporters: expired >= 64): it gets an entry, its templates
    are accepted and its rows in Kafka equal TRUTH.tsv (packets, bytes); expired entries and
    their templates are counted;
  - with exporter_timeout_s = 0 (expiry off, the engine before this change) the same sequence
    leaves it without an entry: its templates are refused and none of its rows reach Kafka. This
    run shows the first one's result is the expiry's doing.
About 25 s (two engine runs of ~10 s).
"""
import os
import signal
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dptest  # noqa: E402
import nmtest  # noqa: E402

CAPTURE = "generated/softflowd-v10.pcap"
N_SRC, MAX_EXPORTERS = 500, 64
problems = []

def fail(msg):
    problems.append(msg)
    nmtest.log("FAIL:", msg)


def template_datagram():
    fields = [(8, 4), (12, 4), (2, 4), (1, 4)]
    rec = struct.pack("!HH", 256, len(fields)) + b"".join(struct.pack("!HH", ie, ln)
                                                          for ie, ln in fields)
    s = struct.pack("!HH", 2, 4 + len(rec)) + rec
    return struct.pack("!HHIII", 10, 16 + len(s), 1700000000, 0, 0) + s


def wait_for(prefix, eng, what, cond, timeout):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        if eng.poll() is not None:
            raise RuntimeError("engine exited: %s\n%s" % (eng.poll(), eng.output()[-3000:]))
        last = nmtest.telemetry(prefix, "/netmeta/exporters")
        if last is not None and cond(last):
            return last
        time.sleep(0.3)
    raise RuntimeError("%s: not within %d s; /netmeta/exporters: %s"
                       % (what, timeout, {k: v for k, v in (last or {}).items()
                                          if not isinstance(v, dict)}))


def run(ns, broker, timeout_s, flood_pcap, real_pcap):
    topic = "attack-expflood-%d-%d" % (timeout_s, os.getpid())
    prefix = nmtest.file_prefix("nmexpfl")
    cfg = ("[collector]\nports = 2055\nmax_exporters = %d\nexporter_timeout_s = %d\n"
           "[port.ef]\ndevice = net_af_packet0,iface=%s\nrole = collector\n"
           % (MAX_EXPORTERS, timeout_s, ns.a))
    eng = nmtest.start_engine(broker.bootstrap, topic, netns=ns.name, config_text=cfg,
                              in_memory=False, prefix=prefix, huge=True)
    with eng:
        wait_for(prefix, eng, "telemetry", lambda e: "exporters" in e, 60)
        n = dptest.paced_replay(ns.name, ns.b, flood_pcap)
        e = wait_for(prefix, eng, "the flood",
                     lambda e: e["exporters"] + e["exporters_overflow"] >= N_SRC, 30)
        nmtest.log("timeout %d s: flood of %d frames: exporters %d, overflow %d"
                   % (timeout_s, n, e["exporters"], e["exporters_overflow"]))
        if e["exporters"] != MAX_EXPORTERS or e["exporters_overflow"] != N_SRC - MAX_EXPORTERS:
            fail("timeout %d: flood made %d entries, %d overflow (want %d, %d)"
                 % (timeout_s, e["exporters"], e["exporters_overflow"], MAX_EXPORTERS,
                    N_SRC - MAX_EXPORTERS))
        if timeout_s:
            e = wait_for(prefix, eng, "expiry",
                         lambda e: e["expired"] >= MAX_EXPORTERS, 30)
            nmtest.log("expired %d, exporters %d" % (e["expired"], e["exporters"]))
            time.sleep(0.5)  # the expired slots' grace period: one loop of each lcore
        else:
            time.sleep(2 + 3)  # as long as the first run waits for its expiry
        replayed, _ = dptest.replay(ns.name, ns.b, real_pcap)
        e = wait_for(prefix, eng, "the real export",
                     lambda e: e["exporters_overflow"] >= N_SRC - MAX_EXPORTERS + replayed or
                     any(isinstance(v, dict) and v.get("address") == "127.0.0.1" and
                         v.get("datagrams") == replayed for v in e.values()), 30)
        real = [v for v in e.values() if isinstance(v, dict) and v.get("address") == "127.0.0.1"]
        time.sleep(1.5)  # the last second's table reaches the flusher
        eng.send_signal(signal.SIGTERM)
    r = eng.finish(timeout=120)
    if r.rc != 0 or r.summary is None:
        raise RuntimeError("engine (timeout %d) exit %s:\n%s" % (timeout_s, r.rc, r.tail()))
    rows = [x for x in broker.rows(topic) if nmtest.addr_text(x["SamplerAddress"]) == "::ffff:127.0.0.1"]
    return r.summary, real, dptest.sums(rows)


def main():
    nmtest.exit_on_signals()
    path, truth = dptest.require_live_capture(CAPTURE)
    tmp = tempfile.mkdtemp(prefix="nm-attack-expflood-")
    flood = os.path.join(tmp, "flood.pcap")
    dg = template_datagram()
    dptest.write_pcap(flood, [(0, 0, dptest.datagram_frame(bytes([10, 98, i >> 8, i & 255]), dg))
                              for i in range(N_SRC)])
    want = (truth["packets"], truth["bytes"])
    with dptest.Netns("expfl") as ns, dptest.NetnsBroker(ns.name) as broker:
        s, real, got = run(ns, broker, 2, flood, path)
        nmtest.log("expiry on: summary exp_expired %s, overflow %s; real exporter %s; "
                   "rows %r, truth %r" % (s.get("exp_expired"), s.get("exp_exporters_overflow"),
                                          real, got, want))
        if got != want:
            fail("expiry on: the real exporter's rows %r, truth %r" % (got, want))
        if len(real) != 1 or real[0]["datagrams"] != truth["datagrams"] or \
                real[0]["records"] != truth["records"]:
            fail("expiry on: the real exporter's entry %r, truth %d datagrams %d records"
                 % (real, truth["datagrams"], truth["records"]))
        if s.get("exp_expired", 0) < MAX_EXPORTERS:
            fail("expiry on: summary exp_expired %r" % s.get("exp_expired"))
        if s.get("exp_exporters_overflow") != N_SRC - MAX_EXPORTERS:
            fail("expiry on: summary exporters_overflow %r (the real exporter must not "
                 "overflow)" % s.get("exp_exporters_overflow"))
        s0, real0, got0 = run(ns, broker, 0, flood, path)
        nmtest.log("expiry off: exp_expired %s, overflow %s; real exporter %s; rows %r"
                   % (s0.get("exp_expired"), s0.get("exp_exporters_overflow"), real0, got0))
        if real0 or got0 != (0, 0) or s0.get("exp_expired") != 0:
            fail("expiry off: the real exporter was tracked or decoded (%r, rows %r): the "
                 "flood did not take the table, so the first run proves nothing" % (real0, got0))
    for p in problems:
        nmtest.log("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
