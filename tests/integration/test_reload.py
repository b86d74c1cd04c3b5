#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Live reload under traffic: the engine captures a veth (net_pcap rx_iface_in) while three
exporters in a network namespace of the test's own replay corpus captures in a loop -- two
NetFlow v5 captures (exporters e0, e1) and an sFlow counter sample (agent 10.243.29.150, e2) --
and the config file changes under it:

  t=4 s   SIGHUP with e0's sampling_rate 100 -> 300, e1's override 50 (none before), e1's
          description, e2's interface.768 name: applied, config version 2;
  t=7 s   SIGHUP with kafka.topic and port.veth.rx_queues changed (and e0's rate 999): refused,
          both keys named with their values in the log, version 2 stays, no row gets 999;
  t=9 s   /netmeta/reload with a bad value in the file: failed, version 2 stays;
  t=10 s  /netmeta/reload with version 2's file again: unchanged.

Then SIGTERM, and every row is read back from the mock broker with kcat:
  - nothing lost, nothing doubled: per exporter, the rows' Packets and Bytes equal what was sent
    (rounds x TRUTH.tsv), and the engine's summary says 0 lost and every row acknowledged;
  - e0's rows carry rate 100 in every second before the SIGHUP and 300 in every second after the
    one in which version 2 went live; e1's rows the exporter's own rate before, 50 after;
  - /netmeta/exporters shows the new override and description, /netmeta/interfaces the new
    interface name, /netmeta/config and the summary version 2 with 1 applied, 1 refused and
    1 failed reload.

Runs about 25 s (12 s of traffic, start-up, drain, kcat).
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage as ko  # noqa: E402
import nmtest  # noqa: E402

SEND_S = 12.0
RATE_HZ = 10  # rounds per second: one round = every datagram of each exporter's capture
SFLOW = "public/logstash-codec-sflow/sflow_counters_sample.pcap"
SFLOW_AGENT, SFLOW_IF = "10.243.29.150", 768


def config(path, port, bootstrap, iface, prefix, e0_rate, e1_extra, e2_ifname, extra=None):
    extra = extra or {}
    with open(path + ".tmp", "w") as f:
        f.write("[collector]\nports = %d\n[kafka]\nbrokers = %s\nlinger_ms = 50\n%s"
                "[engine]\nstats_interval_ms = 1000\n"
                "[port.veth]\ndevice = net_pcap_%s,rx_iface_in=%s\n%s"
                "[exporter.e0]\naddress = %s10\nsampling_rate = %s\ninterface.1 = uplink\n"
                "[exporter.e1]\naddress = %s11\n%s"
                "[exporter.e2]\naddress = %s\ninterface.%d = %s\n"
                % (port, bootstrap, extra.get("kafka", ""), prefix, iface,
                   extra.get("port", ""), ko.EXPORTER_NET, e0_rate, ko.EXPORTER_NET, e1_extra,
                   SFLOW_AGENT, SFLOW_IF, e2_ifname))
    # Written whole, then renamed: the engine never reads half a file.
    os.rename(path + ".tmp", path)


def main():
    ko.require()
    cases = ko.nf5_cases()
    if len(cases) < 2:
        nmtest.skip("TRUTH.tsv has fewer than 2 valid nf5 captures")
    sflow_path = os.path.join(nmtest.CORPORA, SFLOW)
    if not os.path.exists(sflow_path):
        nmtest.skip("corpus file %s missing" % SFLOW)
    tmp = ko.tmpdir()
    port = ko.free_udp_port()
    cfg = os.path.join(tmp, "reload.ini")
    summary_path = os.path.join(tmp, "summary.json")
    out_path = os.path.join(tmp, "engine.out")
    prefix = "nmreload%d" % os.getpid()
    problems = []
    broker = veth = proc = None
    try:
        veth = ko.Veth(3)
        broker = nmtest.MockBroker()
        v1 = dict(e0_rate=100, e1_extra="description = before\n", e2_ifname="old-if768")
        v2 = dict(e0_rate=300, e1_extra="sampling_rate = 50\ndescription = after\n",
                  e2_ifname="new-if768")
        config(cfg, port, broker.bootstrap, veth.b, prefix, extra={}, **v1)
        argv = [nmtest.ENGINE, "-c", cfg, "--summary-json", summary_path, "--",
                "--no-huge", "-m", "512", "--in-memory", "--file-prefix=" + prefix]
        out = open(out_path, "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def tel(cmd):
            return nmtest.telemetry(prefix, cmd, timeout=20)

        def output():
            with open(out_path, "rb") as f:
                return f.read().decode(errors="replace")

        deadline = time.time() + 60
        while tel("/netmeta/config") is None:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("engine did not come up:\n" + output()[-3000:])
            time.sleep(0.3)
        c = tel("/netmeta/config")
        nmtest.log("engine up, /netmeta/config: %s" % json.dumps(c))
        if c["version"] != 1 or c["exporter_sections_version"] != 1:
            problems.append("version at start: %s" % c)

        # What each exporter replays: capture payloads, in a loop.
        payloads = [ko.udp_payloads(cases[0]["path"]), ko.udp_payloads(cases[1]["path"]),
                    ko.udp_payloads(sflow_path)]
        socks = veth.sockets()
        marks = {}

        def wait_config(pred, what, timeout=10):
            end = time.time() + timeout
            while time.time() < end:
                c = tel("/netmeta/config")
                if c is not None and pred(c):
                    return c
                time.sleep(0.05)
            problems.append("%s: /netmeta/config never showed it: %s" % (what, c))
            return c

        def reload_v2():
            config(cfg, port, broker.bootstrap, veth.b, prefix, extra={}, **v2)
            marks["hup"] = time.time()
            proc.send_signal(signal.SIGHUP)
            c = wait_config(lambda c: c["version"] == 2 and c["exporter_sections_version"] == 2,
                            "version 2")
            marks["live"] = time.time()
            nmtest.log("v2 live %.3f s after SIGHUP: %s" % (marks["live"] - marks["hup"],
                                                            json.dumps(c)))

        def reload_refused():
            config(cfg, port, broker.bootstrap, veth.b, prefix,
                   extra={"kafka": "topic = elsewhere\n", "port": "rx_queues = 2\n"},
                   **dict(v2, e0_rate=999))
            proc.send_signal(signal.SIGHUP)
            c = wait_config(lambda c: c["reloads_refused"] == 1, "refused reload")
            nmtest.log("after the refused reload: %s" % json.dumps(c))
            if c["version"] != 2 or c["exporter_sections_version"] != 2 or \
                    c["last_reload"] != "refused":
                problems.append("refused reload changed the version: %s" % c)

        def reload_failed():
            config(cfg, port, broker.bootstrap, veth.b, prefix, extra={},
                   **dict(v2, e0_rate="lots"))
            r = tel("/netmeta/reload")
            nmtest.log("/netmeta/reload with a bad file: %s" % json.dumps(r))
            if r is None or r.get("last_reload") != "failed" or r.get("version") != 2:
                problems.append("bad file: /netmeta/reload answered %s" % r)

        def reload_unchanged():
            config(cfg, port, broker.bootstrap, veth.b, prefix, extra={}, **v2)
            r = tel("/netmeta/reload")
            nmtest.log("/netmeta/reload with version 2's file: %s" % json.dumps(r))
            if r is None or r.get("last_reload") != "unchanged" or r.get("version") != 2:
                problems.append("same file: /netmeta/reload answered %s" % r)

        schedule = [(4.0, reload_v2), (7.0, reload_refused), (9.0, reload_failed),
                    (10.0, reload_unchanged)]
        rounds = int(SEND_S * RATE_HZ)
        t0 = time.time()
        sent_rounds = 0
        for r in range(rounds):
            while schedule and time.time() - t0 >= schedule[0][0]:
                schedule.pop(0)[1]()
            for i, dgrams in enumerate(payloads):
                for d in dgrams:
                    socks[i].sendto(d, (ko.COLLECTOR_IP, port))
            sent_rounds += 1
            delay = t0 + (r + 1) / RATE_HZ - time.time()
            if delay > 0:
                time.sleep(delay)
        for at, fn in schedule:
            fn()
        for s in socks:
            s.close()
        nmtest.log("sent %d rounds in %.1f s" % (sent_rounds, time.time() - t0))
        sent = {}
        for i in (0, 1):
            sent[ko.EXPORTER_NET + str(10 + i)] = (sent_rounds * cases[i]["packets"],
                                                  sent_rounds * cases[i]["bytes"])

        # Telemetry of the live version, before the stop.
        time.sleep(1.5)
        exps = tel("/netmeta/exporters") or {}
        by_addr = {v["address"]: v for v in exps.values() if isinstance(v, dict)}
        e0, e1 = by_addr.get(ko.EXPORTER_NET + "10"), by_addr.get(ko.EXPORTER_NET + "11")
        if e0 is None or e0.get("override_rate") != 300 or e0.get("name") != "e0":
            problems.append("/netmeta/exporters e0: %s" % e0)
        if e1 is None or e1.get("override_rate") != 50 or e1.get("description") != "after":
            problems.append("/netmeta/exporters e1: %s" % e1)
        if exps.get("config_version") != 2:
            problems.append("/netmeta/exporters config_version %s" % exps.get("config_version"))
        ifs = tel("/netmeta/interfaces") or {}
        names = {(v["agent"], v["if_index"]): v.get("name") for v in ifs.values()
                 if isinstance(v, dict)}
        nmtest.log("interfaces: %s" % names)
        if names.get((SFLOW_AGENT, SFLOW_IF)) != "new-if768":
            problems.append("/netmeta/interfaces %s/%d: %s" % (SFLOW_AGENT, SFLOW_IF, names))

        proc.send_signal(signal.SIGTERM)
        proc.wait(150)
        out.close()
        text = output()
        nmtest.log(text[-2500:])
        if proc.returncode != 0:
            problems.append("engine exit %d" % proc.returncode)
        for want in ("config version 2 live", "exporter.e0.sampling_rate (\"100\" -> \"300\")",
                     "exporter.e1.sampling_rate (\"\" -> \"50\")",
                     "exporter.e2.interface.768 (\"old-if768\" -> \"new-if768\")",
                     "refused, the running config (version 2) stays",
                     "kafka.topic (\"flow-messages\" -> \"elsewhere\")",
                     "port.veth.rx_queues (\"1\" -> \"2\")", "need a restart",
                     "not applied either: exporter.e0.sampling_rate (\"300\" -> \"999\")",
                     "[exporter.e0] sampling_rate = \"lots\"",
                     "nothing changed; config version 2 stays live"):
            if want not in text:
                problems.append("engine output lacks %r" % want)
        with open(summary_path) as f:
            sm = json.load(f)
        if sm.get("config_version") != 2 or sm.get("config_reloads_applied") != 1 or \
                sm.get("config_reloads_refused") != 1 or sm.get("config_reloads_failed") != 1:
            problems.append("summary config: %s" % {k: v for k, v in sm.items()
                                                    if k.startswith("config")})
        if sm["lost_records"] != 0 or sm["kafka_records_acked"] != sm["rows"]:
            problems.append("summary: lost %d, rows %d, acked %d"
                            % (sm["lost_records"], sm["rows"], sm["kafka_records_acked"]))

        rows = [fm for m in nmtest.kcat_consume(broker.bootstrap)
                for fm in nmtest.decode_delimited(m)]
        got, rates = {}, {}
        for fm in rows:
            a = nmtest.addr_text(fm["SamplerAddress"])
            a = a[7:] if a.startswith("::ffff:") else a
            pk, by = got.get(a, (0, 0))
            got[a] = (pk + fm["Packets"], by + fm["Bytes"])
            rates.setdefault(a, {}).setdefault(fm["TimeReceived"], set()).add(fm["SamplingRate"])
        nmtest.log("rows %d; sent %s; got %s" % (len(rows), sent, got))
        if len(rows) != sm["rows"]:
            problems.append("topic has %d rows, the engine wrote %d" % (len(rows), sm["rows"]))
        for a, want in sent.items():
            if got.get(a) != want:
                problems.append("%s: rows hold %s (packets, bytes), sent %s" % (a, got.get(a), want))
        hup_s, live_s = int(marks["hup"]), int(marks["live"])
        for a, before, after in ((ko.EXPORTER_NET + "10", {100}, {300}),
                                 (ko.EXPORTER_NET + "11", None, {50})):
            per = rates.get(a, {})
            pre = set().union(*[r for s, r in per.items() if s < hup_s] or [set()])
            post = set().union(*[r for s, r in per.items() if s > live_s] or [set()])
            nmtest.log("%s: rates before the SIGHUP second %s, after the live second %s; "
                       "per second %s" % (a, sorted(pre), sorted(post),
                                          {s: sorted(r) for s, r in sorted(per.items())}))
            if before is not None and pre != before:
                problems.append("%s: rates before the reload %s, expected %s" % (a, pre, before))
            if before is None and (not pre or 50 in pre):
                problems.append("%s: rates before the reload %s" % (a, pre))
            if post != after:
                problems.append("%s: rates after the reload %s, expected %s" % (a, post, after))
            if any(999 in r for r in per.values()):
                problems.append("%s: a row carries the refused rate 999" % a)
    finally:
        if proc is not None and proc.poll() is None:
            nmtest.kill_group(proc)
        if proc is not None:
            nmtest.remove_runtime_dir(argv)
        if broker is not None:
            broker.stop()
        if veth is not None:
            veth.remove()
    if problems:
        for p in problems:
            print("FAIL:", p, flush=True)
        return 1
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
