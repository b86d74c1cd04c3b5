#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The operator's view on a live engine (issue 13): two looping net_pcap ports (infinite_rx), so
traffic flows for as long as the test wants, queried through the real telemetry socket by DPDK's
own client (dpdk-telemetry.py, commands on stdin) and by scripts/netmeta-stats.

Ports: "loop" replays generated/fprobe-v5.pcap (real fprobe NetFlow v5, 331 records that are 331
distinct keys); "many" replays a capture made here of NetFlow v5 datagrams from 200 exporter
addresses (1 record of 1 byte each, never heavy), so the Prometheus exposition needs several
pages of the 16 KiB telemetry reply. fprobe sends sampling interval 0, so
collector.default_sampling_rate = 7 applies: /netmeta/top's weight must be bytes x 7.

Asserted:
 - /netmeta/ports (dpdk-telemetry.py): both ports up, collector, RX counted per port and queue,
   the polling lcore per queue, no drops (nothing slows the lcore); the lcore busy, bursts of
   frames, records per second > 0;
 - /netmeta/top,10 against tshark: the ten heaviest rows are fprobe's ten heaviest records
   (cflow.octets, same addresses, ports, protocol), in tshark's order where tshark's weights
   differ by more than 3%, with weights in tshark's proportions (1%) and bytes_scaled = 7 x bytes;
 - netmeta-stats: the summary screen; --watch in a pseudo-terminal shows non-zero rates for
   frames, records and rows on its later screens;
 - /netmeta/metrics: larger than one reply (paged); netmeta-stats --metrics, the HTTP server's
   /metrics (curl) and --textfile all pass `promtool check metrics`; every exporter of "many" is
   a label value; two curl scrapes 1.5 s apart show the RX counters moving; after the engine
   stops the server answers 503 saying no engine runs;
 - the summary at exit is at least what telemetry showed last and the run loses nothing.
Takes ~25 s.
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402
import dptest  # noqa: E402

STATS = os.path.join(nmtest.SOURCE, "scripts", "netmeta-stats")
TELEMETRY_PY = "/usr/bin/dpdk-telemetry.py"
N_EXPORTERS = 200
RATE = 7
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def nf5_one(seq, src_addr):
    """A NetFlow v5 datagram with one record of 1 packet, 1 byte."""
    hdr = struct.pack("!HHIIIIBBH", 5, 1, 100000, 1700000000, 0, seq, 0, 0, 0)
    rec = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", src_addr, bytes([10, 0, 0, 1]), bytes(4), 1, 2,
                      1, 1, 99000, 99900, 1234, 53, 0, 0, 17, 0, 0, 0, 24, 24, 0)
    return hdr + rec


def many_exporters_pcap(path):
    frames = []
    for i in range(N_EXPORTERS):
        src = bytes([10, 200, i // 250, 1 + i % 250])
        payload = nf5_one(i, src)
        udp = struct.pack("!HHHH", 40000, 2055, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, src,
                         bytes([10, 0, 0, 1]))
        ip = ip[:10] + struct.pack("!H", dptest.csum(ip)) + ip[12:]
        frames.append((1700000000, i, bytes.fromhex("020000000002020000000001") + b"\x08\x00"
                       + ip + udp))
    dptest.write_pcap(path, frames)


def tshark_records(path):
    """[(exporter, src, dst, sport, dport, proto, octets)] of every NetFlow v5 record."""
    out = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "ip.src", "-e",
                          "cflow.srcaddr", "-e", "cflow.dstaddr", "-e", "cflow.srcport", "-e",
                          "cflow.dstport", "-e", "cflow.protocol", "-e", "cflow.octets",
                          "-E", "occurrence=a", "-E", "aggregator=,"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         check=True).stdout
    recs = []
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) < 7 or not cols[1]:
            continue
        lists = [c.split(",") for c in cols[1:]]
        for i in range(len(lists[0])):
            recs.append((cols[0], lists[0][i], lists[1][i], int(lists[2][i]), int(lists[3][i]),
                         int(lists[4][i]), int(lists[5][i])))
    return recs


def dpdk_telemetry(prefix, cmds):
    """Replies of DPDK's own client, fed the commands on stdin."""
    p = subprocess.run([sys.executable, TELEMETRY_PY, "-f", prefix], input="\n".join(cmds) + "\n",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    replies = {}
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and not line.startswith('{"version"'):
            replies.update(json.loads(line))
    return replies


def stats(prefix, *args, check=True):
    p = subprocess.run([sys.executable, STATS, "--prefix", prefix] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if check and p.returncode != 0:
        raise RuntimeError("netmeta-stats %s: exit %d: %s" % (args, p.returncode, p.stderr))
    return p


def stats_json(prefix, cmd):
    p = stats(prefix, "--json", cmd, check=False)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)[cmd.split(",")[0]]


def promtool(text, what):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        fail("promtool check metrics on %s: exit %d: %s" % (what, p.returncode, p.stdout[:2000]))
    else:
        print("promtool check metrics: %s passes (%d bytes, %d samples)" % (
            what, len(text), sum(1 for l in text.splitlines() if l and l[0] != "#")), flush=True)


def samples(text, name):
    """{labels: value} of one metric."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^%s(\{[^}]*\})? (\S+)$" % re.escape(name), line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def watch_in_pty(prefix, seconds):
    """netmeta-stats --watch 0.5 in a pseudo-terminal for a while; its screens."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, STATS, "--prefix", prefix, "--watch", "0.5"])
    buf = b""
    deadline = time.time() + seconds
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break
    os.kill(pid, signal.SIGINT)
    try:
        while True:
            r, _, _ = select.select([fd], [], [], 1)
            if not r:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    os.waitpid(pid, 0)
    return [s for s in buf.decode(errors="replace").split("\x1b[H\x1b[2J") if s.strip()]


def rate_of(screen, label):
    for line in screen.splitlines():
        if line.startswith(label):
            m = re.search(r"([\d,.]+)/s\s*$", line)
            return float(m.group(1).replace(",", "")) if m else None
    return None


def main():
    nmtest.exit_on_signals()
    nmtest.require_programs(nmtest.ENGINE, "tshark", "promtool", "curl")
    if not os.path.exists(TELEMETRY_PY):
        nmtest.skip("%s missing (Debian package dpdk-dev)" % TELEMETRY_PY)
    fprobe = os.path.join(nmtest.CORPORA, "generated", "fprobe-v5.pcap")
    if not os.path.exists(fprobe):
        nmtest.skip("corpus file %s missing" % fprobe)
    tmp = tempfile.mkdtemp(prefix="nmtelops-")
    many = os.path.join(tmp, "many.pcap")
    many_exporters_pcap(many)
    prefix = nmtest.file_prefix("nmtelops")
    cfg = ("[port.loop]\ndevice = net_pcap0,rx_pcap=%s,infinite_rx=1\n"
           "[port.many]\ndevice = net_pcap1,rx_pcap=%s,infinite_rx=1\n" % (fprobe, many))
    eng = nmtest.start_engine(
        "embedded", "telops", config_text=cfg, in_memory=False, prefix=prefix, huge=True,
        sets=["collector.default_sampling_rate=%d" % RATE])
    server = None
    try:
        deadline = time.time() + 60
        top = None
        while time.time() < deadline:
            if eng.poll() is not None:
                raise RuntimeError("engine exited: %d\n%s" % (eng.poll(), eng.output()[-3000:]))
            top = stats_json(prefix, "/netmeta/top,10")
            if top and top.get("seconds_published", 0) >= 2:
                break
            time.sleep(0.5)
        if not top or top.get("seconds_published", 0) < 2:
            raise RuntimeError("no second published in /netmeta/top within 60 s: %r" % top)

        # ---- /netmeta/ports through DPDK's client ----
        t_top = time.time()
        r = dpdk_telemetry(prefix, ["/netmeta/ports", "/netmeta/stats", "/netmeta/top,10"])
        ports, st = r.get("/netmeta/ports"), r.get("/netmeta/stats")
        if not ports or not st:
            raise RuntimeError("dpdk-telemetry.py gave no /netmeta/ports or /netmeta/stats: %r"
                               % r)
        print("dpdk-telemetry.py /netmeta/ports:", json.dumps(ports), flush=True)
        for pid, name in ((0, "loop"), (1, "many")):
            p, q = ports.get("port/%d" % pid), ports.get("port/%d/q0" % pid)
            if not p or not q:
                fail("/netmeta/ports has no port/%d or port/%d/q0" % (pid, pid))
                continue
            if (p["name"], p["role"], p["link"]) != (name, "collector", "up"):
                fail("port/%d: %r" % (pid, p))
            if p["ipackets"] <= 0 or p["ibytes"] <= 0 or q["packets"] <= 0 or q["polled"] <= 0:
                fail("port/%d counts no traffic: %r %r" % (pid, p, q))
            if p["imissed"] or p["rx_nombuf"] or p["ierrors"] or p["drops"]:
                fail("port/%d drops with nothing slowing the lcore: %r" % (pid, p))
            if q["lcore"] != 1:
                fail("port/%d queue 0 polled by lcore %r, the config's only worker is 1" % (
                    pid, q["lcore"]))
        lc = ports.get("lcore/1")
        if not lc:
            fail("/netmeta/ports has no lcore/1")
        else:
            if not (lc["polls"] >= lc["busy_polls"] > 0 and lc["bursts"] > 0):
                fail("lcore/1 polls/busy/bursts: %r" % lc)
            if float(lc["busy_pct"]) <= 0 or float(lc["mean_burst"]) <= 0 or \
                    lc["records_per_s"] <= 0 or lc["packets_per_s"] <= 0:
                fail("lcore/1 load and rates should be > 0 with looping ports: %r" % lc)
        if ports.get("drops") != 0:
            fail("total drops %r" % ports.get("drops"))

        # ---- /netmeta/top against tshark ----
        top = r.get("/netmeta/top")
        recs = tshark_records(fprobe)
        weight = {}
        for rec in recs:
            weight[rec[:6]] = weight.get(rec[:6], 0) + rec[6]
        ranked = sorted(weight.items(), key=lambda kv: -kv[1])
        rows = [top["top/%d" % i] for i in range(1, 11) if "top/%d" % i in top]
        got = [(e["exporter"], e["src_addr"], e["dst_addr"], e["src_port"], e["dst_port"],
                e["proto"]) for e in rows]
        want = [k for k, _ in ranked[:10]]
        print("tshark's heaviest of %d records: %s" % (len(recs), ranked[:10]), flush=True)
        print("/netmeta/top,10 (second %d, %d rows): %s" % (
            top["second"], top["rows"], [(g, e["bytes_scaled"]) for g, e in zip(got, rows)]),
            flush=True)
        if len(rows) != 10:
            fail("/netmeta/top,10 listed %d rows" % len(rows))
        elif set(got) != set(want):
            fail("top keys differ from tshark's: only engine %s, only tshark %s" % (
                set(got) - set(want), set(want) - set(got)))
        else:
            w0 = weight[got[0]]
            for i, (g, e) in enumerate(zip(got, rows)):
                if e["bytes_scaled"] != RATE * e["bytes"] or e["sampling_rate"] != RATE:
                    fail("row %d: bytes_scaled %d, bytes %d, rate %d (want x%d)" % (
                        i + 1, e["bytes_scaled"], e["bytes"], e["sampling_rate"], RATE))
                ratio_e = e["bytes_scaled"] / rows[0]["bytes_scaled"]
                ratio_t = weight[g] / w0
                if abs(ratio_e - ratio_t) > 0.01 * ratio_t:
                    fail("row %d %s: weight ratio %.4f, tshark %.4f" % (i + 1, g, ratio_e,
                                                                        ratio_t))
                if i > 0 and weight[got[i - 1]] < weight[g] * 0.97:
                    fail("row %d %s ranked after a key tshark finds 3%% lighter" % (i + 1, g))
            # The last completed second: published 0.2 s after it ended.
            if not t_top - 3 <= top["second"] <= t_top:
                fail("top's second %d is not the last completed one at %.1f" % (top["second"],
                                                                                t_top))

        # ---- netmeta-stats: summary screen and --watch in a pseudo-terminal ----
        p = stats(prefix)
        print(p.stdout, flush=True)
        for label in ("frames received", "records"):
            if not rate_of(p.stdout, label):
                fail("summary screen: no rate for %s" % label)
        if rate_of(p.stdout, "rows (FlowMessages)") is None:
            fail("summary screen: no rows rate")
        if "NIC (imissed+nombuf+errors)" not in p.stdout:
            fail("summary screen has no drops by place")
        screens = watch_in_pty(prefix, 3.0)
        print("--watch: %d screens; the last:\n%s" % (len(screens), screens[-1] if screens else ""),
              flush=True)
        later = screens[1:]
        if len(later) < 2:
            fail("--watch drew %d screens in 3 s at 0.5 s" % len(screens))
        for s in later:
            for label in ("frames received", "records"):
                if not rate_of(s, label):
                    fail("--watch screen without a non-zero %s rate:\n%s" % (label, s))
                    break
        # Rows leave once a second, when the flusher drains the second's tables: a 0.5 s
        # screen may fall between two drains, but not all of them.
        if later and not any(rate_of(s, "rows (FlowMessages)") for s in later):
            fail("no --watch screen showed a non-zero rows rate")

        # ---- Prometheus: paging, promtool, HTTP, textfile ----
        page = stats_json(prefix, "/netmeta/metrics")
        if not page or page["next"] >= page["size"] or page["size"] <= 16384:
            fail("/netmeta/metrics should need paging with %d exporters: %r" % (
                N_EXPORTERS, {k: v for k, v in (page or {}).items() if k != "text"}))
        text = stats(prefix, "--metrics").stdout
        promtool(text, "netmeta-stats --metrics")
        exporters = {k for k in samples(text, "netmeta_exporter_datagrams_total")}
        many_seen = sum(1 for k in exporters if 'exporter="10.200.' in k)
        if many_seen != N_EXPORTERS:
            fail("netmeta_exporter_datagrams_total has %d of the %d exporters of 'many'" % (
                many_seen, N_EXPORTERS))
        imissed = samples(text, "netmeta_port_imissed_total")
        if set(imissed) != {'{port="loop",role="collector"}', '{port="many",role="collector"}'}:
            fail("netmeta_port_imissed_total labels: %r" % imissed)
        polled = samples(text, "netmeta_queue_polled_total")
        if '{port="loop",queue="0",lcore="1"}' not in polled:
            fail("netmeta_queue_polled_total labels: %r" % polled)
        port = nmtest.free_port()
        server = subprocess.Popen([sys.executable, STATS, "--prefix", prefix, "--prometheus",
                                   "127.0.0.1:%d" % port], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        server.stdout.readline()
        url = "http://127.0.0.1:%d/metrics" % port
        scrapes = []
        for i in range(2):
            c = subprocess.run(["curl", "-sf", "-D", "-", url], stdout=subprocess.PIPE,
                               timeout=30)
            if c.returncode != 0:
                fail("curl %s: exit %d" % (url, c.returncode))
                break
            head, _, body = c.stdout.decode().partition("\r\n\r\n")
            if "text/plain; version=0.0.4" not in head:
                fail("Content-Type of /metrics: %s" % head)
            scrapes.append(body)
            if i == 0:
                time.sleep(1.5)
        if len(scrapes) == 2:
            promtool(scrapes[1], "HTTP /metrics")
            a = samples(scrapes[0], "netmeta_worker_rx_packets_total")
            b = samples(scrapes[1], "netmeta_worker_rx_packets_total")
            ra = samples(scrapes[0], "netmeta_flusher_rows_total")
            rb = samples(scrapes[1], "netmeta_flusher_rows_total")
            print("curl scrapes 1.5 s apart: rx_packets %r -> %r, rows %r -> %r" % (a, b, ra, rb))
            if not a or not b or not all(b[k] > a[k] for k in a):
                fail("netmeta_worker_rx_packets_total did not move: %r -> %r" % (a, b))
            if not ra or not rb or not rb[""] > ra[""]:
                fail("netmeta_flusher_rows_total did not move: %r -> %r" % (ra, rb))
        textfile = os.path.join(tmp, "netmeta.prom")
        stats(prefix, "--textfile", textfile)
        leftovers = [f for f in os.listdir(tmp) if f.endswith(".tmp")]
        if leftovers:
            fail("--textfile left %s" % leftovers)
        promtool(open(textfile).read(), "--textfile")

        last = stats_json(prefix, "/netmeta/stats")
        eng.send_signal(signal.SIGTERM)
    except Exception:
        eng.kill()
        if server is not None:
            nmtest.kill_group(server)
        raise
    run = eng.finish(120)
    print(run.tail(12))
    s = run.summary
    if run.rc != 0 or s is None:
        fail("engine exit %s" % run.rc)
    else:
        for k in ("rx_packets", "records", "rows", "datagrams_nf5"):
            if s[k] < last[k]:
                fail("summary %s %d < telemetry's %d before the end" % (k, s[k], last[k]))
        if s["lost_records"]:
            fail("lost %d records" % s["lost_records"])
        if s["rx_packets"] != s["datagrams_nf5"]:
            fail("summary: %d frames but %d NetFlow v5 datagrams" % (s["rx_packets"],
                                                                       s["datagrams_nf5"]))
    if server is not None:
        c = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "http://127.0.0.1:%d/metrics"
                            % port], stdout=subprocess.PIPE, text=True, timeout=30)
        nmtest.kill_group(server)
        print("scrape after the engine stopped: %s" % c.stdout.strip())
        if not c.stdout.strip().endswith("503") or "no engine runs" not in c.stdout:
            fail("scrape with no engine: %r" % c.stdout)
    shutil.rmtree(tmp, ignore_errors=True)
    print()
    if problems:
        print("%d problem(s)" % len(problems))
        return 1
    print("ports, top, summary, watch, Prometheus (paged, HTTP, textfile): as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
