#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Attack: a sampler-id flood and a template flood from many sources, next to a real exporter;
then the flood stops and its templates and rates expire.

A live engine (net_af_packet on a veth pair in a network namespace made here; wall-clock time,
so the idle sweep runs as in production) with [collector] template_timeout_s = 10 and
max_templates_per_exporter = 64. Frames go in from the peer end through a raw socket
(dptest.replay), so any source address can be used without aliases:
  1. the real exporter: softflowd's NetFlow v9 export with systematic 1-in-10 sampling
     (generated/softflowd-v9-sampled10.pcap, 127.0.0.1; its options data says
     samplingInterval 10);
  2. the flood: one spoofed source (10.66.0.1) announcing 65,536 sampler ids (v9 options
     template: scope system, FLOW_SAMPLER_ID 48, FLOW_SAMPLER_MODE 49,
     FLOW_SAMPLER_RANDOM_INTERVAL 50; 100 records a datagram), one source (10.98.0.1) with 100
     templates, one (10.97.0.1) that flips template 256 between two layouts 20 times, and 5,000
     sources (10.99.x.y) with 2 templates each;
  3. the real exporter again, and every 3 s until 14 s after the flood (it keeps its templates
     and rate fresh; the flood's go idle).
Asserted (summary JSON at SIGTERM, Kafka rows):
  - the real exporter's rows are exactly (replays x TRUTH.tsv) packets and bytes, every one at
    SamplingRate 10: nothing of it was lost to the flood or decoded at another rate;
  - the rate table stayed bounded: the spoofed source got max_rates_per_exporter (256) rates and
    the rest were refused and counted (tmpl_rates_refused_exporter);
  - 10.98.0.1 got 64 templates, 36 refused (tmpl_refused_exporter); 10.97.0.1's 19 layout
    changes are counted (tmpl_changed) and logged once; the 5,000 sources filled
    the exporter entries (4,096) and the templates of the rest were refused
    (tmpl_refused_exporters);
  - after the flood stopped and 10 s passed, every flood template and rate was expired and
    counted (tmpl_expired, tmpl_rates_expired): what is left is the real exporter's 5 templates
    and its 1 rate;
  - peak RSS grew by less than 32 MiB across the flood (the cache is preallocated);
  - telemetry /netmeta/templates answers the same tmpl_* counters as the summary.
About 30 s (10 s of it the idle timeout).
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


CAPTURE = "generated/softflowd-v9-sampled10.pcap"
REAL_TEMPLATES = 5  # frame 1: four data templates and one options template
N_SAMPLERS, PER_DGRAM = 65536, 100
N_SRC, SRC_TMPL = 5000, 2
CAP_TMPL, CAP_SRC_TMPL = 64, 100
FLIPS = 20
MAX_RATES = 256  # [collector] max_rates_per_exporter default
MAX_EXPORTERS = 4096  # the exporter table (dpdk_app/workers.c)
TIMEOUT = 10
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def frame(mac, src, payload, sport=40000):
    return dptest.datagram_frame(src, payload, dst="10.77.0.2", sport=sport, dmac=mac.hex())


def v9(flowsets, count, seq, source_id=0):
    body = b"".join(flowsets)
    return struct.pack("!HHIIII", 9, count, 1000, int(time.time()), seq, source_id) + body


def flowset(fid, body):
    pad = (-len(body)) % 4
    return struct.pack("!HH", fid, 4 + len(body) + pad) + body + b"\0" * pad


def sampler_flood():
    """Options template 300 (scope system; sampler id, mode, interval) and 65,536 records."""
    tmpl = flowset(1, struct.pack("!HHH", 300, 4, 12) + struct.pack("!HH", 1, 4) +
                   struct.pack("!HHHHHH", 48, 4, 49, 1, 50, 4))
    out = [v9([tmpl], 1, 0)]
    for base in range(0, N_SAMPLERS, PER_DGRAM):
        recs = b"".join(struct.pack("!IIBI", 0, sid, 2, 1000 + sid)
                        for sid in range(base, min(base + PER_DGRAM, N_SAMPLERS)))
        out.append(v9([flowset(300, recs)], min(PER_DGRAM, N_SAMPLERS - base), 1 + base))
    return out


def templates(first, n):
    recs = b""
    for t in range(first, first + n):
        recs += struct.pack("!HH", 256 + t, 2) + struct.pack("!HHHH", 8, 4, 2, 4)
    return flowset(0, recs)


def src(a, b, c):
    return bytes([10, a, b, c])


def main():
    nmtest.exit_on_signals()
    path, want = dptest.require_live_capture(CAPTURE)
    tmp = tempfile.mkdtemp(prefix="nm-attack-tf-")
    t0 = time.time()
    with dptest.Netns("tf") as ns, dptest.NetnsBroker(ns.name) as broker:
        mac = bytes.fromhex(ns.mac(ns.a).replace(":", ""))
        real = os.path.join(tmp, "real.pcap")
        dptest.write_pcap(real, [(ts, us, mac + d[6:]) for ts, us, d, _ in
                                 dptest.read_pcap(path)])
        flood = [frame(mac, src(98, 0, 1), v9([templates(0, 50)], 50, 0)),
                 frame(mac, src(98, 0, 1), v9([templates(50, 50)], 50, 1))]
        flood += [frame(mac, src(97, 0, 1), v9([flowset(0, struct.pack("!HH", 256, 1 + i % 2) +
                                                       struct.pack("!HH", 8, 4) * (1 + i % 2))],
                                               1, i)) for i in range(FLIPS)]
        flood += [frame(mac, src(66, 0, 1), p, sport=40001) for p in sampler_flood()]
        flood += [frame(mac, src(99, i >> 8, i & 255), v9([templates(0, SRC_TMPL)], SRC_TMPL, 0))
                  for i in range(N_SRC)]
        flood_pcap = os.path.join(tmp, "flood.pcap")
        dptest.write_pcap(flood_pcap, [(0, 0, f) for f in flood])

        cfg = ("[collector]\nports = 2055\ntemplate_timeout_s = %d\n"
               "max_templates_per_exporter = %d\n"
               "[port.tf]\ndevice = net_af_packet0,iface=%s\nrole = collector\n"
               "rx_queues = 1\nlcores = 1\n" % (TIMEOUT, CAP_TMPL, ns.a))
        topic = "attack-tf-%d" % os.getpid()
        prefix = nmtest.file_prefix("tf")
        eng = nmtest.start_engine(broker.bootstrap, topic, netns=ns.name, config_text=cfg,
                                  sets=["engine.stats_interval_ms=500"], prefix=prefix,
                                  eal=["--lcores=0@0,1@%d" % (1 if os.cpu_count() > 1 else 0)])
        replays = 0
        with eng:
            eng.wait_started()
            dptest.replay(ns.name, ns.b, real)
            replays += 1
            time.sleep(1)
            before = nmtest.vm_hwm_kb(eng.pid)
            n = dptest.paced_replay(ns.name, ns.b, flood_pcap)
            t_flood = time.time()
            nmtest.log("flood: %d frames in %.1f s" % (n, t_flood - t0))
            # The real exporter keeps exporting; the flood does not.
            while time.time() < t_flood + TIMEOUT + 4:
                dptest.replay(ns.name, ns.b, real)
                replays += 1
                time.sleep(3)
            time.sleep(2)  # the last sweeps (once a second, 4,096 entries each)
            after = nmtest.vm_hwm_kb(eng.pid)
            tel = nmtest.telemetry(prefix, "/netmeta/templates") or {}
            eng.send_signal(signal.SIGTERM)
        run = eng.finish(timeout=120)
        if run.rc != 0 or run.summary is None:
            raise RuntimeError("engine failed (%s):\n%s" % (run.rc, run.tail(30)))
        rows = broker.rows(topic)
    s = run.summary
    t = {k: v for k, v in s.items() if k.startswith("tmpl_")}
    nmtest.log("%d replays of the real export, %.1f s; %s" % (replays, time.time() - t0,
                                                               " ".join("%s=%s" % kv for kv in
                                                                        sorted(t.items()))))
    by_rate = {}
    for r in rows:
        k = (nmtest.addr_text(r["SamplerAddress"]), r["SamplingRate"])
        pk, by = by_rate.get(k, (0, 0))
        by_rate[k] = (pk + r["Packets"], by + r["Bytes"])
    exp_rows = {("::ffff:127.0.0.1", 10): (replays * want["packets"], replays * want["bytes"])}
    nmtest.log("rows by (sampler, rate): %r (want %r)" % (by_rate, exp_rows))
    if by_rate != exp_rows:
        fail("real exporter's rows: %r, want %r" % (by_rate, exp_rows))
    if s["datagrams_nf9"] < replays * want["datagrams"] + len(flood) * 0.9:
        fail("the flood did not reach the engine: %d v9 datagrams" % s["datagrams_nf9"])
    flood_rates = N_SAMPLERS - MAX_RATES
    if not flood_rates * 0.9 <= t["tmpl_rates_refused_exporter"] <= flood_rates:
        fail("tmpl_rates_refused_exporter %d, want about %d" % (t["tmpl_rates_refused_exporter"],
                                                               flood_rates))
    if t["tmpl_rates_refused"] != 0:
        fail("the global rate table filled: tmpl_rates_refused %d" % t["tmpl_rates_refused"])
    if t["tmpl_refused_exporter"] != CAP_SRC_TMPL - CAP_TMPL:
        fail("tmpl_refused_exporter %d, want %d" % (t["tmpl_refused_exporter"],
                                                    CAP_SRC_TMPL - CAP_TMPL))
    if t["tmpl_changed"] != FLIPS - 1:
        fail("tmpl_changed %d, want %d" % (t["tmpl_changed"], FLIPS - 1))
    logged = [ln for ln in run.output.splitlines()
              if "changed layout" in ln and "10.97.0.1 " in ln]
    nmtest.log("layout change log lines: %r" % logged)
    if len(logged) != 1:
        fail("%d log lines for 10.97.0.1's layout changes, want 1" % len(logged))
    # Entries: the real exporter, 10.98.0.1, 10.97.0.1, 10.66.0.1, then the 5,000 while they last.
    refused_src = N_SRC - (MAX_EXPORTERS - 4)
    if not refused_src * SRC_TMPL * 0.5 <= t["tmpl_refused_exporters"] <= refused_src * SRC_TMPL:
        fail("tmpl_refused_exporters %d, want about %d" % (t["tmpl_refused_exporters"],
                                                          refused_src * SRC_TMPL))
    flood_tmpl = t["tmpl_published"] - t["tmpl_changed"] - REAL_TEMPLATES  # live ones
    if t["tmpl_templates"] != REAL_TEMPLATES or t["tmpl_expired"] != flood_tmpl:
        fail("after the timeout: %d templates left (want the real %d), %d expired of %d "
             "flood templates" % (t["tmpl_templates"], REAL_TEMPLATES, t["tmpl_expired"],
                                  flood_tmpl))
    if flood_tmpl < CAP_TMPL + (MAX_EXPORTERS - 4) * SRC_TMPL * 0.9:
        fail("only %d flood templates were published" % flood_tmpl)
    if t["tmpl_rates"] != 1 or t["tmpl_rates_expired"] != MAX_RATES:
        fail("rates: %d left (want 1), %d expired (want %d)" % (t["tmpl_rates"],
                                                               t["tmpl_rates_expired"], MAX_RATES))
    nmtest.log("/netmeta/templates: %r" % tel)
    if sorted(tel) != sorted(t) or tel.get("tmpl_expired") != t["tmpl_expired"]:
        fail("/netmeta/templates %r does not match the summary's tmpl_* %r" % (tel, t))
    nmtest.log("peak RSS %d KiB before the flood, %d KiB after" % (before, after))
    if before == 0 or after - before > 32 * 1024:
        fail("peak RSS grew by %d KiB across the flood" % (after - before))
    if s["lost_records"]:
        fail("lost %d records" % s["lost_records"])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
