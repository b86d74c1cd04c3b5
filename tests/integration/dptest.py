# SPDX-License-Identifier: BSD-3-Clause
"""Helpers of the data-plane tests (test_dataplane_*.py) that only they need: MIRROR-TRUTH.tsv and
mirror_truth.py, pcap reading/writing and frame building, network namespaces with a veth pair,
the mock broker inside a namespace, replaying a capture from a raw socket, Kafka rows summed.
Engines are started and stopped by nmtest (start_engine/run_engine, eal_args, file prefixes,
runtime directories). Python standard library only; builds on nmtest."""
import collections
import os
import shutil
import socket
import struct
import subprocess
import tempfile

import nmtest

MIRROR_TRUTH = os.path.join(nmtest.CORPORA, "MIRROR-TRUTH.tsv")
MIRROR_TRUTH_PY = os.path.join(nmtest.CORPORA, "mirror_truth.py")
MIXED = os.path.join(nmtest.CORPORA, "generated", "inputs", "mixed.pcap")


def require_mirror_corpora():
    if not os.path.isfile(MIRROR_TRUTH) or not os.path.isfile(MIRROR_TRUTH_PY):
        nmtest.skip("MIRROR-TRUTH.tsv / mirror_truth.py absent under %s" % nmtest.CORPORA)


def mirror_truth_rows():
    """MIRROR-TRUTH.tsv rows: dicts with file, path, frames, bytes, first_second, last_second."""
    rows = []
    with open(MIRROR_TRUTH) as f:
        hdr = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                r = dict(zip(hdr, line.rstrip("\n").split("\t")))
                for k in ("frames", "bytes", "first_second", "last_second"):
                    r[k] = int(r[k])
                r["path"] = os.path.join(nmtest.CORPORA, r["file"])
                rows.append(r)
    return rows


def mirror_truth_per_second(paths):
    """mirror_truth.py --per-second on paths -> {path: {second: (frames, bytes)}}."""
    p = subprocess.run(["python3", MIRROR_TRUTH_PY, "--per-second"] + list(paths),
                       stdout=subprocess.PIPE, check=True, text=True, timeout=120)
    rel = {path.split("/corpora/")[-1]: path for path in paths}
    out, cur = {}, None
    for line in p.stdout.splitlines()[1:]:
        if line.startswith("  second "):
            sec, fr, by = line[len("  second "):].split("\t")
            out[cur][int(sec)] = (int(fr), int(by))
        else:
            cur = rel.get(line.split("\t")[0], line.split("\t")[0])
            out[cur] = {}
    return out


# --------------------------------------------------------------------------------------------
# pcap files

def read_pcap(path):
    """[(ts_sec, ts_usec, data, orig_len)] of a classic little-endian pcap."""
    d = open(path, "rb").read()
    assert struct.unpack_from("<I", d)[0] in (0xA1B2C3D4, 0xA1B23C4D), path
    out, i = [], 24
    while i + 16 <= len(d):
        ts, frac, cl, ol = struct.unpack_from("<IIII", d, i)
        out.append((ts, frac, d[i + 16:i + 16 + cl], ol))
        i += 16 + cl
    return out


def write_pcap(path, frames):
    """frames: iterable of (ts_sec, ts_usec, data)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, us, data in frames:
            f.write(struct.pack("<IIII", ts, us, len(data), len(data)))
            f.write(data)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(src, dst, sport, dport, payload_len=18, smac="020000000001", dmac="020000000002",
              ident=0, payload=None):
    """Ethernet/IPv4/UDP frame; src/dst as 4 bytes; payload (bytes), else payload_len zeros."""
    if payload is None:
        payload = b"\0" * payload_len
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return bytes.fromhex(dmac + smac) + b"\x08\x00" + ip + udp


def datagram_frame(src, payload, dport=2055, dst="127.0.0.1", sport=40000, dmac="020000000002"):
    """A datagram (NetFlow, IPFIX, sFlow bytes) from src (4 bytes, any: spoofed sources need no
    address on the link) to dst:dport, as a frame for replay()."""
    return udp_frame(src, socket.inet_aton(dst), sport, dport, payload=payload, dmac=dmac)


# --------------------------------------------------------------------------------------------
# Kafka rows

def kafka_rows(bootstrap, topic):
    """Every FlowMessage on topic (decoded by nmtest's independent decoder)."""
    rows = []
    for m in nmtest.kcat_consume(bootstrap, topic):
        rows += nmtest.decode_delimited(m)
    return rows


def sums(rows, key=None):
    """(packets, bytes) over rows, or {key(row): [packets, bytes]}."""
    if key is None:
        return sum(r["Packets"] for r in rows), sum(r["Bytes"] for r in rows)
    out = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        k = key(r)
        out[k][0] += r["Packets"]
        out[k][1] += r["Bytes"]
    return {k: tuple(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Network namespaces

def have_netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = "nmdpchk%d" % os.getpid()
    ok = subprocess.run(["ip", "netns", "add", name], stderr=subprocess.DEVNULL).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
    return ok


def require_live_capture(capture):
    """The skips of a test that feeds a live engine in a namespace (Netns, NetnsBroker) with a
    corpus capture: corpora, the engine, kcat, root with ip netns, the capture (a TRUTH.tsv file
    name) and its TRUTH.tsv row. Returns (the capture's path, its TRUTH.tsv row)."""
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    if not have_netns():
        nmtest.skip("needs root and ip netns")
    path = os.path.join(nmtest.CORPORA, capture)
    truth = {t["file"]: t for t in nmtest.truth_rows()}.get(capture)
    if not os.path.exists(path) or truth is None:
        nmtest.skip("%s or its TRUTH.tsv row absent" % path)
    return path, truth


class Netns:
    """A network namespace with one veth pair inside: ns.a, ns.b; deleted on exit."""

    def __init__(self, tag, queues=1):
        self.name = "nmdp%s%d" % (tag, os.getpid())
        self.a, self.b = "nmva%d" % (os.getpid() % 100000), "nmvb%d" % (os.getpid() % 100000)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.ip("link", "add", self.a, "numtxqueues", str(queues), "numrxqueues", str(queues),
                    "type", "veth", "peer", "name", self.b, "numtxqueues", str(queues),
                    "numrxqueues", str(queues))
            for d in (self.a, self.b, "lo"):
                self.ip("link", "set", d, "up")
            # no IPv6 chatter (router solicitations, MLD) on the test link
            for d in (self.a, self.b):
                self.sh("sysctl -qw net.ipv6.conf.%s.disable_ipv6=1" % d)
        except Exception:
            self.close()
            raise

    def ip(self, *args):
        subprocess.run(["ip", "-n", self.name] + list(args), check=True)

    def sh(self, cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", cmd], check=True, **kw)

    def mac(self, dev):
        """The MAC address of dev in the namespace, as text (aa:bb:...)."""
        return subprocess.run(["ip", "netns", "exec", self.name, "cat",
                               "/sys/class/net/%s/address" % dev], stdout=subprocess.PIPE,
                              text=True, check=True).stdout.strip()

    def popen(self, argv, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name] + list(argv), **kw)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NetnsBroker(nmtest.MockBroker):
    """tests/tools/nm_mock_broker (librdkafka's mock cluster) inside a network namespace, so an
    engine in the namespace reaches it on the namespace's loopback; kcat runs there too."""

    def __init__(self, ns, timeout=20):
        self.ns = ns
        super().__init__(timeout, prefix=["ip", "netns", "exec", ns])

    def rows(self, topic):
        p = subprocess.run(["ip", "netns", "exec", self.ns, "kcat", "-C", "-b", self.bootstrap,
                            "-t", topic, "-e", "-o", "beginning", "-q", "-f", "%R%s"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("kcat: %s" % p.stderr.decode(errors="replace"))
        out, rows, off = p.stdout, [], 0
        while off < len(out):
            (n,) = struct.unpack_from(">I", out, off)
            rows += nmtest.decode_delimited(out[off + 4:off + 4 + n])
            off += 4 + n
        return rows


REPLAY = r'''
import socket, struct, sys, time
iface, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
every, pause = (int(sys.argv[4]), float(sys.argv[5])) if len(sys.argv) > 5 else (64, 0.001)
d = open(path, "rb").read(); i = 24; n = b = 0
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
while i + 16 <= len(d):
    ts, fr, cl, ol = struct.unpack_from("<IIII", d, i); data = d[i + 16:i + 16 + cl]; i += 16 + cl
    if cl > limit:
        continue
    s.send(data); n += 1; b += len(data)
    if n % every == 0:
        time.sleep(pause)
print(n, b)
'''


def replay(ns, iface, path, limit=1518, every=64, pause=0.001):
    """Send the frames of path (those <= limit bytes) out of iface inside ns, in order, from a
    raw AF_PACKET socket (what tcpreplay does), pausing pause s after every every frames.
    Returns (frames, bytes) sent."""
    p = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", REPLAY, iface, path,
                        str(limit), str(every), str(pause)], stdout=subprocess.PIPE, text=True,
                       check=True, timeout=120)
    n, b = p.stdout.split()
    return int(n), int(b)


def paced_replay(ns, iface, path):
    """replay() paced for a flood of small datagrams: every frame, a pause every 16, so a slow
    engine (an ASan build, a loaded CI machine) drains its af_packet ring; the attack tests are
    about what the engine does with the flood, not about the ring dropping it. Returns the
    frames sent."""
    return replay(ns, iface, path, limit=1 << 20, every=16, pause=0.002)[0]


# --------------------------------------------------------------------------------------------
# net_af_xdp collector ports (test_afxdp*.py): the engine on va with the project's XDP filter,
# softflowd on vb (10.77.0.1) exporting to 10.77.0.2, a neighbour entry at va's MAC

XDP_OBJ = os.path.join(nmtest.BUILD, "dpdk_app", "nm_xdp_collector.bpf.o")
COLLECTOR = {2055, 2056, 4739, 6343}
SOFTFLOWD_V9 = "generated/softflowd-v9.pcap"


def udp_dport(frame):
    """UDP destination port of an Ethernet frame (VLAN tags skipped), or None."""
    et, off = struct.unpack_from("!H", frame, 12)[0], 14
    for _ in range(2):
        if et in (0x8100, 0x88A8) and len(frame) >= off + 4:
            et, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
    if et == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 15) * 4
        if frame[off + 9] == 17 and not struct.unpack_from("!H", frame, off + 6)[0] & 0x3FFF \
                and len(frame) >= off + ihl + 4:
            return struct.unpack_from("!H", frame, off + ihl + 2)[0]
    if et == 0x86DD and len(frame) >= off + 44 and frame[off + 6] == 17:
        return struct.unpack_from("!H", frame, off + 42)[0]
    return None


def xdp_prologue(tag, objs=(XDP_OBJ,)):
    """What an AF_XDP test needs before its namespace, or a skip: the mirror corpora, the engine,
    kcat, softflowd, the XDP objects objs, root with ip netns, TRUTH.tsv's softflowd-v9 row. Also
    writes other.pcap into a new temp directory: mixed.pcap's frames (<= 1518 bytes) that are not
    UDP to a collector port. Returns (truth row, temp directory, other.pcap's path)."""
    require_mirror_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat", "softflowd")
    for obj in objs:
        if not os.path.isfile(obj):
            nmtest.skip("%s not built (needs clang and libbpf headers)" % obj)
    if not have_netns():
        nmtest.skip("needs root and ip netns")
    truth = next((t for t in nmtest.truth_rows("nf9") if t["file"] == SOFTFLOWD_V9), None)
    if truth is None:
        nmtest.skip("TRUTH.tsv has no %s row" % SOFTFLOWD_V9)
    tmp = tempfile.mkdtemp(prefix="nmdp-%s-" % tag)
    other = [f for f in read_pcap(MIXED) if len(f[2]) <= 1518 and udp_dport(f[2]) not in COLLECTOR]
    other_pcap = os.path.join(tmp, "other.pcap")
    write_pcap(other_pcap, [(f[0], f[1], f[2]) for f in other])
    return truth, tmp, other_pcap


def xdp_peer(ns, addrs=()):
    """10.77.0.1/24 and addrs (more /24 addresses) on ns.b, and 10.77.0.2 a permanent neighbour
    at ns.a's MAC, so datagrams to 10.77.0.2 leave vb towards the engine. Returns that MAC."""
    for a in ("10.77.0.1",) + tuple(addrs):
        ns.ip("addr", "add", a + "/24", "dev", ns.b)
    mac = ns.mac(ns.a)
    ns.ip("neigh", "replace", "10.77.0.2", "lladdr", mac, "dev", ns.b, "nud", "permanent")
    return mac


def xdp_config(iface, collector=""):
    """The engine's ini text: one net_af_xdp collector port on iface with XDP_OBJ; collector:
    more [collector] lines."""
    return ("[eal]\nargs = -l 0-1\n[collector]\nports = 2055,2056,4739,6343\n" + collector +
            "[port.xdp]\ndevice = net_af_xdp0,iface=%s,start_queue=0,queue_count=1,"
            "xdp_prog=%s\nrole = collector\n" % (iface, XDP_OBJ))


def softflowd_v9(ns, cwd):
    """softflowd in ns reading mixed.pcap, exporting NetFlow v9 to 10.77.0.2:2055 (the source of
    TRUTH.tsv's softflowd-v9 row); returns its CompletedProcess."""
    return subprocess.run(["ip", "netns", "exec", ns.name, "softflowd", "-d", "-r", MIXED, "-n",
                           "10.77.0.2:2055", "-v", "9", "-p", "sfd.pid", "-c", "sfd.ctl"], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)


def xdp_checks(fail, s, rows, sfd, truth, kernel, sent):
    """What every AF_XDP test asserts at the end, each failure passed to fail(msg): softflowd's
    rows (sfd: packets, bytes) equal TRUTH.tsv's softflowd-v9 row; nothing lost and every row of
    the summary s on the topic (rows); the packet socket on va (kernel: PacketCounter.count())
    saw every replayed frame (sent) and no NetFlow, which XDP must not pass to the kernel."""
    if sfd != (truth["packets"], truth["bytes"]):
        fail("Kafka: softflowd's rows (packets, bytes) %r, softflowd-v9 truth %d / %d" % (
            sfd, truth["packets"], truth["bytes"]))
    if s["lost_records"] or s["rows"] != len(rows):
        fail("lost %d, rows %d, on the topic %d" % (s["lost_records"], s["rows"], len(rows)))
    if kernel != (sent, 0):
        fail("the kernel saw %d frames (%d NetFlow), the replay sent %d" % (kernel + (sent,)))


PACKET_COUNT = r'''
import socket, sys, time, select
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
print("ready", flush=True)
n = nf = 0
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    r, _, _ = select.select([s], [], [], 0.2)
    if not r:
        continue
    d, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    n += 1
    # NetFlow to 2055 over IPv4: UDP at 34, destination port at 36
    if len(d) > 38 and d[12:14] == b"\x08\x00" and d[23] == 17 and d[36:38] == b"\x08\x07":
        nf += 1
print(n, nf, flush=True)
'''


class PacketCounter:
    """A packet socket on ns.a for seconds s (what XDP passed to the kernel): count() -> (frames
    received, NetFlow to 2055 among them) once it ends."""

    def __init__(self, ns, seconds):
        self.proc = ns.popen(["python3", "-c", PACKET_COUNT, ns.a, str(seconds)],
                             stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def count(self):
        return tuple(int(x) for x in self.proc.communicate(timeout=60)[0].split())
