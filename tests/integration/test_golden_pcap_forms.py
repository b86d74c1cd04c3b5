#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""--pcap reads every form of capture file libpcap reads, and knows where each ends.

An offline run counts the frames of each file before it starts (the RX lcore stops when the
port delivered them all; the summary's queues say it as file_frames): classic pcap by walking
its record headers in a read-only mapping, anything else (pcapng, ...) with libpcap. A count too
low can end a run early and lose records, too high keeps it waiting for frames that never come
(net_pcap counts a read error, so one too many goes unnoticed but for the time: the count itself
is what this test checks). One corpus export (softflowd IPFIX,
TRUTH.tsv) is run in five forms made here:
  - as it is (little-endian, microseconds);
  - big-endian: every header byte-swapped (the magic read swapped);
  - nanosecond timestamps (editcap -F nsecpcap);
  - pcapng (editcap -F pcapng): the libpcap fallback;
  - cut in the middle of its last record: libpcap reads the records before the cut and reports
    an error there; so must the count (reference: the same file without its last record).
Asserted per form: exit 0 within the timeout, file_frames == rx_packets == the frames libpcap
reads (capinfos for whole files), records, packets and bytes == TRUTH's (the cut form: == the reference run's).
~10 s.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

CASE = "generated/softflowd-v10.pcap"


def byte_swapped(src, dst):
    """A classic little-endian pcap rewritten big-endian (global and record headers)."""
    data = open(src, "rb").read()
    magic, vmaj, vmin, zone, sig, snap, dlt = struct.unpack_from("<IHHiIII", data, 0)
    out = [struct.pack(">IHHiIII", magic, vmaj, vmin, zone, sig, snap, dlt)]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, off)
        out.append(struct.pack(">IIII", sec, frac, incl, orig))
        out.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    open(dst, "wb").write(b"".join(out))


def frames(path):
    out = subprocess.run(["capinfos", "-c", "-M", path], capture_output=True, text=True, check=True).stdout
    return int(out.split("Number of packets:")[1].split()[0])


def file_frames(s):
    return [q.get("file_frames") for w in s.get("workers", []) for q in w.get("queues", [])]


def main():
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "capinfos", "editcap")
    src = os.path.join(nmtest.CORPORA, CASE)
    truth = [r for r in nmtest.truth_rows() if r["path"] == src]
    if len(truth) != 1:
        nmtest.skip("%s has no TRUTH.tsv row" % CASE)
    truth = truth[0]
    if open(src, "rb").read(4) != b"\xd4\xc3\xb2\xa1":
        raise SystemExit("%s is expected to be a little-endian microsecond pcap" % CASE)
    problems = []
    with tempfile.TemporaryDirectory() as d:
        forms = {"as-is": os.path.join(d, "le.pcap"), "big-endian": os.path.join(d, "be.pcap"),
                 "nanosecond": os.path.join(d, "ns.pcap"), "pcapng": os.path.join(d, "ng.pcapng")}
        shutil.copy(src, forms["as-is"])
        byte_swapped(src, forms["big-endian"])
        subprocess.run(["editcap", "-F", "nsecpcap", src, forms["nanosecond"]], check=True)
        subprocess.run(["editcap", "-F", "pcapng", src, forms["pcapng"]], check=True)
        n = frames(src)
        # The cut form and its reference: all records but the last, then half of the last.
        ref = os.path.join(d, "ref.pcap")
        subprocess.run(["editcap", "-r", src, ref, "1-%d" % (n - 1)], check=True)
        cut = os.path.join(d, "cut.pcap")
        whole = open(src, "rb").read()
        open(cut, "wb").write(whole[:os.path.getsize(ref) + (len(whole) - os.path.getsize(ref)) // 2])
        want = {"records": truth["records"], "records_packets": truth["packets"],
                "records_bytes": truth["bytes"]}
        runs = {}
        for name, path in list(forms.items()) + [("reference", ref), ("cut", cut)]:
            run = nmtest.run_engine(path, timeout=60)
            runs[name] = run
            s = run.summary or {}
            nmtest.log("%-10s rc %s file_frames %s rx_packets %s records %s packets %s bytes %s (%.1f s)"
                       % (name, run.rc, file_frames(s), s.get("rx_packets"), s.get("records"),
                          s.get("records_packets"), s.get("records_bytes"), run.seconds))
            if run.rc != 0:
                problems.append("%s: exit %s\n%s" % (name, run.rc, run.tail()))
        for name in forms:
            s = runs[name].summary or {}
            if s.get("rx_packets") != n or file_frames(s) != [n]:
                problems.append("%s: rx_packets %s, file_frames %s, the file has %d frames"
                                % (name, s.get("rx_packets"), file_frames(s), n))
            got = {k: s.get(k) for k in want}
            if got != want:
                problems.append("%s: %s, TRUTH %s" % (name, got, want))
        r, c = runs["reference"].summary or {}, runs["cut"].summary or {}
        if c.get("rx_packets") != n - 1 or r.get("rx_packets") != n - 1 or \
                file_frames(c) != [n - 1] or file_frames(r) != [n - 1]:
            problems.append("cut: rx_packets %s file_frames %s (reference %s, %s), expected %d"
                            % (c.get("rx_packets"), file_frames(c), r.get("rx_packets"), file_frames(r),
                               n - 1))
        keys = ("records", "records_packets", "records_bytes")
        if [c.get(k) for k in keys] != [r.get(k) for k in keys] or not r.get("records"):
            problems.append("cut: %s, reference %s" % ([c.get(k) for k in keys], [r.get(k) for k in keys]))
    if problems:
        print("FAIL:\n" + "\n".join(problems))
        sys.exit(1)
    print("OK: %d frames in 4 forms and a cut copy, counted as libpcap reads them" % n)


if __name__ == "__main__":
    nmtest.exit_on_signals()
    main()
