# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for NetMeta's integration tests (Python standard library only).

- where things are: build dir, source dir, corpora (env NM_BUILD, NM_SOURCE, NM_CORPORA, set by
  meson; otherwise ./build, ., ../shared/corpora relative to the source tree);
- TRUTH.tsv rows as dicts;
- the mock Kafka broker (build/tests/tools/nm_mock_broker) and its bootstrap address;
- reading a topic with kcat;
- an independent protobuf decoder for length-delimited FlowMessages (field numbers of NetMeta's
  FlowMessage, written out below, not generated from proto/flow.proto), checked against protoc;
- the engine: EAL arguments and file prefixes (eal_args), start and stop (start_engine ->
  Engine, run_engine -> EngineRun), its --summary-json and output, the EAL runtime directory
  removed after every run;
- a private ClickHouse server through scripts/clickhouse.sh;
- skip(reason): exit 77, meson's "skipped".
"""
import collections
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))

SKIP_CODE = 77


def skip(reason):
    """End the test as skipped (meson counts exit code 77 as SKIP)."""
    print("SKIP: %s" % reason, flush=True)
    sys.exit(SKIP_CODE)


def exit_on_signals():
    """Turn SIGTERM/SIGHUP/SIGINT into SystemExit so that try/finally and with-blocks clean up
    (meson sends SIGTERM on timeout; the servers run in sessions of their own and would outlive
    the test otherwise)."""
    def handler(sig, frame):
        raise SystemExit("terminated by signal %d" % sig)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)


def log(*args):
    print(*args, flush=True)


# --------------------------------------------------------------------------------------------
# Locations

def _first_dir(*cands):
    for c in cands:
        if c and os.path.isdir(c):
            return os.path.abspath(c)
    return None


SOURCE = os.path.abspath(os.environ.get("NM_SOURCE") or os.path.join(_HERE, "..", ".."))
BUILD = _first_dir(os.environ.get("NM_BUILD"), os.path.join(SOURCE, "build"), "build", ".") or "."
CORPORA = (os.environ.get("NM_CORPORA")
           or _first_dir(os.path.join(SOURCE, "..", "shared", "corpora"), "../shared/corpora")
           or os.path.join(SOURCE, "..", "shared", "corpora"))
CORPORA = os.path.abspath(CORPORA)
# NM_ENGINE overrides the engine's path (e.g. an installed build).
ENGINE = os.environ.get("NM_ENGINE") or os.path.join(BUILD, "dpdk_app", "netmeta")
STATS = os.path.join(SOURCE, "scripts", "netmeta-stats")
# NM_MOCK_BROKER overrides the path (any program that prints "BOOTSTRAP host:port" first).
MOCK_BROKER = os.environ.get("NM_MOCK_BROKER") or os.path.join(BUILD, "tests", "tools", "nm_mock_broker")
CLICKHOUSE_SH = os.path.join(SOURCE, "scripts", "clickhouse.sh")
TOPIC = "flow-messages"


def require_corpora():
    """Skip the test when the corpora (TRUTH.tsv) are not there."""
    if not os.path.isfile(os.path.join(CORPORA, "TRUTH.tsv")):
        skip("corpus directory %s (TRUTH.tsv) is absent" % CORPORA)


def require_programs(*names):
    for n in names:
        if os.path.sep in n:
            if not os.access(n, os.X_OK):
                skip("%s is not built" % n)
        elif shutil.which(n) is None:
            skip("%s is not installed" % n)


# --------------------------------------------------------------------------------------------
# Ground truth

TRUTH_INT = ("datagrams", "records", "packets", "bytes", "scaled_packets", "scaled_bytes",
             "malformed")


def truth_rows(protocols=None):
    """TRUTH.tsv as a list of dicts; integer columns as int, "path" = absolute capture path,
    "udp_ports" kept as text (comma separated). protocols: keep rows whose protocols column
    equals this (e.g. "nf5")."""
    rows = []
    with open(os.path.join(CORPORA, "TRUTH.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if not line.strip():
                continue
            r = dict(zip(header, line.rstrip("\n").split("\t")))
            for k in TRUTH_INT:
                if k in r:
                    r[k] = int(r[k])
            r["path"] = os.path.join(CORPORA, r["file"])
            if protocols is None or r["protocols"] == protocols:
                rows.append(r)
    return rows


# --------------------------------------------------------------------------------------------
# Processes

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kill_group(proc, timeout=10):
    """SIGTERM the process group of proc (started with start_new_session=True), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


class MockBroker:
    """librdkafka's mock cluster as a process: with MockBroker() as b: b.bootstrap"""

    def __init__(self, timeout=20, prefix=(), args=()):
        """prefix: words put before the broker's path (e.g. ip netns exec NS); args: its
        options (e.g. -p 4)."""
        if not os.access(MOCK_BROKER, os.X_OK):
            skip("mock broker %s is not built" % MOCK_BROKER)
        # stderr to a named file, read through a file of our own (log()): nobody reads a pipe
        # once the bootstrap line is in, and seeking a shared descriptor would move the
        # broker's write position
        self.errfile = tempfile.NamedTemporaryFile(prefix="nmtest-broker-", delete=False)
        self.proc = subprocess.Popen(list(prefix) + [MOCK_BROKER] + list(args),
                                     stdout=subprocess.PIPE, stderr=self.errfile,
                                     start_new_session=True)
        self.bootstrap = None
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline and not line.endswith(b"\n"):
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    break
                line += c
            elif self.proc.poll() is not None:
                break
        words = line.decode(errors="replace").split()
        if len(words) != 2 or words[0] != "BOOTSTRAP":
            err = self.log()
            self.stop()
            raise RuntimeError("mock broker did not print BOOTSTRAP (got %r; stderr %r)"
                               % (line, err[-500:]))
        self.bootstrap = words[1]

    def log(self):
        """What the broker wrote to stderr so far."""
        with open(self.errfile.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        kill_group(self.proc)
        try:
            os.unlink(self.errfile.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def kcat_consume(bootstrap, topic=TOPIC, timeout=60):
    """Every message of topic, from the beginning to the current end, as a list of bytes.
    kcat -f '%R%s' writes each message as a 4-byte big-endian length and the payload."""
    p = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-o", "beginning",
                        "-q", "-f", "%R%s"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("kcat failed (%d): %s" % (p.returncode, p.stderr.decode(errors="replace")))
    out, msgs, off = p.stdout, [], 0
    while off < len(out):
        if off + 4 > len(out):
            raise ValueError("kcat output: truncated length at %d" % off)
        (n,) = struct.unpack_from(">I", out, off)
        off += 4
        if off + n > len(out):
            raise ValueError("kcat output: message of %d bytes truncated at %d" % (n, off))
        msgs.append(out[off:off + n])
        off += n
    return msgs


# --------------------------------------------------------------------------------------------
# Protobuf: an independent decoder of NetMeta's FlowMessage

# number -> (name, kind); kind "u" varint integer, "b" bytes, "bool"
FLOW_FIELDS = {
    1: ("Type", "u"), 2: ("TimeReceived", "u"), 3: ("SamplingRate", "u"), 4: ("SequenceNum", "u"),
    5: ("TimeFlowEnd", "u"), 6: ("SrcAddr", "b"), 7: ("DstAddr", "b"), 9: ("Bytes", "u"),
    10: ("Packets", "u"), 11: ("SamplerAddress", "b"), 12: ("NextHop", "b"),
    13: ("NextHopAS", "u"), 14: ("SrcAS", "u"), 15: ("DstAS", "u"), 16: ("SrcNet", "u"),
    17: ("DstNet", "u"), 18: ("InIf", "u"), 19: ("OutIf", "u"), 20: ("Proto", "u"),
    21: ("SrcPort", "u"), 22: ("DstPort", "u"), 23: ("IPTos", "u"), 24: ("ForwardingStatus", "u"),
    25: ("IPTTL", "u"), 26: ("TCPFlags", "u"), 27: ("SrcMac", "u"), 28: ("DstMac", "u"),
    29: ("VlanId", "u"), 30: ("Etype", "u"), 31: ("IcmpType", "u"), 32: ("IcmpCode", "u"),
    33: ("SrcVlan", "u"), 34: ("DstVlan", "u"), 35: ("FragmentId", "u"),
    36: ("FragmentOffset", "u"), 37: ("IPv6FlowLabel", "u"), 38: ("TimeFlowStart", "u"),
    39: ("IngressVrfID", "u"), 40: ("EgressVrfID", "u"), 41: ("BiFlowDirection", "u"),
    42: ("FlowDirection", "u"), 53: ("HasMPLS", "bool"), 54: ("MPLSCount", "u"),
    55: ("MPLS1TTL", "u"), 56: ("MPLS1Label", "u"), 57: ("MPLS2TTL", "u"), 58: ("MPLS2Label", "u"),
    59: ("MPLS3TTL", "u"), 60: ("MPLS3Label", "u"), 61: ("MPLSLastTTL", "u"),
    62: ("MPLSLastLabel", "u"), 70: ("ObservationDomainID", "u"),
    2000: ("Flows", "u"),   # the engine's merged-records count (proto/flow.proto)
}
FLOW_TYPES = {0: "FLOWUNKNOWN", 1: "SFLOW_5", 2: "NETFLOW_V5", 3: "NETFLOW_V9", 4: "IPFIX"}


class DecodeError(ValueError):
    pass


def read_varint(buf, off):
    """(value, new offset); at most 10 bytes, as protobuf allows."""
    val = shift = 0
    for i in range(10):
        if off >= len(buf):
            raise DecodeError("varint truncated at %d" % off)
        b = buf[off]
        off += 1
        val |= (b & 0x7F) << shift
        if not b & 0x80:
            if val >= 1 << 64:
                raise DecodeError("varint above 64 bits")
            return val, off
        shift += 7
    raise DecodeError("varint longer than 10 bytes at %d" % (off - 10))


def decode_flow_message(buf):
    """One FlowMessage (no length prefix) -> dict with every field of FLOW_FIELDS (proto3
    defaults for absent ones) and "_unknown": list of (number, wire type) not in FLOW_FIELDS."""
    msg = {name: (b"" if kind == "b" else (False if kind == "bool" else 0))
           for name, kind in FLOW_FIELDS.values()}
    msg["_unknown"] = []
    off = 0
    while off < len(buf):
        key, off = read_varint(buf, off)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise DecodeError("field number 0")
        if wt == 0:
            val, off = read_varint(buf, off)
        elif wt == 2:
            n, off = read_varint(buf, off)
            if off + n > len(buf):
                raise DecodeError("field %d: %d bytes truncated" % (num, n))
            val, off = bytes(buf[off:off + n]), off + n
        elif wt == 1:
            if off + 8 > len(buf):
                raise DecodeError("fixed64 truncated")
            val, off = struct.unpack_from("<Q", buf, off)[0], off + 8
        elif wt == 5:
            if off + 4 > len(buf):
                raise DecodeError("fixed32 truncated")
            val, off = struct.unpack_from("<I", buf, off)[0], off + 4
        else:
            raise DecodeError("field %d: unsupported wire type %d" % (num, wt))
        if num not in FLOW_FIELDS:
            msg["_unknown"].append((num, wt))
            continue
        name, kind = FLOW_FIELDS[num]
        want = 2 if kind == "b" else 0
        if wt != want:
            raise DecodeError("field %d (%s): wire type %d, expected %d" % (num, name, wt, want))
        if kind == "bool":
            val = bool(val)
        elif kind == "u" and name not in ("TimeReceived", "SamplingRate", "TimeFlowEnd", "Bytes",
                                          "Packets", "SrcMac", "DstMac", "TimeFlowStart",
                                          "Flows"):
            if val >= 1 << 32:
                # a uint32 field: protobuf truncates; flag it, the engine should never send it
                raise DecodeError("field %d (%s): %d does not fit uint32" % (num, name, val))
        msg[name] = val
    return msg


def decode_delimited(buf):
    """A Kafka message of length-delimited FlowMessages -> list of dicts."""
    out, off = [], 0
    while off < len(buf):
        n, off = read_varint(buf, off)
        if off + n > len(buf):
            raise DecodeError("message of %d bytes truncated at %d of %d" % (n, off, len(buf)))
        out.append(decode_flow_message(buf[off:off + n]))
        off += n
    return out


def decode_json_lines(buf):
    """A Kafka message of JSON lines -> list of dicts."""
    return [json.loads(line) for line in buf.decode("utf-8").split("\n") if line.strip()]


def _pb_text_value(v):
    if isinstance(v, bytes):
        return '"' + "".join("\\%03o" % b for b in v) + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def protoc_selfcheck():
    """Check decode_delimited against protoc's encoder on messages that use every field.
    Returns None when it agrees, "skipped: ..." without protoc; raises AssertionError otherwise."""
    if shutil.which("protoc") is None:
        return "skipped: protoc not installed"
    samples = []
    big = {}
    for num, (name, kind) in FLOW_FIELDS.items():
        if kind == "b":
            big[name] = bytes([0] * 10 + [0xFF, 0xFF, 10, 0, 0, num & 0xFF])
        elif kind == "bool":
            big[name] = True
        else:
            big[name] = num * 1000003
    big["Type"] = 2
    big["Bytes"] = (1 << 64) - 1
    big["TimeReceived"] = 1700000000
    samples.append(big)
    samples.append({"Type": 4, "Packets": 1, "SrcAddr": bytes.fromhex("20010db8" + "00" * 11 + "01")})
    samples.append({})  # every field at its default: an empty message
    blob = b""
    for s in samples:
        text = "\n".join("%s: %s" % (k, _pb_text_value(v)) for k, v in s.items())
        p = subprocess.run(["protoc", "--encode=netmeta.FlowMessage",
                            "--proto_path=" + os.path.join(SOURCE, "proto"), "flow.proto"],
                           input=text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise AssertionError("protoc --encode failed: %s" % p.stderr.decode(errors="replace"))
        enc = p.stdout
        n, pre = len(enc), b""
        while True:
            b = n & 0x7F
            n >>= 7
            pre += bytes([b | (0x80 if n else 0)])
            if not n:
                break
        blob += pre + enc
    got = decode_delimited(blob)
    assert len(got) == len(samples), "decoded %d messages of %d" % (len(got), len(samples))
    for s, g in zip(samples, got):
        assert g["_unknown"] == [], "unknown fields %r" % g["_unknown"]
        for num, (name, kind) in FLOW_FIELDS.items():
            default = b"" if kind == "b" else (False if kind == "bool" else 0)
            assert g[name] == s.get(name, default), "%s: protoc wrote %r, decoded %r" % (
                name, s.get(name, default), g[name])
    return None


def addr_text(b):
    """16-byte address -> text; IPv4-mapped as ::ffff:a.b.c.d."""
    if len(b) != 16:
        return "<%d bytes>" % len(b)
    if b[:12] == bytes(10) + b"\xff\xff":
        return "::ffff:" + socket.inet_ntop(socket.AF_INET, b[12:])
    return socket.inet_ntop(socket.AF_INET6, b)


# --------------------------------------------------------------------------------------------
# The engine

_prefix_no = 0


def file_prefix(tag="nmtest"):
    """A DPDK --file-prefix of its own for every engine run of this test process."""
    global _prefix_no
    _prefix_no += 1
    return "%s%d_%d" % (tag, os.getpid(), _prefix_no)


def hugepages_free():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def eal_args(huge=False, in_memory=True, prefix=None):
    """EAL arguments for a test run, with a file prefix of its own (prefix, else a new one).
    huge: use hugepages when the machine has 256 free (faster start, as in production), else
    --no-huge -m 512. in_memory=False keeps the runtime directory (and the telemetry socket) of
    the prefix. (The engine's default [eal] args already hold -l 0-1; giving -l twice stops
    EAL.)"""
    prefix = prefix or file_prefix()
    mem = ["--in-memory"] if in_memory else []
    if huge and hugepages_free() >= 256:
        return mem + ["--file-prefix=" + prefix]
    return ["--no-huge", "-m", "512"] + (mem if in_memory else ["--no-shconf"]) + \
        ["--file-prefix=" + prefix]


def prefix_of(argv):
    for a in argv:
        if a.startswith("--file-prefix="):
            return a.split("=", 1)[1]
    return None


def remove_runtime_dir(argv):
    """EAL leaves /var/run/dpdk/<file-prefix> (telemetry socket) behind even with --in-memory
    when a run is killed; thousands of test runs would pile them up. This run's alone."""
    p = prefix_of(argv)
    if p:
        shutil.rmtree(os.path.join("/var/run/dpdk", p), ignore_errors=True)


def telemetry(prefix, cmd, timeout=30):
    """The answer to telemetry command cmd (e.g. "/netmeta/stats") of the engine with file prefix
    prefix, through scripts/netmeta-stats --json, as a dict; None while it does not answer."""
    p = subprocess.run([sys.executable, STATS, "--prefix", prefix, "--json", cmd],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout)
    if p.returncode != 0:
        return None
    try:
        return json.loads(p.stdout)[cmd]
    except (ValueError, KeyError):
        return None


def vm_hwm_kb(pid):
    """VmHWM (peak resident set, KiB) of process pid; 0 once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class EngineRun:
    """A finished engine run: exit status, --summary-json as a dict (None when absent), the
    combined stdout/stderr, wall seconds, argv."""

    def __init__(self, rc, summary, output, seconds, argv, peak_rss_kb=None):
        self.rc, self.summary, self.output, self.seconds, self.argv = rc, summary, output, seconds, argv
        self.peak_rss_kb = peak_rss_kb

    def tail(self, n=30):
        return "\n".join(self.output.splitlines()[-n:])


class Engine:
    """A running engine (start_engine): its output goes to a file read by output() and
    wait_output(); finish() waits for the exit and returns an EngineRun; kill() ends it."""

    def __init__(self, argv, summary_path, tmp, t0=None):
        self.argv, self.summary_path, self.tmp = argv, summary_path, tmp
        self.prefix = prefix_of(argv)
        self.t0 = t0 or time.time()
        self._out = tempfile.TemporaryFile(dir=tmp)
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def output(self):
        self._out.seek(0)
        return self._out.read().decode(errors="replace")

    def wait_output(self, text, count=1, timeout=30):
        """Wait until the engine printed text count times; False if it exited or time ran
        out."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.output().count(text) >= count:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def wait_started(self, timeout=60):
        """Until the engine says its lcores poll; raise with its output if it exits first or
        time runs out."""
        if not self.wait_output("polls", timeout=timeout):
            raise RuntimeError("engine did not start:\n" + self.output()[-3000:])

    def peak_rss_kb(self, interval=0.05, timeout=None):
        """Sample the engine's VmHWM (peak resident set, KiB) every interval s until it exits
        (or timeout s passed: finish() then deals with it); the highest seen."""
        peak, deadline = 0, None if timeout is None else time.time() + timeout
        while self.proc.poll() is None and (deadline is None or time.time() < deadline):
            peak = max(peak, vm_hwm_kb(self.pid))
            time.sleep(interval)
        return peak

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        """Leaving a with block on an exception kills the engine (the exception goes on); on a
        normal exit the engine runs on until finish()."""
        if exc_type is not None:
            self.kill()
        return False

    def poll(self):
        return self.proc.poll()

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self, timeout=10):
        """SIGTERM the engine (a graceful stop), SIGKILL after timeout s."""
        kill_group(self.proc, timeout)

    def finish(self, timeout=180, t0=None):
        """Wait for the exit (kill the group and raise after timeout s), read the summary,
        remove the temp and EAL runtime directories. t0: start of the run's seconds (default:
        the start of the process)."""
        try:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                raise RuntimeError("engine did not finish within %d s: %s\n%s" % (
                    timeout, " ".join(self.argv), self.output()[-3000:]))
            output = self.output()
            summary = None
            if os.path.exists(self.summary_path):
                with open(self.summary_path) as f:
                    summary = json.load(f)
        finally:
            kill_group(self.proc)
            self._out.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            remove_runtime_dir(self.argv)
        return EngineRun(self.proc.returncode, summary, output, time.time() - (t0 or self.t0),
                         self.argv)


def start_engine(brokers=None, topic=TOPIC, pcaps=(), mirror_pcaps=(), fmt=None, ports=None,
                 config=None, config_text=None, sets=(), args=(), eal=(), huge=False,
                 in_memory=True, prefix=None, netns=None, quiet=True, summary_path=None):
    """Start the engine; returns an Engine. brokers: kafka.brokers (None: the config's);
    pcaps/mirror_pcaps: --pcap/--mirror-pcap files; fmt: kafka.format; ports: collector UDP
    ports ("2055" or "2055,9990"); config: an ini file for -c, config_text: the ini's text;
    sets: --set options (they win over the config and over quiet's); args: more engine options
    (e.g. --duration 6); eal: more EAL arguments after eal_args(huge, in_memory, prefix); netns:
    run inside that network namespace; quiet: engine.stats_interval_ms=0 (no console stats)."""
    tmp = tempfile.mkdtemp(prefix="nmtest-engine-")
    summary_path = summary_path or os.path.join(tmp, "summary.json")
    argv = (["ip", "netns", "exec", netns] if netns else []) + [ENGINE]
    if config_text is not None:
        config = os.path.join(tmp, "netmeta.ini")
        with open(config, "w") as f:
            f.write(config_text)
    if config:
        argv += ["-c", config]
    opts = []
    if brokers is not None:
        opts.append("kafka.brokers=" + brokers)
    if fmt is not None:
        opts.append("kafka.format=" + fmt)
    if topic is not None:
        opts.append("kafka.topic=" + topic)
    if ports:
        opts.append("collector.ports=" + ports)
    if quiet:
        opts.append("engine.stats_interval_ms=0")
    for o in opts + list(sets):
        argv += ["--set", o]
    for p in ([pcaps] if isinstance(pcaps, str) else pcaps):
        argv += ["--pcap", p]
    for p in mirror_pcaps:
        argv += ["--mirror-pcap", p]
    argv += list(args) + ["--summary-json", summary_path, "--"] + \
        eal_args(huge, in_memory, prefix) + list(eal)
    try:
        return Engine(argv, summary_path, tmp)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_engine(pcaps=(), brokers=None, fmt="protobuf", ports=None, sets=(), timeout=180,
               topic=TOPIC, config=None, **kw):
    """Run the engine to its end (offline on pcaps, path or list; or until --duration or
    whatever the test arranges). Returns EngineRun. The options are start_engine's."""
    return start_engine(brokers, topic, pcaps=pcaps, fmt=fmt, ports=ports, config=config,
                        sets=sets, **kw).finish(timeout)


# --------------------------------------------------------------------------------------------
# ClickHouse (scripts/clickhouse.sh)

ADDR_COLS = ("SamplerAddress", "SrcAddr", "DstAddr", "NextHop")


def addr16(text):
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        return ("bad", text)


def row_key(d, cols):
    """A row (FlowMessage JSON or flows_raw text) as a comparable tuple of the columns cols:
    addresses as 16 bytes, everything else as integers."""
    return tuple(addr16(d[c]) if c in ADDR_COLS else int(d[c]) for c in cols)


class ClickHouse:
    """A private clickhouse-server in a temp dir, on loopback, on free ports."""

    def __init__(self, start_timeout=90):
        if shutil.which("clickhouse-server") is None or shutil.which("clickhouse-client") is None:
            skip("clickhouse-server/clickhouse-client not installed")
        self.dir = tempfile.mkdtemp(prefix="nmtest-ch-")
        self.http, self.tcp = free_port(), free_port()
        while self.tcp == self.http:
            self.tcp = free_port()
        self.pid = None
        env = dict(os.environ, NM_CH_START_TIMEOUT=str(start_timeout))
        p = subprocess.run([CLICKHOUSE_SH, "start", self.dir, str(self.http), str(self.tcp)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=start_timeout + 30)
        pidfile = os.path.join(self.dir, "pid")
        if os.path.exists(pidfile):
            self.pid = int(open(pidfile).read().strip())
        if p.returncode != 0:
            self.stop()
            raise RuntimeError("clickhouse.sh start failed: %s" % p.stderr.decode(errors="replace"))
        self.pid = int(p.stdout.decode().split()[-1])

    def apply(self, variant, brokers, topic=TOPIC, group="netmeta"):
        p = subprocess.run([CLICKHOUSE_SH, "apply", self.dir, variant, brokers, topic, group],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("clickhouse.sh apply failed: %s" % p.stdout.decode(errors="replace"))

    def query(self, sql, timeout=60):
        p = subprocess.run(["clickhouse-client", "--host", "127.0.0.1", "--port", str(self.tcp),
                            "--query", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("query failed: %s: %s" % (sql, p.stderr.decode(errors="replace")))
        return [line.split("\t") for line in p.stdout.decode().splitlines()]

    def totals(self):
        """(count(), sum(Packets), sum(Bytes)) of flows_raw as integers."""
        return tuple(int(x) for x in self.query(
            "SELECT count(), sum(Packets), sum(Bytes) FROM flows_raw")[0])

    def row_counter(self, cols):
        """flows_raw as a Counter of row_key(row, cols), to compare with the topic's rows."""
        sel = ", ".join("IPv6NumToString(%s)" % c if c in ADDR_COLS else c for c in cols)
        return collections.Counter(row_key(dict(zip(cols, r)), cols)
                                   for r in self.query("SELECT %s FROM flows_raw" % sel))

    def log_tail(self, n=40, errors=True):
        f = os.path.join(self.dir, "log",
                         "clickhouse-server.err.log" if errors else "clickhouse-server.log")
        try:
            with open(f, errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, keep_dir=False):
        if self.dir is None:
            return
        subprocess.run([CLICKHOUSE_SH, "stop", self.dir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        if self.pid is not None:
            # the server runs in its own session (setsid): end whatever is left of its group
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(1)
        if keep_dir or os.environ.get("NM_KEEP_TMP"):
            print("clickhouse dir kept: %s" % self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    # python3 nmtest.py: check the protobuf decoder against protoc and show where things are.
    print("source %s\nbuild %s\ncorpora %s\nengine %s\nmock broker %s" % (
        SOURCE, BUILD, CORPORA, ENGINE, MOCK_BROKER))
    r = protoc_selfcheck()
    print("protoc self-check:", r or "decoder agrees with protoc --encode")
