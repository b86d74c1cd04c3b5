#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Golden test: every export capture of ../shared/corpora against tshark's dissection of it.

For every TRUTH.tsv row (one export capture) the engine runs offline on that file alone:
    netmeta --pcap FILE --set collector.ports=<the row's udp_ports> --set kafka.format=protobuf
            --set kafka.brokers=<mock broker> --summary-json S
(one engine run per file: the corpus reuses exporter addresses, template ids and timestamps, so
two files in one run could share templates and rows could not be told apart). The rows are read
back from the topic with kcat and decoded by nmtest's protobuf decoder (checked against
protoc --encode first); one capture per protocol is also run with kafka.format=json.

Asserted for every file:
  1. the run: exit status 0, no record lost, FlowMessages on the topic == summary rows ==
     kafka_records_acked;
  2. totals against TRUTH.tsv (tshark): export datagrams, summary records, sum(Packets),
     sum(Bytes); for sFlow also
     sum(Packets*SamplingRate) and sum(Bytes*SamplingRate) against scaled_packets/scaled_bytes.
     Where the engine legitimately differs from tshark's totals, tests/expected_differences.tsv
     (the one table, read by the unit tests too; each row cites its independent source) gives
     the engine's exact numbers and the reason; any other difference fails;
  3. decode errors from the summary JSON: none on valid captures, except unknown_template, which
     must equal the number of data sets tshark flags "no template found" (the same sets), and
     the table's "errors" rows. Invalid captures ("invalid" rows) must give no row and show
     exactly their rejection reasons in decode_errors;
  4. records: the summary's count equals the number of flow records tshark shows under the
     engine's rules (RFC 5103 biflows split in two), plus a surplus the table names;
  5. per-record fields against tshark's own dissection of the same file (tshark -T json, run here
     with -d udp.port==P,cflow|sflow for the row's ports): every flow record tshark shows is
     projected on (exporter, src addr, dst addr, src port, dst port, protocol, input and output
     interface, src AS, dst AS, sampling rate) and the packets/bytes of each projection are summed;
     the engine's rows, projected the same way, must give exactly the same table (rows merge
     identical keys within a second, so sums are compared, not row counts). Where data sets
     precede their template (oracle=primed in the table), tshark dissects the capture with its
     template frames played once in front, so that it decodes what the engine holds; an engine
     projection tshark does not have fails unless the table names it as a surplus, and then the
     surplus must sum to exactly the table's numbers. "fields" rows (a field tshark cannot show)
     compare the totals of tshark's records instead of the projections.
REPEATED: a v9/IPFIX template may carry an IE more than once (Cisco and Huawei SRv6/IP-in-IP
exports in pmacct/106, 400, 403, 500, 502: protocolIdentifier, ports, addresses of the outer and
the inner header). RFC 7011 section 8 orders occurrences as the Metering Process treats them,
outer header first; the engine keeps the last occurrence (the innermost header, as goflow2 does:
the traffic's own endpoints), and for addresses the last non-zero one. tshark lists every
occurrence; the projection takes the last one likewise.
The sampling rate a record should carry is worked out from tshark's fields as the engine's
rules say: sFlow from the flow sample; NetFlow v5 from the header (0 = none: the default 1);
v9/IPFIX from the record itself (IE 34/50, or 305/306), else from the options records seen
before it for the same exporter, domain and sampler id, else the default 1.

Two end-to-end checks of the per-exporter code follow the captures:
  - override: softflowd-v9 again with --set exporter.lo.address=127.0.0.1 and
    exporter.lo.sampling_rate=7: every row carries SamplingRate 7 (the exporter's options data say
    1), packets and bytes as TRUTH;
  - telemetry: a live engine on two looping pcap ports (sFlow with counter samples, NetFlow v9)
    with an [exporter.loopback] section; /netmeta/exporters must list both exporters (protocol,
    version, datagrams, records, templates, rates and their source, the configured name, no
    loss) and /netmeta/interfaces the sFlow agent's generic interface counters with the
    configured interface name.

When the corpus is absent the test says so and exits 77 (skipped).
"""
import collections
import concurrent.futures
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

# --------------------------------------------------------------------------------------------
# Where the engine legitimately differs from tshark: tests/expected_differences.tsv, the one table
# the unit tests (test_nf9.c, test_ipfix.c) read too. Its header describes the columns.

EXPECTED_TSV = os.path.join(nmtest.SOURCE, "tests", "expected_differences.tsv")
# detail keys that are not decode error reasons
DETAIL_KEYS = ("sflow_records", "oracle", "drop_frames", "surplus", "cflow_frames", "record")


def load_expected(path=EXPECTED_TSV):
    """{check: {file: row}}; row: records/packets/bytes (int or None), errors {reason: n},
    detail {key: text} (DETAIL_KEYS), source, why. A malformed row raises."""
    out = {"totals": {}, "invalid": {}, "errors": {}, "fields": {}}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#") or line.startswith("file\t"):
                continue
            col = line.split("\t")
            if len(col) != 8:
                raise ValueError("%s:%d: %d columns, 8 expected" % (path, n, len(col)))
            file, check, recs, pkts, byts, detail, source, why = col
            if check not in out or file in out[check]:
                raise ValueError("%s:%d: check %r (or a second %s row for %s)"
                                 % (path, n, check, check, file))
            if not source.strip() or source == "-" or not why.strip():
                raise ValueError("%s:%d: every row cites its source and says why" % (path, n))
            row = dict(file=file, source=source, why=why, errors={}, detail={})
            for k, v in zip(("records", "packets", "bytes"), (recs, pkts, byts)):
                row[k] = None if v == "-" else int(v)
            if check in ("totals", "invalid") and None in (row["records"], row["packets"],
                                                           row["bytes"]):
                raise ValueError("%s:%d: a %s row gives records, packets and bytes"
                                 % (path, n, check))
            for kv in ([] if detail == "-" else detail.split(";")):
                k, v = kv.split("=", 1)
                if k in DETAIL_KEYS:
                    row["detail"][k] = v
                else:
                    row["errors"][k] = int(v)
            out[check][file] = row
    return out


EXPECTED = load_expected()
DIFF = EXPECTED["totals"]       # the engine's exact totals where they differ from TRUTH.tsv
INVALID = EXPECTED["invalid"]   # no row may come out; the rejection counted by reason
ERRORS = EXPECTED["errors"]     # decode errors besides unknown_template (checked against tshark)
FIELDS = EXPECTED["fields"]     # per-record comparison replaced by tshark's record totals


def triple(text):
    r, p, b = (int(x) for x in text.split("/"))
    return r, p, b


# One capture per protocol also goes through kafka.format=json.
JSON_CASES = ("generated/softflowd-v5.pcap", "generated/softflowd-v9.pcap",
              "generated/softflowd-v10.pcap", "generated/pmacctd-sfprobe-sflow5-rate10.pcap")

TYPE_SFLOW, TYPE_NF5 = 1, 2


# --------------------------------------------------------------------------------------------
# tshark: flow records as the engine should see them

def norm_addr(text):
    """Address text -> ipaddress object; IPv4-mapped IPv6 -> IPv4; '' -> :: (absent)."""
    if not text:
        return ipaddress.IPv6Address("::")
    a = ipaddress.ip_address(text)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def first(d, *names, default=None):
    for n in names:
        v = d.get(n)
        if v is not None:
            return v[0] if isinstance(v, list) else v
    return default


def last(d, *names):
    """Integer value of the first of names present; of a repeated field, the last occurrence
    (REPEATED in the module comment)."""
    for n in names:
        v = d.get(n)
        if v is not None:
            return int(as_list(v)[-1], 0)
    return 0


def num(v, default=0):
    if v is None:
        return default
    if isinstance(v, list):
        v = v[0]
    return int(v, 0)


class Projection:
    """The fields compared per record."""
    FIELDS = ("exporter", "src", "dst", "sport", "dport", "proto", "in_if", "out_if", "src_as",
              "dst_as", "rate")


def proj(exporter, src, dst, sport, dport, proto, in_if, out_if, src_as, dst_as, rate):
    return (str(exporter), str(src), str(dst), sport, dport, proto, in_if, out_if, src_as, dst_as,
            rate)


def tshark_json(path, ports, sflow_ports):
    dec = []
    for p in ports:
        dec += ["-d", "udp.port==%s,%s" % (p, "sflow" if p in sflow_ports else "cflow")]
    p = subprocess.run(["tshark", "-r", path, "-T", "json", "--no-duplicate-keys"] + dec,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("tshark failed on %s: %s" % (path, p.stderr.decode(errors="replace")))
    return json.loads(p.stdout.decode("utf-8", errors="replace") or "[]")


def sflow_ports_of(path, ports):
    """Ports whose datagrams start like sFlow v5 (version 5, address type 1 or 2), as truth.py."""
    p = subprocess.run(["tshark", "-r", path, "--disable-protocol", "sflow", "--disable-protocol",
                        "cflow", "-T", "fields", "-E", "occurrence=f", "-e", "udp.dstport",
                        "-e", "data.data"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       timeout=300)
    out = set()
    for line in p.stdout.decode().splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1][:8] == "00000005" and parts[1][8:16] in ("00000001",
                                                                                  "00000002"):
            out.add(parts[0])
    return out


def if_value(fmt, val):
    return val if fmt == 0 else 0


def sflow_records(sf, exporter):
    """Flow records of one sFlow datagram layer (dict) as (projection, packets, bytes)."""
    out = []
    for key, samples in sf.items():
        if not (key.startswith("Flow sample") or key.startswith("Expanded flow sample")):
            continue
        for s in as_list(samples):
            hdr = None
            for rk, rv in s.items():
                if rk.startswith("Raw packet header"):
                    hdr = as_list(rv)[0]
            if hdr is None:
                continue  # truth.py counts flow samples with a raw header record
            rate = num(s.get("sflow.flow_sample.sampling_rate"))
            if "sflow.flow_sample.input_interface_value" in s:
                in_if = if_value(num(s.get("sflow.flow_sample.input_interface_format")),
                                 num(s.get("sflow.flow_sample.input_interface_value")))
                out_if = if_value(num(first(s, "sflow.flow_sample.output_interface.format",
                                            "sflow.flow_sample.output_interface_format")),
                                  num(s.get("sflow.flow_sample.output_interface_value")))
            else:
                def compact(name):
                    tree = s.get(name + "_tree")
                    if isinstance(tree, dict):
                        return if_value(num(first(tree, name + "_format")),
                                        num(first(tree, name + "_value")))
                    v = num(s.get(name))
                    return if_value(v >> 30, v & 0x3FFFFFFF)
                in_if = compact("sflow.flow_sample.input_interface")
                out_if = compact("sflow.flow_sample.output_interface")
            src_as = dst_as = 0
            for rk, rv in s.items():
                if rk.startswith("Extended gateway data"):
                    g = as_list(rv)[0]
                    router_as = num(g.get("sflow_245.as"))
                    sa = num(g.get("sflow_245.srcAS"))
                    path = []
                    for t in as_list(g.get("sflow.as_type_tree")):
                        path += [int(x) for x in as_list(t.get("sflow_245.dstAS"))]
                    dst_as = path[-1] if path else router_as
                    src_as = sa if sa else router_as
            tree = hdr.get("sflow_245.header_tree", {})
            src = dst = ""
            proto = sport = dport = 0
            for lk in tree:
                if lk in ("ip", "ipv6") and not src:
                    l3 = as_list(tree[lk])[0]
                    pre = "ip" if lk == "ip" else "ipv6"
                    src = first(l3, pre + ".src", default="")
                    dst = first(l3, pre + ".dst", default="")
                    proto = num(first(l3, "ip.proto", "ipv6.nxt"))
            # ports of the first IP header's own TCP/UDP/SCTP only (not of a tunnelled packet)
            for l4 in {6: ("tcp",), 17: ("udp",), 132: ("sctp",)}.get(proto, ()):
                if l4 in tree:
                    t = as_list(tree[l4])[0]
                    sport = num(first(t, l4 + ".srcport"))
                    dport = num(first(t, l4 + ".dstport"))
                    break
            out.append((proj(exporter, norm_addr(src), norm_addr(dst), sport, dport, proto,
                             in_if, out_if, src_as, dst_as, rate),
                        1, num(hdr.get("sflow_245.header.frame_length"))))
    return out


class CflowState:
    """What the engine learns across datagrams: options templates and sampling rates."""

    def __init__(self):
        self.options = set()   # (exporter, domain, template id)
        self.rates = {}        # (exporter, domain, sampler id) -> rate
        self.no_template = 0   # data sets tshark could not decode
        # oracle=primed (tshark knows every template from the start): the engine's order is
        # modelled here. held is None until the capture's own frames begin; then the data sets
        # of a template the capture has not sent yet wait in held, keyed by (exporter, domain,
        # template id), and are counted when the template arrives, with the rates known then
        # (the engine decodes held data sets when their template arrives). Sets of the frames
        # in drop are the ones the engine's bound on held data drops.
        self.held = None
        self.known = set()     # (exporter, domain, template id) sent by the capture so far
        self.frame = 0         # the capture's frame number
        self.drop = set()


def rate_of(f):
    """Rate a record carries itself (IE 34/50, 305/306), 0 when none."""
    r = num(first(f, "cflow.sampling_interval", "cflow.sampler_random_interval"))
    if r:
        return r
    i = num(first(f, "cflow.sampling_packet_interval"))
    if i:
        return (i + num(first(f, "cflow.sampling_packet_space"))) // i
    return 0


def sampler_of(f):
    return num(first(f, "cflow.sampler_id", "cflow.selector_id"))


def biflow(vals):
    """Forward and RFC 5103 reverse value of a counter tshark lists once or twice (the reverse
    IE, PEN 29305, after the forward one): (forward or None, reverse or None)."""
    vals = as_list(vals)
    if not vals:
        return None, None
    return int(vals[0], 0), (int(vals[1], 0) if len(vals) == 2 else None)


def counters(f):
    """(forward packets, bytes), (reverse packets, bytes) or None, with the engine's IE
    preference: delta, then total (permanent), then post counters; a record of an RFC 7133
    packet section without counters is one packet of dataLinkFrameSize (IE 312) or
    sectionExportedOctets (IE 410) bytes, else of the section's own length (ipfix_prog.c)."""
    fb = rb = fp = rp = None
    for name in ("cflow.octets", "cflow.permanent_octets", "cflow.post_octets"):
        if name in f:
            fb, rb = biflow(f[name])
            break
    for name in ("cflow.packets", "cflow.permanent_packets", "cflow.post_packets"):
        if name in f:
            fp, rp = biflow(f[name])
            break
    sec = f.get("cflow.data_link_frame_section")
    if sec is not None:
        if fb is None:
            fb = (num(first(f, "cflow.data_link_frame_size")) or
                  num(first(f, "cflow.section_exported_octets")) or
                  len(bytes.fromhex(as_list(sec)[0].replace(":", ""))))
        if fp is None:
            fp = 1
    rev = (rp or 0, rb or 0) if (rp or rb) else None
    return (fp or 0, fb or 0), rev


def cflow_records(cf, exporter, st):
    """Flow records of one NetFlow/IPFIX PDU layer (dict) as (projection, packets, bytes)."""
    out = []
    version = num(cf.get("cflow.version"))
    if version == 5:
        rate = num(cf.get("cflow.samplerate")) or 1
        for k, f in cf.items():
            if not k.startswith("pdu "):
                continue
            for r in as_list(f):
                out.append((proj(exporter, norm_addr(first(r, "cflow.srcaddr", default="")),
                                 norm_addr(first(r, "cflow.dstaddr", default="")),
                                 num(r.get("cflow.srcport")), num(r.get("cflow.dstport")),
                                 num(r.get("cflow.protocol")), num(r.get("cflow.inputint")),
                                 num(r.get("cflow.outputint")), num(r.get("cflow.srcas")),
                                 num(r.get("cflow.dstas")), rate),
                            num(r.get("cflow.packets")), num(r.get("cflow.octets"))))
        return out
    domain = num(first(cf, "cflow.source_id", "cflow.od_id"))
    for k, fs in cf.items():
        if not (k.startswith("FlowSet ") or k.startswith("Set ")):
            continue
        for s in as_list(fs):
            defined = []
            for tk, tv in s.items():
                if tk.startswith("Options Template (Id = "):
                    for t in as_list(tv):
                        st.options.add((exporter, domain, num(t.get("cflow.template_id"))))
                        defined.append(num(t.get("cflow.template_id")))
                elif tk.startswith("Template (Id = "):
                    defined += [num(t.get("cflow.template_id")) for t in as_list(tv)]
                if "no template found" in tk:
                    st.no_template += len(as_list(tv))
            sid = num(s.get("cflow.flowset_id"))
            flows = [f for fk, fv in s.items() if fk.startswith("Flow ") for f in as_list(fv)]
            if st.held is not None and sid >= 256 and (exporter, domain, sid) not in st.known:
                if st.frame not in st.drop:
                    st.held.setdefault((exporter, domain, sid), []).extend(flows)
                flows = []
            out += cflow_flows(flows, exporter, domain, sid, st)
            if st.held is not None:
                for tid in defined:
                    st.known.add((exporter, domain, tid))
                    out += cflow_flows(st.held.pop((exporter, domain, tid), []), exporter,
                                       domain, tid, st)
    return out


def cflow_flows(flows, exporter, domain, sid, st):
    """Records of the flows of one v9/IPFIX data set (template sid) as (projection, packets,
    bytes); options records only teach rates."""
    out = []
    is_opt = (exporter, domain, sid) in st.options
    for f in flows:
        if is_opt:
            r = rate_of(f)
            if r:
                st.rates[(exporter, domain, sampler_of(f))] = r
            continue
        rate = rate_of(f)
        if not rate:
            sm = sampler_of(f)
            rate = st.rates.get((exporter, domain, sm), 0)
            if not rate and sm:
                rate = st.rates.get((exporter, domain, 0), 0)
        rate = rate or 1

        def addr(v4, v6):
            # keys in template order; the last non-zero address wins (REPEATED)
            vals = [x for k in f if k in (v4, v6) for x in as_list(f[k])]
            nz = [x for x in vals if norm_addr(x) not in (
                ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::"))]
            return norm_addr(nz[-1] if nz else (vals[0] if vals else ""))
        src = addr("cflow.srcaddr", "cflow.srcaddrv6")
        dst = addr("cflow.dstaddr", "cflow.dstaddrv6")
        in_if = last(f, "cflow.inputint", "cflow.ingress_physical_interface")
        out_if = last(f, "cflow.outputint", "cflow.egress_physical_interface")
        # every port IE counts, the last non-zero one wins (ipfix_prog.c)
        sport = ([0] + [int(x) for x in as_list(f.get("cflow.srcport")) if int(x)])[-1]
        dport = ([0] + [int(x) for x in as_list(f.get("cflow.dstport")) if int(x)])[-1]
        proto = last(f, "cflow.protocol")
        sas, das = last(f, "cflow.srcas"), last(f, "cflow.dstas")
        (p, b), rev = counters(f)
        out.append((proj(exporter, src, dst, sport, dport, proto, in_if, out_if, sas, das, rate),
                    p, b))
        if rev is not None:
            out.append((proj(exporter, dst, src, dport, sport, proto, out_if, in_if, das, sas,
                             rate), rev[0], rev[1]))
    return out


def template_frames(path, ports):
    """Numbers of the frames that carry a template or options template set (v9 flowset id 0/1,
    IPFIX set id 2/3)."""
    dec = []
    for p in ports:
        dec += ["-d", "udp.port==%s,cflow" % p]
    p = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.number", "-e",
                        "cflow.version", "-e", "cflow.flowset_id"] + dec,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=300, text=True)
    out = []
    for line in p.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1]:
            continue
        ids = {int(x) for x in parts[2].split(",") if x}
        tmpl_ids = {0, 1} if "9" in parts[1].split(",") else {2, 3}
        if ids & tmpl_ids:
            out.append(int(parts[0]))
    return out


def primed_capture(path, ports, tmp):
    """(path of a capture made of path's template-bearing frames followed by path itself, the
    number of frames put in front). editcap/mergecap keep the link type and the frames' bytes."""
    frames = template_frames(path, ports)
    if not frames:
        raise RuntimeError("oracle=primed, but tshark finds no template in %s" % path)
    prefix, primed = os.path.join(tmp, "prefix.pcap"), os.path.join(tmp, "primed.pcap")
    subprocess.run(["editcap", "-r", path, prefix] + [str(n) for n in frames], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    subprocess.run(["mergecap", "-F", "pcap", "-a", "-w", primed, prefix, path], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    return primed, len(frames)


def one_session_capture(path, tmp):
    """A copy of path (classic pcap; Ethernet, Linux SLL or raw IP; IPv4 or IPv6; UDP) where every
    datagram carries the first one's destination address and source port: one transport
    session, as the engine sees an exporter (templates keyed by exporter address and
    observation domain); Wireshark keys them by address and port pair. Checksums are left as
    they are (tshark does not check them)."""
    import struct
    d = open(path, "rb").read()
    magic = struct.unpack_from("<I", d)[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise RuntimeError("%s: not a little-endian classic pcap" % path)
    link = struct.unpack_from("<I", d, 20)[0]
    l2 = {1: 14, 113: 16, 101: 0, 12: 0, 14: 0}.get(link)
    if l2 is None:
        raise RuntimeError("%s: link type %d" % (path, link))
    out, i, first_dst, first_sport = bytearray(d[:24]), 24, None, None
    while i + 16 <= len(d):
        cl = struct.unpack_from("<I", d, i + 8)[0]
        fr = bytearray(d[i + 16:i + 16 + cl])
        v = fr[l2] >> 4
        dst, udp = ((slice(l2 + 16, l2 + 20), l2 + (fr[l2] & 15) * 4) if v == 4 else
                    (slice(l2 + 24, l2 + 40), l2 + 40))
        if first_dst is None:
            first_dst, first_sport = bytes(fr[dst]), bytes(fr[udp:udp + 2])
        fr[dst] = first_dst
        fr[udp:udp + 2] = first_sport
        out += d[i:i + 16] + fr
        i += 16 + cl
    p = os.path.join(tmp, "one-session.pcap")
    with open(p, "wb") as f:
        f.write(out)
    return p


def cflow_frames_capture(path, frames, tmp):
    """The given frames of path alone (editcap)."""
    p = os.path.join(tmp, "cflow-frames.pcap")
    subprocess.run(["editcap", "-r", path, p] + [str(n) for n in frames], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    return p


def tshark_table(path, ports, sflow_ports, oracle=None, drop_frames=(), cflow_frames=()):
    """{projection: [packets, bytes, records]}, tshark's no-template set count.
    oracle="primed": dissect the capture with its template frames played once before it and
    count only the capture's own frames (expected_differences.tsv); drop_frames: the capture's
    frames whose records the engine legitimately drops (held data beyond its bound)."""
    import tempfile
    skip = 0
    tmp = None
    plain_no_template = None
    if oracle == "primed":
        # the engine counts a held data set as unknown_template when it arrives, as tshark
        # flags it in the capture as it is
        plain_no_template = tshark_table(path, ports, sflow_ports)[1]
        tmp = tempfile.mkdtemp(prefix="nmtest-golden-primed-")
        path, skip = primed_capture(path, ports, tmp)
    elif oracle == "one_session":
        plain_no_template = None
        tmp = tempfile.mkdtemp(prefix="nmtest-golden-session-")
        path = one_session_capture(path, tmp)
    elif oracle is not None:
        raise ValueError("unknown oracle %r" % oracle)
    extra = []
    try:
        frames = tshark_json(path, ports, sflow_ports)
        if cflow_frames:
            # datagrams of another protocol on a port tshark is told is sFlow: those frames
            # alone, dissected as NetFlow/IPFIX
            tmp = tmp or tempfile.mkdtemp(prefix="nmtest-golden-cflow-")
            extra = tshark_json(cflow_frames_capture(path, cflow_frames, tmp), ports, set())
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    table = collections.defaultdict(lambda: [0, 0, 0])
    st = CflowState()
    st.drop = {int(x) for x in drop_frames}
    no_template = 0
    for i, fr in enumerate(frames + extra):
        if skip and i == skip:
            # the capture's own frames begin: the priming pass taught tshark the templates
            # only; rates and what the engine has seen start from nothing
            st.rates.clear()
            st.options.clear()
            st.held = {}
        st.frame = i + 1 - skip
        layers = fr["_source"]["layers"]
        ip = layers.get("ip") or layers.get("ipv6") or {}
        ip = as_list(ip)[0]
        exporter = norm_addr(first(ip, "ip.src", "ipv6.src", default=""))
        recs = []
        before = st.no_template
        for sf in as_list(layers.get("sflow")):
            # sFlow rows carry the agent address the datagram states, not its IP source
            recs += sflow_records(sf, norm_addr(first(sf, "sflow_245.agent",
                                                      "sflow_245.agent.v6", default="")))
        for cf in as_list(layers.get("cflow")):
            recs += cflow_records(cf, exporter, st)
        if i < skip:
            continue
        no_template += st.no_template - before
        for pj, p, b in recs:
            e = table[pj]
            e[0] += p
            e[1] += b
            e[2] += 1
    return dict(table), no_template if plain_no_template is None else plain_no_template


def engine_table(rows):
    table = collections.defaultdict(lambda: [0, 0, 0])
    for m in rows:
        pj = proj(norm_addr(nmtest.addr_text(m["SamplerAddress"])),
                  norm_addr(nmtest.addr_text(m["SrcAddr"]) if m["SrcAddr"] else ""),
                  norm_addr(nmtest.addr_text(m["DstAddr"]) if m["DstAddr"] else ""),
                  m["SrcPort"], m["DstPort"], m["Proto"], m["InIf"], m["OutIf"], m["SrcAS"],
                  m["DstAS"], m["SamplingRate"])
        e = table[pj]
        e[0] += m["Packets"]
        e[1] += m["Bytes"]
        e[2] += 1
    return dict(table)


def json_row_to_pb_like(m):
    """A JSONEachRow object -> the protobuf decoder's dict shape (addresses as 16 bytes)."""
    out = dict(m)
    for k in ("SamplerAddress", "SrcAddr", "DstAddr", "NextHop"):
        v = m.get(k) or "::"
        out[k] = ipaddress.IPv6Address(v).packed if ":" in v else \
            ipaddress.IPv6Address("::ffff:" + v).packed
    return out


# --------------------------------------------------------------------------------------------

def compare_tables(eng, tsh, surplus=None):
    """Problems (list of text). Every projection tshark shows must be in the engine's table with
    the same sums, and every engine projection in tshark's; engine projections tshark lacks
    are allowed only as the surplus (packets, bytes) an expected_differences.tsv row names,
    and then their sums must be exactly that."""
    problems = []
    for pj, (p, b, n) in sorted(tsh.items()):
        e = eng.get(pj)
        if e is None:
            problems.append("tshark record(s) with no engine row: %s pkts %d bytes %d (x%d)"
                            % (dict(zip(Projection.FIELDS, pj)), p, b, n))
        elif (e[0], e[1]) != (p, b):
            problems.append("%s: engine %d pkts %d bytes, tshark %d pkts %d bytes"
                            % (dict(zip(Projection.FIELDS, pj)), e[0], e[1], p, b))
    extra = {pj: e for pj, e in eng.items() if pj not in tsh}
    if surplus is not None:
        got = (sum(e[0] for e in extra.values()), sum(e[1] for e in extra.values()))
        if got != tuple(surplus):
            problems.append("engine rows tshark does not show sum to %d pkts %d bytes; the "
                            "expected difference says %d/%d" % (got + tuple(surplus)))
    else:
        for pj, (p, b, n) in sorted(extra.items()):
            problems.append("engine row(s) tshark does not show, and no expected difference "
                            "explains: %s pkts %d bytes %d (x%d)"
                            % (dict(zip(Projection.FIELDS, pj)), p, b, n))
    if len(problems) > 8:
        problems = problems[:8] + ["... %d more field differences" % (len(problems) - 8)]
    return problems


def check_case(truth, fmt, run, payloads, tsh):
    """Returns (summary line fields, problems)."""
    f = truth["file"]
    problems = []
    s = run.summary
    if run.rc != 0:
        problems.append("engine exit status %d" % run.rc)
    if s is None:
        return ["-"] * 4, problems + ["no summary JSON"]
    rows = []
    for p in payloads:
        try:
            if fmt == "protobuf":
                rows += nmtest.decode_delimited(p)
            else:
                rows += [json_row_to_pb_like(m) for m in nmtest.decode_json_lines(p)]
        except Exception as e:  # noqa: BLE001 - any decode failure is a finding
            problems.append("undecodable Kafka message (%d bytes): %s" % (len(p), e))
    if fmt == "protobuf":
        for i, m in enumerate(rows):
            if m["_unknown"]:
                problems.append("row %d: fields outside FlowMessage %r" % (i, m["_unknown"]))
                break
    errs = {k: v for k, v in s.get("decode_errors", {}).items() if v}
    if len(rows) != s.get("rows") or s.get("rows") != s.get("kafka_records_acked"):
        problems.append("%d FlowMessages on the topic, summary rows %r, acked %r"
                        % (len(rows), s.get("rows"), s.get("kafka_records_acked")))
    if s.get("lost_records") or s.get("kafka_records_failed"):
        problems.append("lost_records %r kafka_records_failed %r"
                        % (s.get("lost_records"), s.get("kafka_records_failed")))
    pk = sum(m["Packets"] for m in rows)
    by = sum(m["Bytes"] for m in rows)
    sfl = [m for m in rows if m["Type"] == TYPE_SFLOW]
    spk = sum(m["Packets"] * m["SamplingRate"] for m in sfl)
    sby = sum(m["Bytes"] * m["SamplingRate"] for m in sfl)
    for i, m in enumerate(rows):
        if m["SamplingRate"] < 1:
            problems.append("row %d: SamplingRate %r" % (i, m["SamplingRate"]))
            break
    got = "%s/%d/%d" % (s.get("records"), pk, by)
    if "sflow5" in truth["protocols"]:
        got += " scaled %d/%d" % (spk, sby)

    if f in INVALID:
        inv = INVALID[f]
        if s.get("records") or rows:
            problems.append("invalid capture gave %r records, %d rows" % (s.get("records"), len(rows)))
        if errs != inv["errors"]:
            problems.append("decode_errors %r, expected %r" % (errs, inv["errors"]))
        if s.get("datagrams") != truth["datagrams"]:
            problems.append("summary datagrams %r, TRUTH %d" % (s.get("datagrams"),
                                                                truth["datagrams"]))
        return [got, "rejected " + ",".join("%s=%d" % kv for kv in sorted(errs.items())),
                "-", "invalid"], problems

    if s.get("datagrams") != truth["datagrams"]:
        problems.append("summary datagrams %r, TRUTH %d" % (s.get("datagrams"), truth["datagrams"]))
    d = DIFF.get(f)
    want_recs, want_pk, want_by = ((d["records"], d["packets"], d["bytes"]) if d else
                                   (truth["records"], truth["packets"], truth["bytes"]))
    if (s.get("records"), pk, by) != (want_recs, want_pk, want_by):
        problems.append("records/packets/bytes %s, expected %d/%d/%d (%s)"
                        % (got, want_recs, want_pk, want_by,
                           "DIFF" if d else "TRUTH.tsv"))
    if s.get("records_packets") != pk or s.get("records_bytes") != by:
        problems.append("summary records_packets/bytes %r/%r, rows sum %d/%d" % (
            s.get("records_packets"), s.get("records_bytes"), pk, by))
    if "sflow5" in truth["protocols"]:
        if (spk, sby) != (truth["scaled_packets"], truth["scaled_bytes"]):
            problems.append("sFlow sum(Packets*SamplingRate)/sum(Bytes*SamplingRate) %d/%d, "
                            "TRUTH scaled %d/%d" % (spk, sby, truth["scaled_packets"],
                                                   truth["scaled_bytes"]))
        want_sf = int(d["detail"].get("sflow_records", truth["records"])) if d else \
            truth["records"]
        if len(sfl) > want_sf:
            problems.append("%d sFlow rows for %d sFlow records" % (len(sfl), want_sf))

    table_t, no_tmpl = tsh
    want_errs = dict(ERRORS.get(f, {}).get("errors", {}))
    if no_tmpl and "unknown_template" not in want_errs:
        want_errs["unknown_template"] = no_tmpl
    if errs != want_errs:
        problems.append("decode_errors %r, expected %r (unknown_template = tshark's %d "
                        "'no template found' sets%s)" % (errs, want_errs, no_tmpl,
                                                        "; ERRORS" if f in ERRORS else ""))
    # records: the summary's count against the records tshark shows under the engine's rules
    # (biflows split), plus what an expected difference says tshark cannot show
    sur = triple(d["detail"]["surplus"]) if d and "surplus" in d["detail"] else None
    n_tsh = sum(e[2] for e in table_t.values())
    if s.get("records") != n_tsh + (sur[0] if sur else 0):
        problems.append("summary records %r, tshark shows %d%s" % (
            s.get("records"), n_tsh, " + surplus %d" % sur[0] if sur else ""))
    table_e = engine_table(rows)
    if d and "record" in d["detail"]:
        # a record another decoder shows (the row's source): src>dst/packets/bytes
        addrs, rp, rb = d["detail"]["record"].split("/")
        rs, rd = (norm_addr(a) for a in addrs.split(">"))
        got_r = [(e[0], e[1]) for pj, e in table_e.items() if pj[1:3] == (str(rs), str(rd))]
        if got_r != [(int(rp), int(rb))]:
            problems.append("the record %s of the expected difference's source: engine rows %r"
                            % (d["detail"]["record"], got_r))
    if f in FIELDS:
        # a field cannot match (FIELDS' reason): tshark's record totals must
        t_pk = sum(e[0] for e in table_t.values())
        t_by = sum(e[1] for e in table_t.values())
        if (t_pk, t_by) != (pk, by):
            problems.append("fields skipped, but tshark's records sum to %d/%d, the engine's "
                            "rows to %d/%d" % (t_pk, t_by, pk, by))
        fields = "totals %d/%d" % (t_pk, t_by)
    else:
        fp = compare_tables(table_e, table_t, sur[1:] if sur else None)
        problems += fp
        fields = "%d/%d" % (len(table_t), len(table_e)) + ("" if not fp else " FAIL")
    return [got, "diff" if d else "=truth", fields, "ok" if not problems else "FAIL"], problems


# --------------------------------------------------------------------------------------------
# Per-exporter configuration and telemetry, end to end

OVERRIDE_CASE = "generated/softflowd-v9.pcap"
OVERRIDE_RATE = 7


def check_override(broker, truth):
    """[exporter.NAME] sampling_rate replaces what the exporter announces (softflowd-v9's
    options data say 1): every row carries the configured rate, totals unchanged."""
    topic = "golden-override"
    run = nmtest.run_engine(truth["path"], broker.bootstrap, ports=truth["udp_ports"],
                            topic=topic, sets=["engine.stats_interval_ms=0",
                                               "exporter.lo.address=127.0.0.1",
                                               "exporter.lo.sampling_rate=%d" % OVERRIDE_RATE])
    problems = []
    if run.rc != 0 or run.summary is None:
        return ["engine exit status %d: %s" % (run.rc, run.tail(10))]
    rows = []
    for p in nmtest.kcat_consume(broker.bootstrap, topic):
        rows += nmtest.decode_delimited(p)
    rates = collections.Counter(m["SamplingRate"] for m in rows)
    if set(rates) != {OVERRIDE_RATE}:
        problems.append("override: SamplingRate values %r, expected only %d" % (dict(rates),
                                                                              OVERRIDE_RATE))
    pk, by = sum(m["Packets"] for m in rows), sum(m["Bytes"] for m in rows)
    if (pk, by) != (truth["packets"], truth["bytes"]):
        problems.append("override: packets/bytes %d/%d, TRUTH %d/%d" % (pk, by, truth["packets"],
                                                                        truth["bytes"]))
    print("override: %d rows, SamplingRate %r" % (len(rows), dict(rates)), flush=True)
    return problems


def telemetry_query(prefix, cmd, timeout=20):
    """The answer to cmd on the engine's telemetry socket. The socket exists once EAL is up,
    before the engine has registered its /netmeta commands (DPDK answers null to an unknown
    command): both are waited for, up to timeout s."""
    import socket
    path = "/var/run/dpdk/%s/dpdk_telemetry.v2" % prefix
    deadline = time.time() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(5)
            s.connect(path)
            s.recv(16384)
            s.send(cmd.encode())
            data = s.recv(1 << 20)
            s.close()
            ans = json.loads(data.decode())[cmd.split(",")[0]]
            if ans is not None:
                return ans
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError("telemetry %s on %s: no answer within %d s" % (cmd, path, timeout))
        time.sleep(0.2)


def check_telemetry():
    """Live engine on two looping pcap ports (net_pcap infinite_rx): sFlow with counter samples
    and NetFlow v9, one exporter configured. /netmeta/exporters lists both exporters with their
    protocol, counts, rates and the configured name; /netmeta/interfaces shows the sFlow agent's
    generic interface counters (RECIPES.md: ifType 6, 100 Mbit/s) with the configured name."""
    import tempfile
    sfl = os.path.join(nmtest.CORPORA, "generated/pmacctd-sfprobe-sflow5.pcap")
    nf9 = os.path.join(nmtest.CORPORA, "generated/softflowd-v9.pcap")
    tmp = tempfile.mkdtemp(prefix="nmtest-golden-tel-")
    ini = os.path.join(tmp, "tel.ini")
    with open(ini, "w") as f:
        f.write("[collector]\nports = 2055,6343\n[engine]\nstats_interval_ms = 0\n"
                "[kafka]\nbrokers = embedded\n"
                "[port.p0]\ndevice = net_pcap0,rx_pcap=%s,infinite_rx=1\n"
                "[port.p1]\ndevice = net_pcap1,rx_pcap=%s,infinite_rx=1\n"
                "[exporter.loopback]\naddress = 127.0.0.1\ndescription = corpus exporters\n"
                "interface.1073741823 = lo-sampled\n" % (sfl, nf9))
    # not --in-memory: the telemetry socket lives under /var/run/dpdk/<prefix>/
    eng = nmtest.start_engine(config=ini, topic=None, args=["--duration", "6"], in_memory=False)
    problems = []
    try:
        # Start-up takes 1.2-2.1 s at load 10-13 (EAL, ports, pools pre-faulted), so a fixed
        # 2 s sleep raced it: telemetry_query waits until the command is registered (20 s at
        # most), then the looping ports get 1 s of traffic as before.
        telemetry_query(eng.prefix, "/netmeta/exporters")
        time.sleep(1)
        exp = telemetry_query(eng.prefix, "/netmeta/exporters")
        ifs = telemetry_query(eng.prefix, "/netmeta/interfaces,127.0.0.1")
    finally:
        eng.kill(timeout=30)
        run = eng.finish(timeout=30)
    print("telemetry /netmeta/exporters:", json.dumps(exp, indent=1)[:2500], flush=True)
    sf = exp.get("127_0_0_1/0/sflow")
    v9 = exp.get("127_0_0_1/0/nf9")
    if exp.get("exporters") != 2 or sf is None or v9 is None:
        problems.append("telemetry: expected the sFlow agent and the v9 exporter, got %r"
                        % sorted(exp))
    else:
        for e, proto, ver in ((sf, "sflow", 5), (v9, "nf9", 9)):
            if e["protocol"] != proto or e["version"] != ver or e["datagrams"] <= 0 or \
                    e["records"] <= 0 or e.get("name") != "loopback":
                problems.append("telemetry: %s entry %r" % (proto, e))
            if e["bad_datagrams"] or e["seq_lost"]:
                problems.append("telemetry: %s reports bad datagrams or losses: %r" % (proto, e))
        if sf["sampling_rates"] != "1" or sf["sampling_source"] != "exporter":
            problems.append("telemetry: sFlow rates %r from %r" % (sf["sampling_rates"],
                                                                  sf["sampling_source"]))
        if v9["templates"] <= 0:
            problems.append("telemetry: v9 exporter shows no templates")
        # the files loop: every replay starts the sequence over (a restart), never a loss
        if sf["seq_resets"] < 1:
            problems.append("telemetry: sFlow replay shows no sequence restart: %r" % sf)
    ent = ifs.get("127_0_0_1/1073741823")
    if ifs.get("interfaces") != 1 or ent is None:
        problems.append("telemetry: interfaces %r" % ifs)
    elif ent["if_type"] != 6 or ent["if_speed"] != 100000000 or ent["in_octets"] <= 0 or \
            ent.get("name") != "lo-sampled" or ent["counter_samples"] < 2:
        problems.append("telemetry: interface entry %r" % ent)
    if run.rc != 0:
        problems.append("telemetry run: exit status %r\n%s" % (run.rc, run.tail(30)))
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return problems


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat", "tshark")
    chk = nmtest.protoc_selfcheck()
    print("protobuf decoder vs protoc --encode:", chk or "agree", flush=True)
    t_start = time.time()
    rows = nmtest.truth_rows()
    only = os.environ.get("NM_GOLDEN_ONLY")  # substring filter, for debugging one file
    if only:
        rows = [r for r in rows if only in r["file"]]
    for name in list(DIFF) + list(INVALID) + list(ERRORS) + list(FIELDS):
        if not any(r["file"] == name for r in nmtest.truth_rows()):
            print("FAIL: %s is listed in the test but not in TRUTH.tsv" % name)
            return 1
    cases = [(r, "protobuf") for r in rows] + [(r, "json") for r in rows
                                                if r["file"] in JSON_CASES]
    print("%d captures, %d engine runs" % (len(rows), len(cases)), flush=True)

    # tshark and kcat run in the background while the engine works on the next file
    bg = concurrent.futures.ThreadPoolExecutor(max_workers=2)

    def dissect(r):
        ports = r["udp_ports"].split(",")
        det = DIFF[r["file"]]["detail"] if r["file"] in DIFF else {}
        drop = det["drop_frames"].split(",") if "drop_frames" in det else ()
        cfl = det["cflow_frames"].split(",") if "cflow_frames" in det else ()
        return tshark_table(r["path"], ports, sflow_ports_of(r["path"], ports),
                            oracle=det.get("oracle"), drop_frames=drop, cflow_frames=cfl)

    tsh_futs = {r["file"]: bg.submit(dissect, r) for r in rows}
    results, failed = [], []
    with nmtest.MockBroker() as broker:
        print("mock broker at %s" % broker.bootstrap, flush=True)
        pending = []
        for i, (truth, fmt) in enumerate(cases):
            topic = "golden-%d-%s" % (i, fmt)
            try:
                run = nmtest.run_engine(truth["path"], broker.bootstrap, fmt=fmt,
                                        ports=truth["udp_ports"], topic=topic,
                                        sets=["engine.stats_interval_ms=0"])
                kc = bg.submit(nmtest.kcat_consume, broker.bootstrap, topic)
            except Exception:  # noqa: BLE001
                run, kc = None, None
                err = traceback.format_exc()
            pending.append((truth, fmt, run, kc, err if run is None else None))
        for truth, fmt, run, kc, err in pending:
            try:
                if run is None:
                    raise RuntimeError(err)
                line, problems = check_case(truth, fmt, run, kc.result(),
                                            tsh_futs[truth["file"]].result())
            except Exception:  # noqa: BLE001
                line, problems = ["-", "-", "-", "ERROR"], [traceback.format_exc()]
            results.append([truth["file"], fmt] + line)
            if problems:
                failed.append("%s (%s)" % (truth["file"], fmt))
                print("FAIL %s (%s):" % (truth["file"], fmt))
                for p in problems:
                    print("    " + p)
                if run is not None:
                    print("    engine: %s\n    --- engine output (tail) ---\n%s"
                          % (" ".join(run.argv), run.tail(15)))
        if not only:
            for name, fn in (("override", lambda: check_override(
                    broker, next(r for r in rows if r["file"] == OVERRIDE_CASE))),
                             ("telemetry", check_telemetry)):
                try:
                    problems = fn()
                except Exception:  # noqa: BLE001
                    problems = [traceback.format_exc()]
                results.append([name, "-", "-", "-", "-", "FAIL" if problems else "ok"])
                if problems:
                    failed.append(name)
                    print("FAIL %s:" % name)
                    for p in problems:
                        print("    " + p)
    bg.shutdown()

    hdr = ["file", "fmt", "engine recs/pkts/bytes", "vs tshark", "fields t/e", "result"]
    widths = [max(len(str(r[i])) for r in results + [hdr]) for i in range(len(hdr))]
    print()
    for r in [hdr] + results:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print()
    for check, table in EXPECTED.items():
        for name, d in sorted(table.items()):
            print("expected difference (%s): %s: %s\n    source: %s" % (check, name, d["why"],
                                                                       d["source"]))
    print("\n%.0f s for %d engine runs" % (time.time() - t_start, len(cases)))
    if failed:
        print("%d of %d cases failed: %s" % (len(failed), len(cases), ", ".join(failed)))
        return 1
    print("all %d cases passed%s" % (len(cases), "" if only else " (and the override and "
                                                                 "telemetry checks)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
