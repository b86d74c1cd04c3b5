#!/usr/bin/env python3
"""CPU per flow record, the engine against pmacct (nfacctd, sfacctd) on the same exports.

    bench_peer.py [--flows N] [--pkts P] [--copies K] [--runs R] [--protos ipfix,v9,sflow]
                  [--pps ipfix=2000,v9=2000,sflow=2000] [--smoke] [--keep DIR]

Input: one generated traffic capture (N flows of P packets each: distinct IPv4 5-tuples, TCP
and UDP, a few ToS values and TCP flag sets, 100,000 packets per second of capture time), turned
into flow exports by real exporters, each in a private network namespace (unshare -n, only lo,
a UDP sink bound on the export port so the exporter never sees ICMP errors) and captured by
dumpcap:
  - IPFIX:      softflowd -r traffic.pcap -v 10  (one record per flow)
  - NetFlow v9: softflowd -r traffic.pcap -v 9
  - sFlow v5:   pmacctd (sfprobe plugin, pcap_savefile, sampling rate 1: one sample per packet)
Each export capture is also written K times over (copy i shifted by i times its time span) so
that the marginal cost per record, (CPU(K copies) - CPU(1 copy)) / (records(K) - records(1)),
leaves out start-up and exit, which are fixed.

Collectors, whole processes, CPU = user + sys of the process and every descendant (this script
is a child subreaper, so pmacct's plugin processes are reaped and counted here too):
  - netmeta --pcap (one RX lcore, decode, per-second aggregation on every FlowMessage
    dimension, protobuf to Kafka, every row acknowledged before it exits, no record folded
    into an overflow row: max_flows holds one copy's keys). --broker: the
    embedded mock broker (its threads are the engine's CPU), nm_mock_broker in its own process
    (external: the engine's own cost, the broker's printed apart), or both; --threads prints
    the engine's CPU per thread (schedstat), --engine-ab A,B compares two builds' engines;
  - nfacctd (IPFIX, v9) / sfacctd (sFlow) 1.7.7, print plugin, aggregated on peer_src_ip,
    in_iface, out_iface, src_host, dst_host, src_port, dst_port, proto, tos, tcpflags: the keys
    the issue names, a subset of the engine's. It listens on 127.0.0.1 (this script re-runs
    itself in a private network namespace) and gets the export capture's UDP payloads sent at
    at most --pps datagrams/s and never more than 1 MiB ahead of it (its socket's receive
    queue is read from /proc/net/udp before each 16 datagrams), into a 4 MiB socket buffer
    (*_pipe_size; the host's rmem_max), so its socket never overflows (the netns' RcvbufErrors are checked: a
    drop fails the run); when its processes have been idle for a
    second it gets SIGINT and writes its cache once. pcap_savefile was tried first and is not
    usable at this size: at the end of the file nfacctd dropped what was still in its plugin pipe
    (half of 8 copies), and with pcap_savefile_wait it re-delivered a stale buffer.
    Its cache is sized so that it neither drops nor exits: print_cache_entries is a prime above
    1.1 times the records of one copy (more than its distinct keys; each entry costs it about
    4 KiB), plugin_pipe_size 1 GiB, plugin_buffer_size 10 MB, print_refresh_time 3600 (one
    purge at exit; with 1 s a purge forked at the refresh and the one at exit both wrote every
    row). The first datagram waits until pmacct's processes have used no CPU for a second (at
    least 3 s): what its core process hands the print plugin while the plugin still memsets
    its cache is lost without a word in its log (at the issue's size, load 11: 2.8 M of 16.0 M
    packets accounted after a fixed 3 s wait; every packet after this wait).
Both sides must account for the same packets (the engine's summary; the sum of pmacct's
PACKETS column), K copies K times those of one, or the run fails. Peak memory: the largest sum
of VmRSS + HugetlbPages over the process tree, sampled every 20 ms. Runs alternate engine and
peer; medians of R runs. Prints ns of CPU per record for each side and the ratio peer/engine.
"""
import argparse
import ctypes
import json
import os
import resource
import signal
import socket
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("NM_BUILD", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
ENGINE = os.path.join(BUILD, "dpdk_app", "netmeta")


def write_traffic(path, flows, pkts):
    """flows distinct 5-tuples, interleaved (round k carries packet k of every flow that has
    one); pkts may be fractional: flow i gets floor((i+1)*pkts) - floor(i*pkts) packets, so
    4.5 gives 4 and 5 alternately. 100,000 frames per second."""
    cnt = [int((i + 1) * pkts) - int(i * pkts) for i in range(flows)]
    rounds = max(cnt)
    j = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for k in range(rounds):
            for i in range(flows):
                if cnt[i] <= k:
                    continue
                src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
                dst = bytes([198, 51, 100, i % 251])
                tos = (i % 4) << 2
                if i % 5 == 4:
                    l4 = struct.pack("!HHHH", 1024 + i % 60000, 53, 8 + 32, 0) + b"\0" * 32
                    proto = 17
                else:
                    flags = 0x02 if k == 0 else (0x11 if k == cnt[i] - 1 else 0x18)
                    l4 = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, k, 0, 0x50, flags, 65535, 0, 0) + b"\0" * 18
                    proto = 6
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), j & 0xFFFF, 0, 64, proto, 0, src, dst)
                fr = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + l4
                f.write(struct.pack("<IIII", 1700000000 + j // 100000, j % 100000 * 10, len(fr), len(fr)))
                f.write(fr)
                j += 1
    return j


CAPTURE = r'''
set -e
ip link set lo up
python3 -c "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1<<24); s.bind(('127.0.0.1',$2))
while True: s.recv(65535)" & SINK=$!
dumpcap -q -i lo -B 256 -s 0 -P -w "$1" -f "udp port $2" 2>"$1.dumpcap.log" & DC=$!
sleep 1
shift 2
"$@" > export.log 2>&1
sleep 1
kill -INT $DC; wait $DC || true
kill $SINK
'''

SFPROBE_CONF = """daemonize: false
pcap_savefile: {pcap}
pcap_savefile_wait: false
plugins: sfprobe[sf]
sfprobe_receiver[sf]: 127.0.0.1:6343
sfprobe_agentip[sf]: 127.0.0.1
plugin_pipe_size[sf]: 268435456
plugin_buffer_size[sf]: 1024000
"""


def make_export(d, proto, traffic, flows):
    out = os.path.join(d, proto + ".pcap")
    if proto in ("ipfix", "v9"):
        # softflowd wants relative paths for its pid and control files (corpus RECIPES.md).
        cmd = ["softflowd", "-d", "-r", traffic, "-n", "127.0.0.1:2055", "-v", "10" if proto == "ipfix" else "9",
               "-m", str(flows + 1000), "-p", "sfd.pid", "-c", "sfd.ctl"]
        port = 2055
    else:
        conf = os.path.join(d, "sfprobe.conf")
        with open(conf, "w") as f:
            f.write(SFPROBE_CONF.format(pcap=traffic))
        cmd = ["pmacctd", "-f", conf]
        port = 6343
    subprocess.run(["unshare", "-n", "sh", "-c", CAPTURE, "sh", out, str(port)] + cmd, cwd=d, check=True)
    log = open(out + ".dumpcap.log").read()
    if "dropped" in log and "/0 " not in log:
        raise SystemExit("dumpcap dropped export datagrams: %s" % log)
    os.chmod(out, 0o644)
    return out


def replicate(src, dst, k):
    """k copies of a pcap's records, copy i shifted by i * (span + 1) seconds."""
    data = open(src, "rb").read()
    hdr, body = data[:24], data[24:]
    recs, off = [], 0
    while off + 16 <= len(body):
        sec, usec, incl, orig = struct.unpack_from("<IIII", body, off)
        recs.append((sec, usec, body[off + 16:off + 16 + incl], orig))
        off += 16 + incl
    span = recs[-1][0] - recs[0][0] + 1
    with open(dst, "wb") as f:
        f.write(hdr)
        for c in range(k):
            for sec, usec, fr, orig in recs:
                f.write(struct.pack("<IIII", sec + c * span, usec, len(fr), orig))
                f.write(fr)
    os.chmod(dst, 0o644)
    return dst


libc = ctypes.CDLL(None, use_errno=True)


def descendants(root):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                st = open("/proc/%s/stat" % p).read()
                ppid = int(st[st.rindex(")") + 2:].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_kb(root):
    total = 0
    for p in descendants(root):
        try:
            for line in open("/proc/%d/status" % p):
                if line.startswith(("VmRSS:", "HugetlbPages:")):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def task_cpu(pid, seen):
    """Adds the CPU time (ns, from schedstat: not tick-rounded) of every thread of pid to seen,
    {tid: [comm, ns]}; a thread's last sample stays when it has exited."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return
    for t in tids:
        try:
            comm = open("/proc/%d/task/%s/comm" % (pid, t)).read().strip()
            ns = int(open("/proc/%d/task/%s/schedstat" % (pid, t)).read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        seen[int(t)] = [comm, ns]


def thread_groups(seen, total):
    """{thread name: CPU seconds}; lcore and broker threads keep their names, and what exited
    threads did after their last 10 ms sample is "(exited, unsampled)"."""
    g = {}
    for comm, ns in seen.values():
        g[comm] = g.get(comm, 0.0) + ns / 1e9
    g["(exited, unsampled)"] = max(0.0, total - sum(g.values()))
    return g


def measured(cmd, cwd=None, threads=False):
    """Run cmd; returns (returncode, output, cpu seconds of it and its descendants, peak kB,
    {thread name: cpu seconds} of its own threads when threads is set)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen = {}
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        peak, stop = [0], [False]

        def sample():
            n = 0
            while not stop[0]:
                if threads:
                    task_cpu(p.pid, seen)
                if n % 2 == 0:
                    peak[0] = max(peak[0], tree_kb(p.pid))
                n += 1
                time.sleep(0.01)

        th = threading.Thread(target=sample)
        th.start()
        try:
            rc = p.wait(timeout=900)
        finally:
            stop[0] = True
            th.join()
        # Orphaned descendants (pmacct's plugins) were reparented to us: reap them, so that
        # their CPU time is in RUSAGE_CHILDREN.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        log.seek(0)
        out = log.read().decode(errors="replace")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, out, cpu, peak[0], thread_groups(seen, cpu) if threads else {}


MOCK_BROKER = os.path.join(BUILD, "tests", "tools", "nm_mock_broker")


def start_broker():
    """librdkafka's mock cluster in its own process (tests/tools/nm_mock_broker), as a
    deployment's engine talks to a Kafka outside it. Returns (process, bootstrap)."""
    b = subprocess.Popen([MOCK_BROKER, "-p", "4"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    line = b.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "BOOTSTRAP":
        b.kill()
        raise SystemExit("nm_mock_broker printed %r" % line)
    return b, line[1]


def stop_broker(b):
    """CPU seconds the broker process spent (all its threads), then SIGTERM."""
    ticks = 0
    try:
        f = open("/proc/%d/stat" % b.pid).read()
        f = f[f.rindex(")") + 2:].split()
        ticks = int(f[11]) + int(f[12])
    except (OSError, ValueError):
        pass
    b.terminate()
    b.wait(timeout=30)
    b.stdout.close()
    return ticks / os.sysconf("SC_CLK_TCK")


def run_engine(pcap, prefix, max_flows, broker="embedded", threads=False):
    """netmeta --pcap on pcap. broker "embedded": librdkafka's mock cluster inside the engine
    process (its threads count as the engine's); "external": nm_mock_broker in its own process,
    started before and stopped after the run, its CPU reported apart ("broker_cpu")."""
    bp, boot, bcpu = None, "embedded", 0.0
    if broker == "external":
        bp, boot = start_broker()
    try:
        with tempfile.TemporaryDirectory() as d:
            summ = os.path.join(d, "s.json")
            cmd = [ENGINE, "--pcap", pcap, "--set", "engine.stats_interval_ms=0",
                   "--set", "aggregation.max_flows=%d" % max_flows, "--set", "kafka.brokers=" + boot,
                   "--summary-json", summ, "--", "--file-prefix=" + prefix, "--log-level=warning"]
            rc, out, cpu, peak, thr = measured(cmd, threads=threads)
            if rc != 0:
                sys.stdout.write(out[-3000:])
                raise SystemExit("netmeta exited %d" % rc)
            s = json.load(open(summ))
    finally:
        if bp is not None:
            bcpu = stop_broker(bp)
    if s["agg_folded"] != 0 or s["agg_dropped"] != 0:
        raise SystemExit("netmeta folded %d and dropped %d records into overflow rows: max_flows %d is too small"
                         % (s["agg_folded"], s["agg_dropped"], max_flows))
    if s["lost_records"] != 0 or s["kafka_records_acked"] != s["rows"]:
        raise SystemExit("netmeta lost %d records; %d rows of %d records, %d acknowledged by Kafka"
                         % (s["lost_records"], s["rows"], s["records"], s["kafka_records_acked"]))
    return {"cpu": cpu, "peak": peak, "records": s["records"], "packets": s["records_packets"],
            "threads": thr, "broker_cpu": bcpu}


PEER_CONF = """daemonize: false
{daemon}_ip: 127.0.0.1
{daemon}_port: {port}
{daemon}_pipe_size: 4194304
plugins: print
aggregate: peer_src_ip, in_iface, out_iface, src_host, dst_host, src_port, dst_port, proto, tos, tcpflags
print_output: csv
print_output_file: {out}
print_output_file_append: true
print_refresh_time: 3600
print_cache_entries: {entries}
plugin_pipe_size: 1073741824
plugin_buffer_size: 10240000
"""


def prime_above(n):
    n |= 1
    while any(n % q == 0 for q in range(3, int(n ** 0.5) + 1, 2)):
        n += 2
    return n


def udp_payloads(pcap):
    """The UDP payloads of a classic pcap of Ethernet/IPv4/UDP frames, in order."""
    data = open(pcap, "rb").read()
    out, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        fr = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(fr) >= 42 and fr[12:14] == b"\x08\x00" and fr[23] == 17:
            ihl = (fr[14] & 15) * 4
            out.append(fr[14 + ihl + 8:])
    return out


def tree_ticks(root):
    t = 0
    for pid in descendants(root):
        try:
            f = open("/proc/%d/stat" % pid).read()
            f = f[f.rindex(")") + 2:].split()
            t += int(f[11]) + int(f[12])
        except (OSError, ValueError):
            pass
    return t


def udp_rcvbuf_errors():
    """RcvbufErrors of this network namespace: datagrams a full socket buffer dropped."""
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def udp_rx_queue(port):
    """Bytes waiting in the receive queue of the socket bound to 127.0.0.1:port."""
    want = "0100007F:%04X" % port
    for line in open("/proc/net/udp").readlines()[1:]:
        f = line.split()
        if f[1] == want:
            return int(f[4].split(":")[1], 16)
    return 0


def wait_idle(pid, at_least, quiet=1.0, limit=300):
    """Wait until the process tree of pid has used no CPU tick for `quiet` seconds (and at
    least `at_least` seconds in all)."""
    t0 = time.monotonic()
    last, since = -1, time.monotonic()
    while True:
        time.sleep(0.1)
        c = tree_ticks(pid)
        now = time.monotonic()
        if c != last:
            last, since = c, now
        elif now - since >= quiet and now - t0 >= at_least:
            return
        if now - t0 > limit:
            raise SystemExit("pmacct still busy %d s after it started" % limit)


def run_peer(proto, pcap, entries, pps):
    """pmacct's daemon on 127.0.0.1 (this script runs in a private netns), the export datagrams
    sent to it at pps; when its processes have been idle for a second, SIGINT: it writes its
    cache once and exits."""
    daemon, port = ("sfacctd", 6343) if proto == "sflow" else ("nfacctd", 2055)
    payloads = udp_payloads(pcap)
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "peer.conf")
        out = os.path.join(d, "out.csv")
        with open(conf, "w") as f:
            f.write(PEER_CONF.format(daemon=daemon, port=port, out=out, entries=entries))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        drops0 = udp_rcvbuf_errors()
        log = tempfile.TemporaryFile()
        p = subprocess.Popen([daemon, "-f", conf], stdout=log, stderr=subprocess.STDOUT, cwd=d)
        peak, stop = [0], [False]

        def sample():
            while not stop[0]:
                peak[0] = max(peak[0], tree_kb(p.pid))
                time.sleep(0.02)

        th = threading.Thread(target=sample)
        th.start()
        try:
            # Start-up before the first datagram: the print plugin memsets its cache (2 GB at
            # the issue's size: seconds on a loaded machine), and what the core process hands
            # it before it reads its pipe is lost without a word in its log (16.0 M packets
            # sent, 2.8 M accounted at load 11 with a fixed 3 s wait). Wait until the tree
            # has used no CPU for a second, at least 3 s.
            wait_idle(p.pid, 3)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t0 = time.monotonic()
            for i in range(0, len(payloads), 16):
                # Flow control: never more than 1 MiB waiting in its 4 MiB buffer (a loaded
                # machine deschedules the daemon for tens of ms), and at most pps.
                while udp_rx_queue(port) > 1 << 20:
                    time.sleep(0.002)
                for pl in payloads[i:i + 16]:
                    s.sendto(pl, ("127.0.0.1", port))
                ahead = t0 + (i + 16) / pps - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            s.close()
            last, same = -1, 0
            while same < 8:
                time.sleep(0.25)
                c = tree_ticks(p.pid)
                same = same + 1 if c == last else 0
                last = c
            p.send_signal(signal.SIGINT)
            rc = p.wait(timeout=300)
        finally:
            stop[0] = True
            th.join()
            if p.poll() is None:
                p.kill()
                p.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        log.seek(0)
        text = log.read().decode(errors="replace")
        pkts, rows, col = 0, 0, None
        for line in open(out) if os.path.exists(out) else []:
            f = line.rstrip("\n").split(",")
            if "PACKETS" in f:
                col = f.index("PACKETS")
            elif col is not None and len(f) > col:
                pkts += int(f[col])
                rows += 1
    if col is None:
        sys.stdout.write(text[-3000:])
        raise SystemExit("%s exited %d and wrote no output" % (daemon, rc))
    if udp_rcvbuf_errors() != drops0:
        raise SystemExit("%s: its socket dropped %d datagrams at %.0f/s: lower --pps"
                         % (daemon, udp_rcvbuf_errors() - drops0, pps))
    return {"cpu": cpu, "peak": peak[0], "packets": pkts, "rows": rows, "log": text}


def print_threads(runs1, runsk, drec):
    """Each engine thread's CPU, medians of the x1 and xK runs, and its marginal ns/record."""
    for n in sorted(set(n for x in runs1 + runsk for n in x["threads"])):
        c1 = statistics.median(x["threads"].get(n, 0.0) for x in runs1)
        ck = statistics.median(x["threads"].get(n, 0.0) for x in runsk)
        print("    %-22s %7.3f -> %7.3f  %6.0f" % (n, c1, ck, (ck - c1) / drec * 1e9))


def engine_ab(a, proto, one, many, recs, max_flows, modes):
    """--engine-ab: the engines of two builds on the same inputs, runs alternating, marginal CPU
    per record and per thread, medians."""
    global ENGINE, MOCK_BROKER
    builds = a.engine_ab.split(",")
    res = {}
    for r in range(a.runs):
        for b in builds:
            ENGINE = os.path.join(b, "dpdk_app", "netmeta")
            MOCK_BROKER = os.path.join(b, "tests", "tools", "nm_mock_broker")
            for m in modes:
                for k, pcap in ((1, one), (a.copies, many)):
                    e = run_engine(pcap, "ab%d_%d_%d" % (os.getpid(), r, k), max_flows, broker=m, threads=True)
                    res.setdefault((b, m, k), []).append(e)
    drec = (a.copies - 1) * recs
    for b in builds:
        for m in modes:
            med = [statistics.median(x["cpu"] for x in res[(b, m, k)]) for k in (1, a.copies)]
            print("%s %s, %s broker: %.0f ns/record marginal (x1 %.3f s, x%d %.3f s)"
                  % (proto, b, m, (med[1] - med[0]) / drec * 1e9, med[0], a.copies, med[1]))
            print_threads(res[(b, m, 1)], res[(b, m, a.copies)], drec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=20000)
    ap.add_argument("--pkts", type=float, default=4, help="packets per flow; fractional: mixed")
    ap.add_argument("--sflow-flows", type=int, help="flows of the sFlow input (default --flows)")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--pps", default="ipfix=2000,v9=2000,sflow=2000",
                    help="datagrams/s sent to pmacct (its socket must not overflow)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--protos", default="ipfix,v9,sflow")
    ap.add_argument("--broker", default="embedded", choices=("embedded", "external", "both"),
                    help="the engine's Kafka: in its process, nm_mock_broker in another, or both")
    ap.add_argument("--threads", action="store_true", help="the engine's CPU per thread")
    ap.add_argument("--issue", action="store_true",
                    help="issue 10's size: ~445,000 records per copy (IPFIX/v9: 445,000 flows x "
                    "4.5 packets = 2 M packets; sFlow: 99,000 flows x 4.5 = 445,500 samples)")
    ap.add_argument("--engine-ab", metavar="BUILD_A,BUILD_B",
                    help="no peer: the engines of two build directories, alternating, per thread "
                    "(an A/B of an engine change on the same inputs)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--keep", help="keep the generated inputs in this directory (reused when there)")
    a = ap.parse_args()
    if a.smoke:
        # Both brokers and the per-thread figures, so every path of the script keeps working.
        a.flows, a.pkts, a.copies, a.runs, a.broker, a.threads = 3000, 2, 2, 1, "both", True
    if a.issue:
        a.flows, a.pkts, a.sflow_flows = 445000, 4.5, 99000
    if a.sflow_flows is None:
        a.sflow_flows = a.flows
    protos = a.protos.split(",")
    modes = ("embedded", "external") if a.broker == "both" else (a.broker,)
    for prog in ("softflowd", "dumpcap", "nfacctd", "sfacctd", "pmacctd", "unshare"):
        if shutil.which(prog) is None:
            print("SKIP: %s not installed (scripts/setup.sh --test installs it)" % prog)
            sys.exit(77)
    if os.geteuid() != 0:
        print("SKIP: needs root (unshare -n, DPDK)")
        sys.exit(77)
    if os.environ.get("NM_PEER_NETNS") != "1":
        # pmacct listens on 127.0.0.1 of a private network namespace, made for this run.
        env = dict(os.environ, NM_PEER_NETNS="1")
        sys.exit(subprocess.call(["unshare", "-n", sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    pps = dict(x.split("=") for x in a.pps.split(","))
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    d = a.keep or tempfile.mkdtemp(prefix="nmpeer")
    os.makedirs(d, exist_ok=True)
    try:
        rows = []
        for proto in protos:
            flows = a.sflow_flows if proto == "sflow" else a.flows
            sub = os.path.join(d, proto)
            os.makedirs(sub, exist_ok=True)
            tag = "%d-%g" % (flows, a.pkts)
            traffic = os.path.join(sub, "traffic-%s.pcap" % tag)
            one = os.path.join(sub, "%s-%s.pcap" % (proto, tag))
            many = os.path.join(sub, "%s-%s-x%d.pcap" % (proto, tag, a.copies))
            t0 = time.monotonic()
            if not os.path.exists(one):
                npkts = write_traffic(traffic, flows, a.pkts)
                print("%s traffic: %d flows x %g packets = %d frames (%s)" % (proto, flows, a.pkts, npkts, traffic))
                os.rename(make_export(sub, proto, traffic, flows), one)
                os.unlink(traffic)
            if not os.path.exists(many):
                replicate(one, many, a.copies)
            gen = time.monotonic() - t0
            # A first engine run (not counted) gives the records of one copy: the engine's
            # table and pmacct's cache are sized by it.
            first = run_engine(one, "peer%d_%s_w" % (os.getpid(), proto), 1 << 21)
            # One copy's keys a table: --pcap reads faster than the flusher drains, and the RX
            # lcore waits for a free table (offline_waits) rather than fill one past max_flows
            # (before it did, 295,080 of 3,560,000 records folded at x8: fewer rows, less work,
            # not the same keys kept; run_engine fails on a fold). Sizing the table for every
            # copy instead cost the RX lcore ~80 ns/record more (first-touch page faults of an
            # 8x larger arena and index, which a long-running engine reusing its tables does
            # not pay).
            max_flows = first["records"] + 1024
            entries = prime_above(first["records"] * 11 // 10)
            print("%s export: %s (%.1f MB, %d records, %d packets; made in %.0f s); x%d: %.1f MB; engine "
                  "max_flows %d, pmacct print_cache_entries %d" % (proto, one, os.path.getsize(one) / 1e6,
                                                                    first["records"], first["packets"], gen,
                                                                    a.copies, os.path.getsize(many) / 1e6,
                                                                    max_flows, entries))
            if a.engine_ab:
                engine_ab(a, proto, one, many, first["records"], max_flows, modes)
                continue
            res = {}
            for r in range(a.runs):
                for k, pcap in ((1, one), (a.copies, many)):
                    peer = "sfacctd" if proto == "sflow" else "nfacctd"
                    line = "  run %d x%d:" % (r + 1, k)
                    for m in modes:
                        e = run_engine(pcap, "peer%d_%s_%d_%d%s" % (os.getpid(), proto, k, r, m[:2]), max_flows,
                                       broker=m, threads=a.threads)
                        if e["packets"] != k * first["packets"]:
                            raise SystemExit("%s x%d: netmeta (%s broker) accounted %d packets; expected %d"
                                             % (proto, k, m, e["packets"], k * first["packets"]))
                        res.setdefault(("nm", m, k), []).append(e)
                        line += " netmeta/%s %.2f s CPU%s, %.0f MB peak;" % (
                            m, e["cpu"], " (+broker %.2f s)" % e["broker_cpu"] if m == "external" else "",
                            e["peak"] / 1024)
                    t1 = time.monotonic()
                    p = run_peer(proto, pcap, entries, float(pps[proto]))
                    if p["packets"] != k * first["packets"]:
                        sys.stdout.write("\n".join(l for l in p["log"].splitlines()
                                                    if "INFO" not in l)[-2000:] + "\n")
                        raise SystemExit("%s x%d: netmeta accounted %d packets, %s %d"
                                         % (proto, k, k * first["packets"], peer, p["packets"]))
                    res.setdefault(("pm", k), []).append(p)
                    print(line + " %s %.2f s CPU, %.0f MB peak (%.0f s wall)" % (peer, p["cpu"], p["peak"] / 1024,
                                                                                 time.monotonic() - t1))
                    sys.stdout.flush()

            def med(key, what):
                return statistics.median(x[what] for x in res[key])

            drec = (a.copies - 1) * first["records"]
            pm_ns = (med(("pm", a.copies), "cpu") - med(("pm", 1), "cpu")) / drec * 1e9
            for m in modes:
                nm_ns = (med(("nm", m, a.copies), "cpu") - med(("nm", m, 1), "cpu")) / drec * 1e9
                b_ns = (med(("nm", m, a.copies), "broker_cpu") - med(("nm", m, 1), "broker_cpu")) / drec * 1e9
                rows.append((proto, m, first["records"], nm_ns, pm_ns, med(("nm", m, a.copies), "peak"),
                             med(("pm", a.copies), "peak"), b_ns))
                if a.threads:
                    print("%s, %s broker: engine CPU per thread, x1 s -> x%d s, marginal ns/record (medians)"
                          % (proto, m, a.copies))
                    print_threads(res[("nm", m, 1)], res[("nm", m, a.copies)], drec)
        print()
        print("marginal CPU (user+sys) per record between 1 and %d copies, medians of %d runs" % (a.copies, a.runs))
        print("%-6s %-8s %12s %14s %14s %8s %16s %16s %14s" % ("input", "broker", "records/copy", "netmeta ns/rec",
                                                          "pmacct ns/rec", "ratio", "netmeta peak MB",
                                                          "pmacct peak MB", "broker ns/rec"))
        for proto, m, recs, nm_ns, pm_ns, nm_peak, pm_peak, b_ns in rows:
            ratio = pm_ns / nm_ns if nm_ns > 0 else float("inf")
            print("%-6s %-8s %12d %14.0f %14.0f %7.1fx %16.0f %16.0f %14s" % (
                proto, m, recs, nm_ns, pm_ns, ratio, nm_peak / 1024, pm_peak / 1024,
                "%.0f" % b_ns if m == "external" else "(in engine)"))
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
