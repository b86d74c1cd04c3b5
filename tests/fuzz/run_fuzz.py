#!/usr/bin/env python3
"""Suite `fuzz`: build the libFuzzer targets with clang and run each for a bounded time.

    run_fuzz.py [--seconds S] [--targets nf5,sflow,...] [--keep DIR]

The project's main build is usually gcc, and libFuzzer needs clang, so this script configures a
second build of its own (CC=clang, -Dfuzz=enabled) under $NM_BUILD/fuzz-clang and builds only
the fuzz targets there. Every tests/fuzz/fuzz_<name>.c is a target and runs, unless --targets
names a subset. Seeds come from real files:
  nf5, nf9, ipfix, sflow  the UDP payloads of every export capture in TRUTH.tsv whose protocol
                          the target decodes (all go through the protocol dispatcher, so any
                          datagram is a useful input)
  spool                   spool segments in the engine's format (spool.h) holding the corpus'
                          datagrams as payloads: whole, torn, with a commit file, split in two
  config                  the shipped netmeta.ini, the README's [kafka] example, and both with
                          --set strings after a NUL (the target's input format)
  pkt                     whole frames (Ethernet) of the export captures in TRUTH.tsv and of
                          the port-mirror captures in MIRROR-TRUTH.tsv, deduplicated, at most
                          FRAMES_PER_FILE a file: the frames the classifier and the mirror sampler
                          see
  any other target        every UDP payload of the corpus
A target that crashes, leaks, trips a sanitizer or runs out of memory fails the test; its
reproducer stays in the work directory. Prints executions and coverage per target.
"""
import argparse
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

SOURCE = os.environ.get("NM_SOURCE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("NM_BUILD", os.path.join(SOURCE, "build"))
CORPORA = os.environ.get("NM_CORPORA", os.path.join(SOURCE, "..", "shared", "corpora"))
# Targets whose code under test reports every refused input on stderr (a corrupt spool region,
# iniparser's syntax errors): libFuzzer closes their stderr (-close_fd_mask=2), its own and the
# sanitizers' reports still come through.
QUIET_TARGETS = {"spool", "config"}
TARGET_PROTOS = {"nf5": {"nf5"}, "nf9": {"nf9"}, "ipfix": {"ipfix"}, "sflow": {"sflow5"}}
FRAMES_PER_FILE = 200


def pcap_frames(path):
    """(link type, frame) of a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        return
    link = struct.unpack(end + "I", data[20:24])[0] & 0xFFFF
    off = 24
    while off + 16 <= len(data):
        caplen = struct.unpack(end + "I", data[off + 8:off + 12])[0]
        yield link, data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def write_frame_seeds(dest):
    """Inputs of fuzz_pkt: Ethernet frames of every capture the corpus lists."""
    files = []
    for tsv in ("TRUTH.tsv", "MIRROR-TRUTH.tsv"):
        path = os.path.join(CORPORA, tsv)
        if os.path.exists(path):
            with open(path) as f:
                f.readline()
                files += [line.split("\t")[0] for line in f if line.strip()]
    seen = set()
    for name in files:
        n = 0
        for link, frame in pcap_frames(os.path.join(CORPORA, name)):
            if link != 1 or frame in seen:
                continue
            seen.add(frame)
            seed = "%s.%d" % (re.sub(r"[^A-Za-z0-9_.-]", "_", name), n)
            with open(os.path.join(dest, seed), "wb") as o:
                o.write(frame)
            n += 1
            if n == FRAMES_PER_FILE:
                break
    return len(seen)


def udp_payloads(path):
    """UDP payloads of a classic pcap file (Ethernet/VLAN, Linux cooked, raw IP, BSD loopback)."""
    for link, frame in pcap_frames(path):
        if link == 1:
            et, l3 = struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0, 14
            while et in (0x8100, 0x88A8) and len(frame) >= l3 + 4:
                et = struct.unpack("!H", frame[l3 + 2:l3 + 4])[0]
                l3 += 4
        elif link == 113:
            et, l3 = struct.unpack("!H", frame[14:16])[0] if len(frame) >= 16 else 0, 16
        elif link in (12, 101, 228, 229):
            et, l3 = {4: 0x0800, 6: 0x86DD}.get(frame[0] >> 4 if frame else 0, 0), 0
        elif link == 0:
            et, l3 = {2: 0x0800, 24: 0x86DD, 28: 0x86DD, 30: 0x86DD}.get(
                struct.unpack("<I", frame[:4])[0] if len(frame) >= 4 else 0, 0), 4
        else:
            return
        ip = frame[l3:]
        if et == 0x0800 and len(ip) >= 20 and ip[9] == 17:
            udp = ip[(ip[0] & 15) * 4:]
        elif et == 0x86DD and len(ip) >= 40 and ip[6] == 17:
            udp = ip[40:]
        else:
            continue
        if len(udp) > 8:
            yield udp[8:]


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), as nm_crc32c."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def spool_entry(seq, payload, rows=1, key=0):
    """One spool entry (spool.h): 48-byte header, CRC32C over header bytes 0..43 and payload."""
    h = struct.pack("<IIQIIQQI", 0x52534D4E, len(payload), seq, rows, key, rows * 3, len(payload), 0)
    return h + struct.pack("<I", crc32c(h + payload)) + payload


def corpus_payloads(protos=None):
    """(file, index, UDP payload) of the corpus captures, of the given protocols (None: all)."""
    with open(os.path.join(CORPORA, "TRUTH.tsv")) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(head, line.rstrip("\n").split("\t")))
            if protos is not None and not set(row["protocols"].split(",")) & protos:
                continue
            for i, p in enumerate(udp_payloads(os.path.join(CORPORA, row["file"]))):
                yield row["file"], i, p


def write_spool_seeds(dest):
    """Inputs of fuzz_spool: flags byte, [commit 20 bytes], [split 2 bytes], segment bytes."""
    pays = [p for _, _, p in corpus_payloads()][:64]
    seg = b"NMSPOOL1" + b"".join(spool_entry(i + 1, p, rows=1 + i % 7, key=i % 4)
                                 for i, p in enumerate(pays))
    first = 8 + 48 + len(pays[0]) if pays else 8
    commit = struct.pack("<QQ", 1, first)
    commit += struct.pack("<I", crc32c(commit))
    seeds = {
        "segment": b"\x00" + seg,
        "segment_torn": b"\x00" + seg[:len(seg) - 17],
        "segment_flipped": b"\x00" + seg[:200] + bytes([seg[200] ^ 0x40]) + seg[201:],
        "commit_segment": b"\x01" + commit + seg,
        "two_segments": b"\x02" + struct.pack(">H", first) + seg[:first] + b"NMSPOOL1" + seg[first:],
        "dead_letter": b"\x05" + commit + seg,
    }
    for name, data in seeds.items():
        with open(os.path.join(dest, name), "wb") as o:
            o.write(data)
    return len(seeds)


def write_config_seeds(dest):
    """Inputs of fuzz_config: ini text, then NUL-separated --set strings."""
    with open(os.path.join(SOURCE, "netmeta.ini"), "rb") as f:
        shipped = f.read()
    example = b""
    with open(os.path.join(SOURCE, "README.md"), "rb") as f:
        readme = f.read()
    m = re.search(rb"```ini\n(\[kafka\].*?)```", readme, re.S)
    if m:
        example = m.group(1)
    sets = b"\0".join([b"kafka.spool_dir=/var/lib/netmeta/spool", b"kafka.property.acks=1",
                        b"kafka.spool_after_ms=50", b"exporter.e1.address=2001:db8::1",
                        b"exporter.e1.interface.7=xe-0/0/1", b"port.p1.device=net_tap0",
                        b"kafka.format=json", b"kafka.batch_bytes=4096"])
    seeds = {"netmeta.ini": shipped, "readme_kafka": example, "netmeta.ini+set": shipped + b"\0" + sets,
             "set_only": b"\0" + sets}
    for name, data in seeds.items():
        with open(os.path.join(dest, name), "wb") as o:
            o.write(data)
    return len(seeds)


def write_seeds(target, dest):
    n = 0
    os.makedirs(dest, exist_ok=True)
    if target == "spool":
        return write_spool_seeds(dest)
    if target == "config":
        return write_config_seeds(dest)
    if target == "pkt":
        return write_frame_seeds(dest)
    truth = os.path.join(CORPORA, "TRUTH.tsv")
    with open(truth) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(head, line.rstrip("\n").split("\t")))
            if target in TARGET_PROTOS and \
                    not set(row["protocols"].split(",")) & TARGET_PROTOS[target]:
                continue
            for i, p in enumerate(udp_payloads(os.path.join(CORPORA, row["file"]))):
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", row["file"]) + ".%d" % i
                with open(os.path.join(dest, name), "wb") as o:
                    o.write(p)
                n += 1
    return n


def build(fuzzdir, targets):
    if not os.path.exists(os.path.join(fuzzdir, "build.ninja")):
        env = dict(os.environ, CC="clang")
        cmd = ["meson", "setup", fuzzdir, SOURCE, "-Dfuzz=enabled", "-Dcorpora=" + CORPORA]
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            sys.stdout.write(p.stdout)
            raise SystemExit("meson setup of the clang build failed")
    cmd = ["ninja", "-C", fuzzdir] + ["tests/fuzz/fuzz_" + t for t in targets]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stdout.write(p.stdout)
        raise SystemExit("building the fuzz targets failed")


def all_targets():
    return sorted(os.path.basename(p)[5:-2]
                  for p in glob.glob(os.path.join(SOURCE, "tests", "fuzz", "fuzz_*.c")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("NM_FUZZ_SECONDS", "30")))
    ap.add_argument("--targets", default=",".join(all_targets()),
                    help="default: every tests/fuzz/fuzz_*.c")
    ap.add_argument("--keep", help="work directory to keep (seeds, new inputs, crash reproducers)")
    a = ap.parse_args()
    targets = a.targets.split(",")
    if shutil.which("clang") is None:
        print("SKIP: clang not installed (scripts/setup.sh --test installs it)")
        sys.exit(77)
    if not os.path.exists(os.path.join(CORPORA, "TRUTH.tsv")):
        print("SKIP: corpus absent at %s: no seeds" % CORPORA)
        sys.exit(77)
    fuzzdir = os.path.join(BUILD, "fuzz-clang")
    build(fuzzdir, targets)
    work = a.keep or tempfile.mkdtemp(prefix="nmfuzz")
    failed = []
    print("%-8s %7s %12s %9s %7s %s" % ("target", "seeds", "execs", "execs/s", "cov", "result"))
    for t in targets:
        seeds = os.path.join(work, t, "seeds")
        found = os.path.join(work, t, "found")
        os.makedirs(found, exist_ok=True)
        n = write_seeds(t, seeds)
        exe = os.path.join(fuzzdir, "tests", "fuzz", "fuzz_" + t)
        cmd = [exe, "-max_total_time=%d" % a.seconds, "-rss_limit_mb=2048", "-max_len=65535",
               "-timeout=10", "-print_final_stats=1", "-artifact_prefix=" + os.path.join(work, t) + "/",
               found, seeds]
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        if t in QUIET_TARGETS:
            cmd.insert(1, "-close_fd_mask=2")
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=a.seconds + 300)
        execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", p.stdout)
        rate = re.findall(r"stat::average_exec_per_sec:\s*(\d+)", p.stdout)
        cov = re.findall(r"cov: (\d+)", p.stdout)
        ok = p.returncode == 0 and execs
        print("%-8s %7d %12s %9s %7s %s" % (t, n, execs[-1] if execs else "-", rate[-1] if rate else "-",
                                            cov[-1] if cov else "-", "ok" if ok else "FAIL rc=%d" % p.returncode))
        if not ok:
            failed.append(t)
            sys.stdout.write(p.stdout[-6000:])
        sys.stdout.flush()
    if failed:
        print("fuzz targets failed: %s (inputs and reproducers in %s)" % (",".join(failed), work))
        sys.exit(1)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
