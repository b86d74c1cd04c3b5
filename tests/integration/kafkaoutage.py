# SPDX-License-Identifier: BSD-3-Clause
"""Shared parts of the Kafka outage/spool integration tests (test_kafka_outage, test_kafka_spool_full,
test_kafka_crash_spool): a mock broker with partitions that can be taken down and up (SIGUSR1 /
SIGUSR2 to tests/tools/nm_mock_broker), the NetFlow v5 captures of the corpus as UDP payloads,
a live engine capturing a veth whose peer lives in a network namespace of the test's own (the
exporters' sockets are made there), reading every partition back with kcat, and the engine's
telemetry.

Why a veth and not loopback: a capture of lo sees every loopback byte of the machine -- the
engine's own Kafka traffic, ClickHouse, other tests -- and libpcap's buffer overflowed under that
load (8 of 832 datagrams lost in one run). The veth carries nothing but the test's datagrams. They
are addressed to a MAC nobody has, so the root namespace's IP stack drops them (no forwarding
anywhere) after the capture saw them; nothing leaves the machine."""
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

STATS = nmtest.STATS


class Broker(nmtest.MockBroker):
    """nm_mock_broker -p partitions; down()/up() send SIGUSR1/SIGUSR2 and wait for its log line."""

    def __init__(self, partitions=4, timeout=20):
        self.partitions = partitions
        super().__init__(timeout, args=["-p", str(partitions)])

    def _signal(self, sig):
        before = self.log().count("nm_mock_broker: brokers ")
        self.proc.send_signal(sig)
        deadline = time.time() + 10
        while time.time() < deadline and self.log().count("nm_mock_broker: brokers ") == before:
            time.sleep(0.05)

    def down(self):
        nmtest.log("%.1f: broker DOWN" % time.time())
        self._signal(signal.SIGUSR1)

    def up(self):
        nmtest.log("%.1f: broker UP" % time.time())
        self._signal(signal.SIGUSR2)


def udp_payloads(path):
    """The UDP payloads of an Ethernet/IPv4 pcap, in order."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != 1:
        raise ValueError("%s: link type %d, expected Ethernet" % (path, linktype))
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from(endian + "IIII", data, off)
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        et = struct.unpack_from("!H", frame, 12)[0]
        if et != 0x0800:
            continue
        ihl = (frame[14] & 0x0F) * 4
        if frame[14 + 9] != 17:
            continue
        udp = 14 + ihl
        ulen = struct.unpack_from("!H", frame, udp + 4)[0]
        out.append(frame[udp + 8:udp + ulen])
    return out


def nf5_cases():
    """The valid NetFlow v5 captures of TRUTH.tsv (the invalid ones are test_kafka_nf5's)."""
    return [t for t in nmtest.truth_rows("nf5") if "invalid" not in os.path.basename(t["file"])]


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CLONE_NEWNET = 0x40000000
EXPORTER_NET = "10.254.0."       # inside the namespace only
COLLECTOR_IP = EXPORTER_NET + "2"
NOBODY_MAC = "02:00:00:00:5e:99"


def _sh(*argv):
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stdout.strip()))


class Veth:
    """veth pair: "<name>a" in namespace <name> with the exporters' addresses, "<name>b" in the
    root namespace (no address) for the engine to capture."""

    def __init__(self, n_exporters):
        self.ns = "nmk%d" % os.getpid()
        self.a, self.b = self.ns + "a", self.ns + "b"
        self.n = n_exporters
        try:
            _sh("ip", "netns", "add", self.ns)
            _sh("ip", "link", "add", self.a, "type", "veth", "peer", "name", self.b)
            # Jumbo MTU: a NetFlow datagram must not be fragmented (the engine counts
            # fragments, it does not reassemble them).
            _sh("ip", "link", "set", self.a, "mtu", "9000")
            _sh("ip", "link", "set", self.b, "mtu", "9000")
            _sh("ip", "link", "set", self.a, "netns", self.ns)
            # No IPv6 on the veth: its neighbour/router solicitations would be noise.
            with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.b, "w") as f:
                f.write("1")
            _sh("ip", "link", "set", self.b, "up")
            nsx = ["ip", "netns", "exec", self.ns]
            _sh(*nsx, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.a)
            _sh(*nsx, "ip", "addr", "add", EXPORTER_NET + "1/24", "dev", self.a)
            for i in range(n_exporters):
                _sh(*nsx, "ip", "addr", "add", "%s%d/32" % (EXPORTER_NET, 10 + i), "dev", self.a)
            _sh(*nsx, "ip", "link", "set", self.a, "up")
            _sh(*nsx, "ip", "neigh", "replace", COLLECTOR_IP, "lladdr", NOBODY_MAC, "dev", self.a,
                "nud", "permanent")
        except Exception:
            self.remove()
            raise

    def sockets(self):
        """One UDP socket per exporter address, made inside the namespace (a socket stays in
        the namespace it was created in; setns() applies to this thread only)."""
        libc = ctypes.CDLL(None, use_errno=True)
        orig = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open("/var/run/netns/" + self.ns, os.O_RDONLY)
        socks = []
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + self.ns)
            for i in range(self.n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("%s%d" % (EXPORTER_NET, 10 + i), 0))
                socks.append(s)
        finally:
            if libc.setns(orig, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
            os.close(fd)
            os.close(orig)
        return socks

    def remove(self):
        subprocess.run(["ip", "link", "del", self.b], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)


class LiveEngine:
    """The engine capturing iface (a Veth's root side), or reading pcaps offline."""

    def __init__(self, tmp, brokers, udp_port, spool_dir, sets=(), name="live", pcaps=(),
                 iface=None):
        self.tmp = tmp
        self.prefix = "nmkafka%d_%s" % (os.getpid(), name)
        self.summary_path = os.path.join(tmp, name + "-summary.json")
        self.out_path = os.path.join(tmp, name + ".out")
        cfg = os.path.join(tmp, name + ".ini")
        with open(cfg, "w") as f:
            f.write("[collector]\nports = %s\n[kafka]\nbrokers = %s\nspool_dir = %s\n"
                    "[engine]\nstats_interval_ms = 1000\n" % (udp_port, brokers, spool_dir))
            if not pcaps:
                # net_af_packet with a 16 MiB ring (8,192 frames of 2,048 bytes: the largest
                # export datagram of the corpus fits, and so does the engine's mbuf), not
                # net_pcap's libpcap ring, whose size cannot be set: on a loaded 2-core machine
                # that ring overflowed while the RX lcore waited for a core (539 of 135,232
                # packets lost in one run, the Kafka path exact).
                f.write("[port.veth]\ndevice = net_af_packet_%s,iface=%s,qpairs=1,blocksz=4096,"
                        "framesz=2048,framecnt=8192\n" % (self.prefix, iface))
        self.argv = [nmtest.ENGINE, "-c", cfg, "--summary-json", self.summary_path]
        for s in sets:
            self.argv += ["--set", s]
        for p in pcaps:
            self.argv += ["--pcap", p]
        self.argv += ["--"] + nmtest.eal_args(prefix=self.prefix)
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.t0 = time.time()

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def tail(self, n=30):
        return "\n".join(self.output().splitlines()[-n:])

    def wait_ready(self, timeout=60):
        """Until telemetry answers (EAL, ports and Kafka are set up)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("engine exited early (%d):\n%s" % (self.proc.returncode, self.tail()))
            if self.telemetry("/netmeta/kafka") is not None:
                return
            time.sleep(0.3)
        raise RuntimeError("engine telemetry never answered:\n" + self.tail())

    def telemetry(self, cmd="/netmeta/kafka"):
        return nmtest.telemetry(self.prefix, cmd, timeout=20)

    def stop(self, timeout=150):
        """SIGTERM, wait for the drain; returns (rc, summary dict or None)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout=150):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            nmtest.kill_group(self.proc)
            raise RuntimeError("engine did not finish within %d s:\n%s" % (timeout, self.tail()))
        self.out.close()
        nmtest.remove_runtime_dir(self.argv)
        summary = None
        if os.path.exists(self.summary_path):
            with open(self.summary_path) as f:
                summary = json.load(f)
        return self.proc.returncode, summary

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.out.close()
        nmtest.remove_runtime_dir(self.argv)

    def cleanup(self):
        nmtest.kill_group(self.proc)
        nmtest.remove_runtime_dir(self.argv)


def kcat_partitions(bootstrap, partitions, topic=nmtest.TOPIC, timeout=60):
    """{partition: [payload bytes, ...]} of every message, from the beginning to the end."""
    out = {}
    for p in range(partitions):
        r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", str(p), "-e",
                            "-o", "beginning", "-q", "-f", "%R%s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("kcat -p %d failed: %s" % (p, r.stderr.decode(errors="replace")))
        msgs, off, buf = [], 0, r.stdout
        while off < len(buf):
            (n,) = struct.unpack_from(">I", buf, off)
            msgs.append(buf[off + 4:off + 4 + n])
            off += 4 + n
        out[p] = msgs
    return out


def topic_rows(bootstrap, partitions):
    """Decode every partition: returns (rows, packets, bytes, {exporter text: set(partitions)})."""
    rows = pk = by = 0
    where = {}
    for p, msgs in kcat_partitions(bootstrap, partitions).items():
        for m in msgs:
            for fm in nmtest.decode_delimited(m):
                rows += 1
                pk += fm["Packets"]
                by += fm["Bytes"]
                where.setdefault(nmtest.addr_text(fm["SamplerAddress"]), set()).add(p)
    return rows, pk, by, where


def send_paced(veth, udp_port, rounds, seconds, schedule=None, log=nmtest.log):
    """Send every valid nf5 capture's datagrams `rounds` times over `seconds`, capture i from
    10.254.0.(10+i) in veth's namespace (one exporter per capture). schedule: [(t, callable)] run
    at t seconds. Returns the ground truth (packets, bytes, datagrams) of what was sent."""
    cases = nf5_cases()
    if not cases:
        nmtest.skip("TRUTH.tsv has no valid nf5 rows")
    socks, datagrams = veth.sockets(), []
    for i, t in enumerate(cases):
        datagrams += [(i, d) for d in udp_payloads(t["path"])]
    total = rounds * len(datagrams)
    step = seconds / total
    schedule = sorted(schedule or [], key=lambda x: x[0])
    t0 = time.time()
    n = 0
    for r in range(rounds):
        for i, d in datagrams:
            while schedule and time.time() - t0 >= schedule[0][0]:
                schedule.pop(0)[1]()
            socks[i].sendto(d, (COLLECTOR_IP, udp_port))
            n += 1
            delay = t0 + n * step - time.time()
            if delay > 0:
                time.sleep(delay)
    for at, fn in schedule:
        while time.time() - t0 < at:
            time.sleep(0.05)
        fn()
    for s in socks:
        s.close()
    pk = rounds * sum(t["packets"] for t in cases)
    by = rounds * sum(t["bytes"] for t in cases)
    log("sent %d datagrams (%d rounds of %d captures) in %.1f s: %d packets, %d bytes"
        % (n, rounds, len(cases), time.time() - t0, pk, by))
    return pk, by, n


def require():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, nmtest.MOCK_BROKER, "kcat")
    if os.geteuid() != 0:
        nmtest.skip("needs root (veth, network namespace, libpcap capture)")
    nmtest.require_programs("ip")


def tmpdir():
    return tempfile.mkdtemp(prefix="nmtest-kafka-")


def teardown(tmp, problems, engines=(), broker=None, veth=None):
    """The end of an outage test, whatever happened: every engine cleaned up, the broker stopped,
    the veth pair removed (each may be None); tmp (the spool) kept when there are problems."""
    try:
        for e in engines:
            if e is not None:
                e.cleanup()
    finally:
        if broker is not None:
            broker.stop()
        if veth is not None:
            veth.remove()
        if not problems:
            subprocess.run(["rm", "-rf", tmp])


def outage_run(tiny_spool):
    """The live outage scenario. Sends the nf5 captures for SEND_S seconds; the broker is down
    from DOWN_AT to UP_AT; then SIGTERM and the drain. Returns a list of problems (empty: pass)."""
    SEND_S, DOWN_AT, UP_AT, ROUNDS = 46.0, 8.0, 38.0, 16
    require()
    tmp = tmpdir()
    spool = os.path.join(tmp, "spool")
    port = free_udp_port()
    sets = ["kafka.exporter_groups=8", "kafka.linger_ms=100",
            # undelivered batches leave librdkafka's queue for the spool after 4 s
            "kafka.property.message.timeout.ms=4000",
            "kafka.property.reconnect.backoff.max.ms=1000"]
    if tiny_spool:
        # small batches, room for about 8 of them: the outage cannot fit
        sets = ["kafka.batch_bytes=8192", "kafka.queue_max_bytes=1048576",
                "kafka.spool_max_bytes=69632"] + sets
    problems = []
    broker = eng = veth = None
    try:
        veth = Veth(len(nf5_cases()))
        broker = Broker(partitions=4)
        nmtest.log("mock broker at %s (4 partitions); engine captures %s, UDP port %d; spool %s%s"
                   % (broker.bootstrap, veth.b, port, spool, " (69632 bytes)" if tiny_spool else ""))
        eng = LiveEngine(tmp, broker.bootstrap, port, spool, sets=sets, iface=veth.b)
        eng.wait_ready()
        seen = {}

        def peek(label):
            k = eng.telemetry()
            if k:
                seen[label] = k
                nmtest.log("%s: /netmeta/kafka broker %s, queue %s msgs, spool %s records %s bytes, "
                           "acked %s, dropped %s, last error %s" % (
                               label, k["broker_state"], k["queue_messages"], k["spool_records"],
                               k["spool_bytes"], k["records_acked"], k["records_dropped"],
                               k["last_error"]))
        schedule = [(DOWN_AT - 1, lambda: peek("before the outage")), (DOWN_AT, broker.down),
                    (UP_AT - 1, lambda: peek("end of the outage")), (UP_AT, broker.up),
                    (SEND_S + 1, lambda: peek("after the outage"))]
        pk, by, n_sent = send_paced(veth, port, ROUNDS, SEND_S, schedule)
        # Until the capture delivered every datagram (libpcap hands frames over in blocks).
        deadline, got = time.time() + 15, None
        while time.time() < deadline:
            st = eng.telemetry("/netmeta/stats") or {}
            got = st.get("datagrams_nf5")
            if got == n_sent:
                break
            time.sleep(0.5)
        nmtest.log("engine saw %r of %d datagrams" % (got, n_sent))
        time.sleep(2)  # the last datagrams' second closes
        t = time.time()
        rc, s = eng.stop()
        out = eng.output()
        nmtest.log("engine exit %d after a %.1f s drain" % (rc, time.time() - t))
        if s is None:
            return ["no summary JSON; engine output:\n" + eng.tail()]
        keys = ["records", "records_packets", "records_bytes", "rows", "kafka_records_acked",
                "kafka_records_spooled", "kafka_messages_spooled", "kafka_messages_replayed",
                "kafka_records_dropped", "kafka_messages_dropped", "kafka_packets_dropped",
                "kafka_flow_bytes_dropped", "kafka_messages_possibly_persisted", "spool_records",
                "spool_bytes", "lost_records"]
        nmtest.log("summary: " + ", ".join("%s %s" % (k, s.get(k)) for k in keys))
        if (s.get("records_packets"), s.get("records_bytes")) != (pk, by):
            problems.append("engine decoded %r packets %r bytes, sent %d/%d (capture lost datagrams?)"
                            % (s.get("records_packets"), s.get("records_bytes"), pk, by))
        b = seen.get("end of the outage", {})
        if b.get("broker_state") != "down":
            problems.append("telemetry at the end of the outage: broker_state %r, expected down"
                            % b.get("broker_state"))
        if not b.get("spool_records") and not b.get("records_dropped"):
            problems.append("telemetry at the end of the outage: nothing spooled or dropped %r" % b)
        a = seen.get("after the outage", {})
        if a.get("broker_state") != "up":
            problems.append("telemetry after the outage: broker_state %r, expected up"
                            % a.get("broker_state"))
        if s.get("kafka_records_spooled", 0) == 0:
            problems.append("the outage sent nothing to the spool (kafka_records_spooled 0)")
        if s.get("spool_records") != 0:
            problems.append("spool_records %r left after the drain" % s.get("spool_records"))
        dropped = s.get("kafka_records_dropped", 0)
        drop_lines = [ln for ln in out.splitlines() if "kafka: DROPPED a batch of" in ln]
        if tiny_spool:
            if dropped == 0 or s.get("kafka_messages_dropped", 0) == 0:
                problems.append("tiny spool: no drop counted")
            if len(drop_lines) != s.get("kafka_messages_dropped"):
                problems.append("%d DROPPED lines on stderr, summary says %r dropped batches"
                                % (len(drop_lines), s.get("kafka_messages_dropped")))
            logged = sum(int(ln.split("DROPPED a batch of ")[1].split()[0]) for ln in drop_lines)
            if logged != dropped:
                problems.append("DROPPED lines add up to %d records, summary %d" % (logged, dropped))
            if rc != 1 or s.get("lost_records") != dropped:
                problems.append("exit %d lost_records %r, expected 1 and %d (the drops)"
                                % (rc, s.get("lost_records"), dropped))
        else:
            if dropped or drop_lines:
                problems.append("%d records dropped with a spool of 1 GiB" % dropped)
            if rc != 0 or s.get("lost_records"):
                problems.append("exit %d lost_records %r" % (rc, s.get("lost_records")))
        if s.get("kafka_records_acked") != s.get("rows") - dropped:
            problems.append("kafka_records_acked %r != rows %r - dropped %d"
                            % (s.get("kafka_records_acked"), s.get("rows"), dropped))

        rows, tpk, tby, where = topic_rows(broker.bootstrap, broker.partitions)
        want = (s["rows"] - dropped, pk - s.get("kafka_packets_dropped", 0),
                by - s.get("kafka_flow_bytes_dropped", 0))
        nmtest.log("topic: %d rows, %d packets, %d bytes; expected %r (rows - dropped, truth - "
                   "dropped)" % (rows, tpk, tby, want))
        if (rows, tpk, tby) != want:
            problems.append("topic holds %d rows %d packets %d bytes, expected %r (%s)" % (
                rows, tpk, tby, want, "duplicates" if rows > want[0] else "missing rows"
                if rows < want[0] else "counters differ"))
        nmtest.log("exporters -> partitions: " + ", ".join(
            "%s: %s" % (e, sorted(p)) for e, p in sorted(where.items())))
        for e, parts in where.items():
            if len(parts) != 1:
                problems.append("exporter %s on partitions %r" % (e, sorted(parts)))
        if problems:
            nmtest.log("--- engine output (tail) ---\n" + eng.tail(40))
    finally:
        teardown(tmp, problems, [eng], broker, veth)
    return problems


def report(problems, what):
    for p in problems:
        print("FAIL: " + p)
    if not problems:
        print("PASS: " + what)
    return 1 if problems else 0
