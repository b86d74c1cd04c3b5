# SPDX-License-Identifier: BSD-3-Clause
"""Parts of the cluster tests (test_cluster_*.py): several appliances into one Kafka cluster, a
sharded (and replicated) ClickHouse behind it, all on this machine.

- ClusterBroker: nm_mock_broker -n 3 -p P with a pipe to its stdin, so that one broker at a time
  goes down and up (its partitions move to the next broker up, as a controller would do);
- Appliance: one engine ("appliance") with its own config, spool and network namespace, whose
  exporters (one source address per corpus capture, 10.254.K.10+i inside the namespace) send
  the captures' UDP payloads over a veth that the engine captures with net_af_packet and a
  16 MiB ring (as kafkaoutage.py does for one engine with net_pcap: the veth carries nothing but
  the test's datagrams);
- group_state / wait_group: each ClickHouse consumer's place in the Kafka consumer group, read
  from librdkafka's cgrp debug lines in the server's stderr;
- topic_by_partition: every message of the topic with its partition and offset (kcat -f '%p %o
  %S'), decoded (protobuf or JSON);
- ZooKeeper: Debian's zookeeper (QuorumPeerMain, standalone) on a loopback port of its own;
- Server: clickhouse-server 18.16 (scripts/clickhouse.sh start) with a config.d file of the
  cluster written before it starts (remote_servers, zookeeper, interserver port:
  scripts/clickhouse-cluster.sh config).
"""
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage as ko  # noqa: E402
import nmtest  # noqa: E402

CLUSTER_SH = os.path.join(nmtest.SOURCE, "scripts", "clickhouse-cluster.sh")
ZK_JAR = "/usr/share/java/zookeeper.jar"
CLONE_NEWNET = 0x40000000
SEND_BURST = 16  # datagrams an exporter sends back to back at most
# the capture ring of an appliance's engine: a 2,048-byte frame holds the largest datagram of
# the captures (1,728 bytes of UDP payload, 1,770 on the wire) after the tpacket header, and its
# data fits the engine's 2,048-byte mbufs (net_af_packet refuses frames that do not); 8,192 of
# them (16 MiB) are 2.5 minutes of the busiest appliance's traffic (~55 datagrams/s)
CAPTURE_BLOCK, CAPTURE_FRAME, CAPTURE_FRAMES = 4096, 2048, 8192


# --------------------------------------------------------------------------------------------
# Kafka

class ClusterBroker(nmtest.MockBroker):
    """nm_mock_broker -n brokers -p partitions; down(b)/up(b)/leaders() through its stdin."""

    def __init__(self, brokers=3, partitions=6, timeout=20):
        self.brokers, self.partitions = brokers, partitions
        # nmtest.MockBroker starts the process and lets it inherit our stdin: hand it the read
        # end of a pipe as fd 0 for the moment of the start (single-threaded here)
        r, w = os.pipe()
        saved = os.dup(0)
        os.dup2(r, 0)
        os.close(r)
        try:
            super().__init__(timeout, args=["-n", str(brokers), "-p", str(partitions)])
        finally:
            os.dup2(saved, 0)
            os.close(saved)
        self.ctl = w

    def command(self, line, timeout=10):
        """Send one command; returns its answer line (raises unless it starts with OK)."""
        os.write(self.ctl, (line + "\n").encode())
        got, deadline = b"", time.time() + timeout
        while not got.endswith(b"\n") and time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    break
                got += c
        answer = got.decode(errors="replace").strip()
        if not answer.startswith("OK"):
            raise RuntimeError("nm_mock_broker %r: %r" % (line, answer))
        nmtest.log("%.1f: broker %s: %s" % (time.time(), line, answer))
        return answer

    def down(self, b):
        return self.command("down %d" % b)

    def up(self, b):
        return self.command("up %d" % b)

    def leaders(self):
        """{partition: leader broker id}"""
        words = self.command("leaders").split()
        return {int(p): int(b) for p, b in (x.split(":") for x in words[2].split(","))}

    def stop(self):
        if getattr(self, "ctl", None) is not None:
            try:
                os.close(self.ctl)
            except OSError:
                pass
            self.ctl = None
        super().stop()


def topic_by_partition(bootstrap, partitions, fmt="protobuf", topic=nmtest.TOPIC, timeout=60):
    """{partition: [(offset, [row dict, ...]), ...]} in offset order, read with kcat per
    partition, each message framed by kcat's own partition/offset/size header ('%p %o %S\\n')."""
    out = {}
    for p in range(partitions):
        r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", str(p), "-e",
                            "-o", "beginning", "-q", "-f", "%p %o %S\n%s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("kcat -p %d: %s" % (p, r.stderr.decode(errors="replace")))
        buf, off, msgs = r.stdout, 0, []
        while off < len(buf):
            nl = buf.index(b"\n", off)
            part, offset, size = (int(x) for x in buf[off:nl].split())
            if part != p:
                raise RuntimeError("kcat -p %d printed a message of partition %d" % (p, part))
            payload = buf[nl + 1:nl + 1 + size]
            if len(payload) != size:
                raise RuntimeError("kcat output truncated at partition %d offset %d" % (p, offset))
            off = nl + 1 + size
            rows = (nmtest.decode_delimited(payload) if fmt == "protobuf"
                    else nmtest.decode_json_lines(payload))
            msgs.append((offset, rows))
        out[p] = msgs
    return out


def exporter_of(row, fmt):
    return nmtest.addr_text(row["SamplerAddress"]) if fmt == "protobuf" else row["SamplerAddress"]


def check_topic(by_part, fmt, want_rows, want_pk, want_by):
    """Totals, one partition per exporter, each exporter's rows in order along the offsets
    (TimeReceived never goes back). Returns (problems, {exporter: partition}, {p: rows})."""
    problems, where, last, per_part = [], {}, {}, {}
    rows = pk = by = 0
    for p, msgs in sorted(by_part.items()):
        prev_off = -1
        for off, msg_rows in msgs:
            if off <= prev_off:
                problems.append("partition %d: offset %d after %d" % (p, off, prev_off))
            prev_off = off
            for r in msg_rows:
                rows += 1
                pk += int(r["Packets"])
                by += int(r["Bytes"])
                per_part[p] = per_part.get(p, 0) + 1
                e = exporter_of(r, fmt)
                where.setdefault(e, set()).add(p)
                t = int(r["TimeReceived"])
                if e in last and t < last[e][0]:
                    problems.append("exporter %s: second %d at partition %d offset %d after "
                                    "second %d at offset %d" % (e, t, p, off, last[e][0],
                                                                last[e][1]))
                last[e] = (t, off)
    if (rows, pk, by) != (want_rows, want_pk, want_by):
        problems.append("topic holds %d rows %d packets %d bytes, expected %d/%d/%d" % (
            rows, pk, by, want_rows, want_pk, want_by))
    for e, parts in sorted(where.items()):
        if len(parts) != 1:
            problems.append("exporter %s on partitions %r" % (e, sorted(parts)))
    return problems, {e: min(p) for e, p in where.items()}, per_part


# --------------------------------------------------------------------------------------------
# Appliances: an engine each, its own exporters in a network namespace of its own

def cases(kind):
    """Corpus captures for an appliance: "nf5" the valid NetFlow v5 ones, "templates" the
    generated NetFlow v9 and IPFIX ones (softflowd, pmacctd) with no malformed datagram."""
    if kind == "nf5":
        return ko.nf5_cases()
    return [t for t in nmtest.truth_rows() if t["file"].startswith("generated/")
            and t["protocols"] in ("nf9", "ipfix") and t["malformed"] == 0 and t["records"] > 0]


def require_cases():
    """The captures of the two appliances every cluster test runs (cases("nf5"),
    cases("templates")); skips the test when the corpus lacks either."""
    c1, c2 = cases("nf5"), cases("templates")
    if not c1 or not c2:
        nmtest.skip("the corpus lacks nf5 or generated nf9/IPFIX captures")
    return c1, c2


def _sh(*argv):
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stdout.strip()))


class Appliance:
    """One appliance: namespace nmc<pid>_<k> with exporters 10.254.k.(10+i) on one end of a veth,
    the engine capturing the other end, with its own config, spool and DPDK file prefix."""

    def __init__(self, k, captures, brokers, tmp, sets=()):
        self.k, self.captures = k, captures
        self.ns = "nmc%d_%d" % (os.getpid(), k)
        self.a, self.b = "nmc%da%d" % (os.getpid() % 100000, k), "nmc%db%d" % (os.getpid() % 100000, k)
        self.net = "10.254.%d." % k
        self.collector = self.net + "2"
        self.port = ko.free_udp_port()
        self.engine = None
        self.dir = os.path.join(tmp, "appliance%d" % k)
        os.makedirs(self.dir)
        self.spool = os.path.join(self.dir, "spool")
        try:
            self._veth()
            # the capture: net_af_packet with a ring of CAPTURE_FRAMES frames instead of
            # LiveEngine's net_pcap (libpcap's ring, whose size net_pcap does not let us set):
            # under load (5 servers and 2 engines on 2 cores) that ring overflowed while the
            # engine's lcore waited for a core -- 39 of 1,112 datagrams in one run, the veth
            # having delivered all 1,112 (its rx_packets) with no drop of its own
            dev = ("port.veth.device=net_af_packet_%s,iface=%s,qpairs=1,blocksz=%d,framesz=%d,"
                   "framecnt=%d" % (self.b, self.b, CAPTURE_BLOCK, CAPTURE_FRAME,
                                    CAPTURE_FRAMES))
            self.engine = ko.LiveEngine(self.dir, brokers, self.port, self.spool,
                                        sets=list(sets) + [dev], name="appliance%d" % k,
                                        iface=self.b)
        except Exception:
            self.remove()
            raise
        self.datagrams, self.sent = [], 0
        for i, t in enumerate(captures):
            self.datagrams += [(i, d) for d in ko.udp_payloads(t["path"])]

    def _veth(self):
        _sh("ip", "netns", "add", self.ns)
        _sh("ip", "link", "add", self.a, "type", "veth", "peer", "name", self.b)
        for dev in (self.a, self.b):
            _sh("ip", "link", "set", dev, "mtu", "9000")  # no fragments: the engine counts them
        _sh("ip", "link", "set", self.a, "netns", self.ns)
        with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.b, "w") as f:
            f.write("1")
        _sh("ip", "link", "set", self.b, "up")
        nsx = ["ip", "netns", "exec", self.ns]
        _sh(*nsx, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.a)
        _sh(*nsx, "ip", "addr", "add", self.net + "1/24", "dev", self.a)
        for i in range(len(self.captures)):
            _sh(*nsx, "ip", "addr", "add", "%s%d/32" % (self.net, 10 + i), "dev", self.a)
        _sh(*nsx, "ip", "link", "set", self.a, "up")
        _sh(*nsx, "ip", "neigh", "replace", self.collector, "lladdr", ko.NOBODY_MAC, "dev",
            self.a, "nud", "permanent")

    def exporters(self):
        return ["::ffff:%s%d" % (self.net, 10 + i) for i in range(len(self.captures))]

    def sockets(self):
        libc = ctypes.CDLL(None, use_errno=True)
        orig = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open("/var/run/netns/" + self.ns, os.O_RDONLY)
        socks = []
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + self.ns)
            for i in range(len(self.captures)):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("%s%d" % (self.net, 10 + i), 0))
                socks.append(s)
        finally:
            if libc.setns(orig, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
            os.close(fd)
            os.close(orig)
        return socks

    def truth(self, rounds):
        return (rounds * sum(t["packets"] for t in self.captures),
                rounds * sum(t["bytes"] for t in self.captures))

    def send(self, rounds, seconds):
        """Every capture's datagrams `rounds` times, evenly over `seconds`; returns the count."""
        socks = self.sockets()
        total = rounds * len(self.datagrams)
        step, t0, n = seconds / total, time.time(), 0
        for _ in range(rounds):
            for i, d in self.datagrams:
                socks[i].sendto(d, (self.collector, self.port))
                n += 1
                delay = t0 + n * step - time.time()
                if delay > 0:
                    time.sleep(delay)
                elif n % SEND_BURST == 0:
                    # behind the schedule (this thread waited for a core): catch up in short
                    # bursts, never all at once into the veth's and the capture's queues
                    time.sleep(0.001)
        for s in socks:
            s.close()
        self.sent += n
        return n

    def wait_captured(self, timeout=20):
        """Until the engine has seen every datagram sent (libpcap hands them over in blocks)."""
        deadline, got = time.time() + timeout, None
        while time.time() < deadline:
            st = self.engine.telemetry("/netmeta/stats") or {}
            got = sum(v for k, v in st.items() if k.startswith("datagrams_")
                      and k[len("datagrams_"):] in ("nf5", "nf9", "ipfix", "sflow")
                      and isinstance(v, int))
            if got >= self.sent:
                break
            time.sleep(0.5)
        if got is None or got < self.sent:
            # where the datagrams went: the capture's drops (the port's imissed), the veth's
            # own counters, the engine's per-reason counters
            eth = {}
            p = subprocess.run([sys.executable, ko.STATS, "--prefix", self.engine.prefix,
                                "--json", "/ethdev/stats,0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, timeout=20)
            try:
                eth = next(iter(json.loads(p.stdout).values())) or {}
            except (ValueError, StopIteration):
                pass
            veth = {}
            for k in ("rx_packets", "rx_dropped", "tx_dropped"):
                try:
                    with open("/sys/class/net/%s/statistics/%s" % (self.b, k)) as f:
                        veth[k] = int(f.read())
                except OSError:
                    pass
            nmtest.log("appliance %d: %r of %d datagrams; port %r; veth %s %r; stats %r" % (
                self.k, got, self.sent, {k: eth.get(k) for k in ("ipackets", "imissed",
                                                                "ierrors", "rx_nombuf")},
                self.b, veth, {k: v for k, v in st.items() if v}))
        return got

    def remove(self):
        if self.engine is not None:
            self.engine.cleanup()
        subprocess.run(["ip", "link", "del", self.b], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)


def start_appliances(apps, case_lists, brokers, tmp, sets=()):
    """Appliance k+1 for case_lists[k], appended to apps as each is made (so that the caller's
    teardown removes those made before a failure), then each engine ready."""
    for k, cs in enumerate(case_lists, 1):
        apps.append(Appliance(k, cs, brokers, tmp, sets=sets))
    for a in apps:
        a.engine.wait_ready()


def truth_totals(apps, rows, rounds):
    """(rows, packets, bytes) the topic and the tables must hold: the engines' rows, the
    captures' TRUTH x rounds."""
    return (rows, sum(a.truth(rounds)[0] for a in apps), sum(a.truth(rounds)[1] for a in apps))


def teardown(tmp, problems, apps=(), broker=None, servers=(), zk=None):
    """The end of a cluster test, whatever happened: appliances removed, broker, servers and
    ZooKeeper stopped (each may be absent); tmp kept on problems or with NM_KEEP_TMP."""
    try:
        for a in apps:
            a.remove()
    finally:
        if broker is not None:
            broker.stop()
        for s in servers:
            s.stop()
        if zk is not None:
            zk.stop()
        if not problems and not os.environ.get("NM_KEEP_TMP"):
            subprocess.run(["rm", "-rf", tmp])


def send_all(appliances, rounds, seconds, schedule=()):
    """Every appliance sends at once (a thread each); schedule: [(t, callable)] run at t seconds
    from the start, in this thread. Returns the datagrams sent per appliance so far."""
    threads = [threading.Thread(target=a.send, args=(rounds, seconds)) for a in appliances]
    t0 = time.time()
    for t in threads:
        t.start()
    for at, fn in sorted(schedule, key=lambda x: x[0]):
        while time.time() - t0 < at:
            time.sleep(0.05)
        fn()
    for t in threads:
        t.join()
    nmtest.log("sent %s datagrams in %.1f s" % ([a.sent for a in appliances], time.time() - t0))
    return [a.sent for a in appliances]


SUMMARY_KEYS = ["records", "records_packets", "records_bytes", "rows", "kafka_records_acked",
                "kafka_records_spooled", "kafka_messages_replayed", "kafka_records_dropped",
                "lost_records", "spool_records"]


def stop_and_check(appliances, rounds):
    """SIGTERM every engine, wait for its drain; check exit 0, nothing lost or left in the spool,
    the decoded packets/bytes equal the captures' TRUTH x rounds, every row acknowledged.
    Returns (problems, total rows)."""
    problems, rows = [], 0
    for a in appliances:
        got = a.wait_captured()
        nmtest.log("appliance %d: engine saw %r of %d datagrams" % (a.k, got, a.sent))
    time.sleep(2)  # the last datagrams' second closes
    for a in appliances:
        rc, s = a.engine.stop()
        if s is None:
            problems.append("appliance %d: no summary (exit %d):\n%s" % (a.k, rc, a.engine.tail()))
            continue
        nmtest.log("appliance %d: exit %d, %s" % (a.k, rc, ", ".join(
            "%s %s" % (k, s.get(k)) for k in SUMMARY_KEYS)))
        pk, by = a.truth(rounds)
        if (s.get("records_packets"), s.get("records_bytes")) != (pk, by):
            problems.append("appliance %d: decoded %r packets %r bytes, TRUTH x %d = %d/%d" % (
                a.k, s.get("records_packets"), s.get("records_bytes"), rounds, pk, by))
        if rc != 0 or s.get("lost_records") or s.get("spool_records"):
            problems.append("appliance %d: exit %d, lost %r, left in the spool %r" % (
                a.k, rc, s.get("lost_records"), s.get("spool_records")))
        if s.get("kafka_records_acked") != s.get("rows"):
            problems.append("appliance %d: acked %r of %r rows" % (
                a.k, s.get("kafka_records_acked"), s.get("rows")))
        rows += s.get("rows", 0)
    return problems, rows


# --------------------------------------------------------------------------------------------
# ZooKeeper and ClickHouse servers

def zookeeper_available():
    return os.path.isfile(ZK_JAR) and shutil.which("java") is not None


class ZooKeeper:
    """Debian's zookeeper, standalone, on 127.0.0.1:port, data in a temp dir."""

    def __init__(self, timeout=60):
        self.dir = tempfile.mkdtemp(prefix="nmtest-zk-")
        self.port = nmtest.free_port()
        os.makedirs(os.path.join(self.dir, "data"))
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write("tickTime=500\ndataDir=%s/data\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                    "admin.enableServer=false\nmaxClientCnxns=200\n"
                    "4lw.commands.whitelist=srvr,ruok\n" % (self.dir, self.port))
        self.log = open(os.path.join(self.dir, "zookeeper.log"), "wb")
        cp = "/etc/zookeeper/conf:" + ZK_JAR if os.path.isdir("/etc/zookeeper/conf") else ZK_JAR
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", cp, "-Dzookeeper.log.dir=" + self.dir,
             "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("zookeeper exited (%d); log in %s" % (self.proc.returncode,
                                                                         self.dir))
            if "Mode: standalone" in self.four("srvr"):
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("zookeeper did not answer on 127.0.0.1:%d" % self.port)

    def four(self, word):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(word.encode())
                data = b""
                while True:
                    c = s.recv(4096)
                    if not c:
                        break
                    data += c
                return data.decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        nmtest.kill_group(self.proc)
        self.log.close()
        if not os.environ.get("NM_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


class Server(nmtest.ClickHouse):
    """clickhouse-server started by scripts/clickhouse.sh in a temp dir, as nmtest.ClickHouse,
    with DIR/config.d/cluster.xml (written by config_xml(server)) in place before the start:
    remote_servers, zookeeper and the interserver port are read at start-up."""

    def __init__(self, name, start_timeout=90):  # noqa: super().__init__ starts at once
        if shutil.which("clickhouse-server") is None or shutil.which("clickhouse-client") is None:
            nmtest.skip("clickhouse-server/clickhouse-client not installed")
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="nmtest-ch-%s-" % name)
        self.http, self.tcp, self.interserver = (nmtest.free_port() for _ in range(3))
        self.pid = None

    def start(self, config_xml=None, start_timeout=90):
        """Start with config_xml as config.d/cluster.xml; None: again, as it was (a restart
        after kill9(), on the same directory and ports)."""
        if config_xml is not None:
            os.makedirs(os.path.join(self.dir, "config.d"), exist_ok=True)
            with open(os.path.join(self.dir, "config.d", "cluster.xml"), "w") as f:
                f.write(config_xml)
        # librdkafka's consumer group debug on the server's stderr (log/stderr.log): the test
        # reads the group's assignment there (group_state) instead of guessing with a sleep.
        # NM_CLUSTER_DEBUG=cgrp,topic,fetch adds more contexts and the server's trace log (the
        # Kafka engine's "Committing N messages").
        os.makedirs(os.path.join(self.dir, "config.d"), exist_ok=True)
        debug = os.environ.get("NM_CLUSTER_DEBUG", "")
        with open(os.path.join(self.dir, "config.d", "debug.xml"), "w") as f:
            f.write("<?xml version=\"1.0\"?>\n<yandex>\n%s    <kafka><debug>%s</debug></kafka>\n"
                    "</yandex>\n" % ("    <logger><level>trace</level></logger>\n" if debug
                                      else "", debug or "cgrp"))
        env = dict(os.environ, NM_CH_START_TIMEOUT=str(start_timeout))
        p = subprocess.run([nmtest.CLICKHOUSE_SH, "start", self.dir, str(self.http),
                            str(self.tcp)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=start_timeout + 30)
        pidfile = os.path.join(self.dir, "pid")
        if os.path.exists(pidfile):
            self.pid = int(open(pidfile).read().strip())
        if p.returncode != 0:
            raise RuntimeError("clickhouse.sh start (%s) failed: %s" % (
                self.name, p.stderr.decode(errors="replace")))
        self.pid = int(p.stdout.decode().split()[-1])

    def kill9(self):
        """A crash: SIGKILL to the server's process group, no shutdown."""
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def count(self, table):
        return tuple(int(x) for x in self.query(
            "SELECT count(), sum(Packets), sum(Bytes) FROM %s" % table)[0])


def start_servers(servers, config_of):
    """Start each server with the config.d XML config_of(server) gives, logging where it runs."""
    for s in servers:
        s.start(config_of(s))
        nmtest.log("%s: clickhouse-server pid %d on 127.0.0.1:%d, interserver %d (dir %s)" % (
            s.name, s.pid, s.tcp, s.interserver, s.dir))


def cluster_config(name, shards, zk=None, interserver=None):
    """scripts/clickhouse-cluster.sh config: shards is a list of lists of Servers."""
    argv = [CLUSTER_SH, "config", name]
    argv += [",".join("127.0.0.1:%d" % s.tcp for s in shard) for shard in shards]
    if zk is not None:
        argv += ["--zookeeper", "127.0.0.1:%d" % zk.port]
    if interserver is not None:
        argv += ["--interserver-port", str(interserver)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return p.stdout.decode()


def cluster_apply(target, name, variant, brokers, group, env=None):
    p = subprocess.run([CLUSTER_SH, "apply", target.dir, name, variant, brokers, nmtest.TOPIC,
                        group], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                       env=dict(os.environ, **(env or {})))
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("clickhouse-cluster.sh apply failed: %s" % out)
    nmtest.log(out.strip())


# --------------------------------------------------------------------------------------------
# The consumer group, as librdkafka inside each server sees it (cgrp debug on its stderr)

_RDK_LINE = re.compile(r"%\d\|(\d+\.\d+)\|(\w+)\|[^|]*\| \[thrd:[^]]*\]: (.*)")


def group_state(server):
    """(join state, generation, frozenset of assigned partitions, [(time, rebalance reason)])
    of the Kafka table's consumer in `server`, from librdkafka's cgrp debug lines in its
    log/stderr.log (one consumer per server: kafka_num_consumers = 1)."""
    state, gen, parts, want, got, rebalances = None, None, frozenset(), None, set(), []
    try:
        f = open(os.path.join(server.dir, "log", "stderr.log"), errors="replace")
    except OSError:
        return state, gen, parts, rebalances
    with f:
        for line in f:
            m = _RDK_LINE.match(line)
            if not m:
                continue
            ts, tag, msg = float(m.group(1)), m.group(2), m.group(3)
            if tag == "CGRPJOINSTATE":
                j = re.search(r"-> (\S+)", msg)
                state = j.group(1) if j else state
            elif tag == "JOINGROUP" and "GenerationId" in msg:
                gen = int(re.search(r"GenerationId (-?\d+)", msg).group(1))
            elif tag == "REBALANCE":
                rebalances.append((ts, msg))
            elif tag == "ASSIGNMENT" and "setting group assignment to" in msg:
                want = int(re.search(r"to (\d+) partition", msg).group(1))
                got = set()
                if want == 0:
                    parts, want = frozenset(), None
            elif tag == "ASSIGNMENT" and "clearing group assignment" in msg:
                parts, want = frozenset(), None
            elif tag == "GRPASSIGNMENT" and want is not None:
                p = re.search(r"\[(\d+)\]", msg)
                if p:
                    got.add(int(p.group(1)))
                    if len(got) == want:
                        parts, want = frozenset(got), None
    return state, gen, parts, rebalances


def wait_group(consumers, partitions, timeout=120, hold=4.0):
    """Until every consumer (Server with a Kafka table) is in the group's steady state with
    the same generation, the partitions split among them (each its own, together all), and
    it stays so for `hold` seconds (longer than librdkafka's 3 s heartbeat, which is where a
    pending rebalance would show). Returns {server name: sorted partitions}; raises on timeout.

    Why not a sleep: 18.16's Kafka engine inserts the block it has read and commits the offsets
    of the partitions it still holds; a rebalance while rows flow makes it insert rows of a
    partition it just lost, which the new owner reads again from the last commit -- rows twice.
    So nothing may be produced before the group has settled, and that is checked here."""
    deadline, since, last = time.time() + timeout, None, None
    while time.time() < deadline:
        st = {s.name: group_state(s)[:3] for s in consumers}
        gens = {g for _, g, _ in st.values()}
        split = [p for _, _, ps in st.values() for p in ps]
        ok = (all(j == "steady" for j, _, _ in st.values()) and len(gens) == 1
              and None not in gens and sorted(split) == list(range(partitions))
              and all(ps for _, _, ps in st.values()))
        if ok and st == last and time.time() - since >= hold:
            got = {n: sorted(ps) for n, (_, _, ps) in st.items()}
            nmtest.log("consumer group settled: generation %d, partitions %r" % (gens.pop(),
                                                                                  got))
            return got
        if not ok or st != last:
            since, last = time.time(), st
        time.sleep(0.5)
    raise RuntimeError("the consumer group did not settle in %d s: %r" % (timeout, last))


def rebalances_since(consumers, t0):
    """Every rebalance librdkafka logged in a consumer after time t0: [(server, time, why)]."""
    return [(s.name, ts, why) for s in consumers for ts, why in group_state(s)[3] if ts >= t0]


def wait_totals(server, table, want, timeout, still=20):
    """Until SELECT count(), sum(Packets), sum(Bytes) FROM table reaches want, or holds as many
    rows as want or more unchanged for `still` seconds (no use waiting); returns the last
    totals."""
    deadline, got, since = time.time() + timeout, None, time.time()
    while time.time() < deadline:
        try:
            now = server.count(table)
        except RuntimeError:
            now = None
        if now != got:
            got, since = now, time.time()
        if got == want or (got and got[0] >= want[0] and time.time() - since >= still):
            break
        time.sleep(1)
    return got
