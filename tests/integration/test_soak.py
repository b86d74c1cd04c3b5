#!/usr/bin/env python3
"""Suite `soak` (on demand only: scripts/test.sh soak): a long run at full speed.

Four collector ports replay real exports for NM_SOAK_SECONDS (default 600) with net_pcap's
infinite_rx -- NetFlow v5, NetFlow v9, IPFIX and sFlow v5 from the corpus' generated captures,
as fast as one RX lcore takes them -- into one worker, per-second aggregation (folding once a
second has more keys than aggregation.max_flows) and the embedded Kafka broker. While it runs the
test samples the process' resident memory and the once-a-second console line. It fails when:
  - the engine does not exit 0 after --duration, or loses a record (lost_records, Kafka failures,
    rows not acknowledged);
  - a decode error is counted on these valid captures;
  - resident memory keeps growing: the peak of the last half of the run exceeds the peak of the
    first half by more than 32 MiB (tables, pools and queues are preallocated, so after warm-up
    memory is flat);
  - the stats line stops advancing for more than 5 s (a stall).
Prints memory and rates along the way and a summary at the end.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

CAPTURES = ["generated/softflowd-v5.pcap", "generated/softflowd-v9.pcap",
            "generated/softflowd-v10.pcap", "generated/pmacctd-sfprobe-sflow5.pcap"]


def rss_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    seconds = int(os.environ.get("NM_SOAK_SECONDS", "600"))
    ports = []
    for i, c in enumerate(CAPTURES):
        path = os.path.join(nmtest.CORPORA, c)
        if not os.path.exists(path):
            nmtest.skip("%s absent" % path)
        ports.append("[port.soak%d]\ndevice = net_pcap%d,rx_pcap=%s,infinite_rx=1\nrole = collector\n"
                     % (i, i, path))
    config = "[eal]\nargs = -l 0-1\n" + "".join(ports)
    with nmtest.MockBroker() as broker:
        proc = nmtest.start_engine(broker.bootstrap, "soak", config_text=config,
                                   sets=["engine.stats_interval_ms=1000", "aggregation.max_flows=65536"],
                                   eal=[], huge=True)
        # start_engine turns console stats off; the --set above comes later and wins.
        t0 = time.time()
        samples = []              # (t, rss_kb)
        last_line, last_change = None, time.time()
        stall = 0.0
        while proc.poll() is None and time.time() - t0 < seconds + 5:
            time.sleep(1)
            r = rss_kb(proc.pid)
            if r is not None:
                samples.append((time.time() - t0, r))
            lines = [l for l in proc.output().splitlines() if re.match(r"\[\s*\d", l)]
            if lines and lines[-1] != last_line:
                last_line, last_change = lines[-1], time.time()
            elif time.time() - t0 > 10:
                stall = max(stall, time.time() - last_change)
            if len(samples) % 60 == 0 and samples:
                print("t=%4.0fs rss=%6.1f MiB  %s" % (samples[-1][0], samples[-1][1] / 1024, last_line or ""))
                sys.stdout.flush()
        # --duration is not passed through start_engine; stop with SIGTERM as an operator would.
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        run = proc.finish(timeout=300, t0=t0)
    s = run.summary
    if run.rc != 0 or s is None:
        print(run.tail(40))
        raise SystemExit("engine exited %s without a summary" % run.rc if s is None else
                         "engine exited %d" % run.rc)
    errors = {k: v for k, v in s.get("decode_errors", {}).items() if v}
    half = [r for t, r in samples if t <= seconds / 2]
    rest = [r for t, r in samples if t > seconds / 2]
    print("soak: %.0f s, %d datagrams, %d records (%.2f M/s), %d rows, %d folded, "
          "rss first half peak %.1f MiB, second half peak %.1f MiB, longest stall %.1f s"
          % (s["seconds"], s["datagrams"], s["records"], s["records"] / max(s["rx_seconds"], 1e-9) / 1e6,
             s["rows"], s.get("agg_folded", 0), max(half or [0]) / 1024, max(rest or [0]) / 1024, stall))
    fails = []
    if s["lost_records"] != 0 or s["kafka_records_failed"] != 0 or s["kafka_records_acked"] != s["rows"]:
        fails.append("records lost: lost %d, kafka failed %d, acked %d of %d rows"
                     % (s["lost_records"], s["kafka_records_failed"], s["kafka_records_acked"], s["rows"]))
    if errors:
        fails.append("decode errors on valid captures: %s" % errors)
    if s["datagrams_unknown"] != 0:
        fails.append("%d datagrams not recognised" % s["datagrams_unknown"])
    for key in ("datagrams_nf5", "datagrams_nf9", "datagrams_ipfix", "datagrams_sflow"):
        if s[key] == 0:
            fails.append("no %s: a port stopped" % key)
    if half and rest and max(rest) - max(half) > 32 * 1024:
        fails.append("memory grew by %.1f MiB in the second half" % ((max(rest) - max(half)) / 1024))
    if stall > 5:
        fails.append("console stats stalled for %.1f s" % stall)
    if fails:
        print(run.tail(30))
        raise SystemExit("; ".join(fails))


if __name__ == "__main__":
    main()
