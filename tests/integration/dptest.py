# SPDX-License-Identifier: BSD-3-Clause
"""Helpers of the data-plane tests (test_dataplane_*.py) that only they need: MIRROR-TRUTH.tsv and
mirror_truth.py, pcap reading/writing and frame building, network namespaces with a veth pair,
the mock broker inside a namespace, replaying a capture from a raw socket, Kafka rows summed.
Engines are started and stopped by nmtest (start_engine/run_engine, eal_args, file prefixes,
runtime directories). Python standard library only; builds on nmtest."""
import collections
import os
import shutil
import struct
import subprocess

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
              ident=0):
    """Ethernet/IPv4/UDP frame; src/dst as 4 bytes."""
    udp = struct.pack("!HHHH", sport, dport, 8 + payload_len, 0) + b"\0" * payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return bytes.fromhex(dmac + smac) + b"\x08\x00" + ip + udp


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
d = open(path, "rb").read(); i = 24; n = b = 0
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
while i + 16 <= len(d):
    ts, fr, cl, ol = struct.unpack_from("<IIII", d, i); data = d[i + 16:i + 16 + cl]; i += 16 + cl
    if cl > limit:
        continue
    s.send(data); n += 1; b += len(data)
    if n % 64 == 0:
        time.sleep(0.001)
print(n, b)
'''


def replay(ns, iface, path, limit=1518):
    """Send the frames of path (those <= limit bytes) out of iface inside ns, in order, from a
    raw AF_PACKET socket (what tcpreplay does). Returns (frames, bytes) sent."""
    p = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", REPLAY, iface, path,
                        str(limit)], stdout=subprocess.PIPE, text=True, check=True, timeout=120)
    n, b = p.stdout.split()
    return int(n), int(b)
