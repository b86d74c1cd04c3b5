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
     Where the engine legitimately differs from tshark, DIFF below gives the engine's exact
     numbers and the reason; any other difference fails;
  3. decode errors from the summary JSON: none on valid captures, except unknown_template, which
     must equal the number of data sets tshark flags "no template found" (the same sets), and
     the per-file exceptions in ERRORS with their reasons. Invalid captures (INVALID) must give
     no row and show their rejection in decode_errors;
  4. per-record fields against tshark's own dissection of the same file (tshark -T json, run here
     with -d udp.port==P,cflow|sflow for the row's ports): every flow record tshark shows is
     projected on (exporter, src addr, dst addr, src port, dst port, protocol, input and output
     interface, src AS, dst AS, sampling rate) and the packets/bytes of each projection are summed;
     the engine's rows, projected the same way, must give exactly the same table (rows merge
     identical keys within a second, so sums are compared, not row counts). Where tshark shows
     fewer records than the engine decodes (held data, a different template keying), every
     projection tshark has must be in the engine's table with the same sums, and the surplus is
     what DIFF explains. FIELDS lists the files where a field legitimately differs and why.
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
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

# --------------------------------------------------------------------------------------------
# Where the engine legitimately differs from tshark's totals: the engine's exact numbers.
# records = summary "records" (before aggregation), packets/bytes = sums over the topic's rows.

DIFF = {
    "generated/softflowd-psamp.pcap": dict(
        records=2445, packets=2445, bytes=1384632,
        why="PSAMP packet reports carry no octetDeltaCount, so tshark counts none; the engine "
            "makes each report one sampled packet of sectionExportedOctets bytes (RECIPES.md: "
            "sum 1384632). tshark also flags 2 frames malformed; they are well-formed"),
    "generated/softflowd-v10-bidir.pcap": dict(
        records=409, packets=2445, bytes=2651189,
        why="RFC 5103 biflows: tshark counts 528 counter values (forward and reverse, zeros "
            "too); the engine makes 264 forward records and a reverse record for the 145 with "
            "reverse traffic (totals equal)"),
    "public/akvorado/historic/ethernet-over-mpls-with-control-word.pcap": dict(
        records=10, packets=10, bytes=14557,
        why="the data set precedes its template: held, decoded when the template arrives (10 "
            "dataLinkFrameSection records, one packet of dataLinkFrameSize bytes each)"),
    "public/akvorado/historic/ipfix_v10_with_mpls_labels.pcap": dict(
        records=127, packets=380, bytes=33820,
        why="10 data sets precede their template: 4 are held per (exporter, domain), so 6 are "
            "decoded late (+22 records, +65 packets, +5785 bytes) and 4 dropped "
            "(pending_dropped)"),
    "public/logstash-codec-netflow/ipfix_nokia_bras.pcap": dict(
        records=1, packets=0, bytes=0,
        why="a flow record without counters: tshark counts records by their octet values"),
    "public/logstash-codec-netflow/ipfix_procera.pcap": dict(
        records=8, packets=0, bytes=0, why="flow records without counters"),
    "public/logstash-codec-netflow/ipfix_options_template_from_juniper_mx240_junos_15_1_r6_s3.pcap":
        dict(records=0, packets=0, bytes=0,
             why="tshark's 76 packets are exporter statistics of an options record "
                 "(cflow.packetsexp), not traffic"),
    "public/logstash-codec-netflow/ipfix_yaf_basic_with_applabel.pcap": dict(
        records=4, packets=10, bytes=596,
        why="YAF counts with octetTotalCount/packetTotalCount (85/86; tshark files them as "
            "permanent counters, not cflow.octets) and RFC 5103 reverse counters"),
    "public/pmacct/112-IPFIXv10-CISCO-options-map-reassignment/traffic-00.pcap": dict(
        records=9, packets=19, bytes=1197,
        why="the collector address changes mid-capture; Wireshark keys templates by address "
            "and port pair and decodes nothing, the engine keys by exporter and domain "
            "(SOURCES.md's independent decoder: 9/19/1197)"),
    "public/akvorado/netflow/data+templates.pcap": dict(
        records=21, packets=66, bytes=58329,
        why="a data flowset precedes its own template in the same datagram: held and decoded "
            "when the template follows (+11 records, +18 packets, +3737 bytes)"),
    "public/akvorado/netflow/nat.pcap": dict(
        records=9, packets=0, bytes=0, why="NAT events without counters"),
    "public/logstash-codec-netflow/netflow_9_cisco_asa.pcap": dict(
        records=14, packets=0, bytes=888,
        why="ASA NSEL events count bytes in octetTotalCount (85), which tshark does not call "
            "octets"),
    "public/logstash-codec-netflow/netflow_9_cisco_asa_2.pcap": dict(
        records=19, packets=0, bytes=0, why="NSEL events without counters"),
    "public/logstash-codec-netflow/netflow_9_macaddress.pcap": dict(
        records=29, packets=0, bytes=0, why="flow records without counters"),
    "public/logstash-codec-netflow/netflow_9_fortigate_fortios_5_2_1.pcap": dict(
        records=1, packets=3, bytes=152,
        why="tshark adds OctetsExp/PacketsExp (exporter statistics in an options record) to "
            "the totals"),
    "public/logstash-codec-netflow/netflow_9_h3c.pcap": dict(
        records=16, packets=6113, bytes=8729687,
        why="tshark marks the data flowset malformed after the first record; all 16 are "
            "well-formed (SOURCES.md's independent decoder: 16/6113/8729687)"),
    "public/tcpdump/sflow_multiple_counter_30_pdus.pcap": dict(
        records=7, packets=12, bytes=1953, sflow_records=0,
        why="frames 13 and 19-22 are NetFlow v5 datagrams sent to port 6343: tshark, told the "
            "port is sFlow, shows nothing for them; the engine recognises them by their header "
            "and decodes their 7 NetFlow v5 records (SOURCES.md: 7 records, 12 packets, 1953 "
            "bytes). No sFlow record, as in TRUTH. tshark's 2 malformed frames are well-formed "
            "hsflowd counter samples (Wireshark 4.0 misreads host_adapters)"),
}

# Invalid on purpose: no row may come out, and the rejection must be counted by reason.
INVALID = {
    "public/logstash-codec-netflow/netflow_5_invalid_01.pcap": dict(
        errors={"bad_count": 1},
        why="header count 55582 for 30 records: the header cannot be trusted, the datagram is "
            "rejected whole (tshark sums the garbage it finds, hence TRUTH's huge numbers)"),
    "public/logstash-codec-netflow/netflow_5_invalid_02.pcap": dict(
        errors={"bad_count": 1},
        why="header count 163 for 30 records (NetFlow v5 carries at most 30): rejected whole"),
    "public/logstash-codec-netflow/netflow_9_invalid_01.pcap": dict(
        errors={"bad_count": 1},
        why="decided here: the header count (2) is below the 6 flowsets it is followed by (2 "
            "templates, 1 options template, 1 options record, 2 flow records - RFC 3954 5.1 "
            "defines Count as the records of the packet, many exporters count flowsets "
            "instead). A count below the flowsets fits neither reading, and nothing says which "
            "of the records are the ones the header announces (tshark decodes the first two "
            "flowsets, both templates, so 0 records too). The datagram is rejected whole, "
            "before any of its templates is learnt, as NetFlow v5 does with a count that does "
            "not match its payload"),
    "public/tcpdump/sflow_print-segv.pcap": dict(
        errors={"truncated": 1},
        why="tcpdump's segfault regression: a flow sample with a bogus record count whose "
            "records run past the end of the datagram (truncated); tshark flags it malformed "
            "and shows no record"),
}

# Decode errors a valid capture legitimately shows (besides unknown_template, checked against
# tshark's "no template found" sets). Engine numbers, exact.
ERRORS = {
    "public/pmacct/112-IPFIXv10-CISCO-options-map-reassignment/traffic-00.pcap": dict(
        errors={"unknown_template": 4},
        why="4 data sets reference templates 313/341/342/348, which are never sent (SOURCES.md); "
            "tshark flags 6 sets because it also loses the templates it has when the collector "
            "address changes (it keys templates by address and port pair)"),
}

# Per-record field differences that are legitimate: file -> reason; the field comparison then
# checks totals only for that file.
FIELDS = {
    "generated/softflowd-psamp.pcap":
        "PSAMP reports carry the sampled frame as dataLinkFrameSection (IE 315): the engine "
        "parses the frame for addresses and ports; tshark shows the section as bytes in the "
        "record and dissects the frame as layers of the datagram, not of the record",
    "public/akvorado/historic/ethernet-over-mpls-with-control-word.pcap":
        "the only data set comes before its template, so tshark shows no record to compare "
        "(and its records are dataLinkFrameSections, see softflowd-psamp)",
}

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


def counters(f):
    """(forward packets, bytes), (reverse packets, bytes) or None, with the engine's IE
    preference: delta, then total (permanent), then post counters."""
    octs = as_list(f.get("cflow.octets"))
    pkts = as_list(f.get("cflow.packets"))
    rev = None
    if len(octs) == 2 or len(pkts) == 2:
        # RFC 5103 biflow: tshark lists the reverse counters after the forward ones
        ro = int(octs[1]) if len(octs) == 2 else 0
        rp = int(pkts[1]) if len(pkts) == 2 else 0
        if ro or rp:
            rev = (rp, ro)
    b = int(octs[0]) if octs else num(first(f, "cflow.permanent_octets", "cflow.post_octets"))
    p = int(pkts[0]) if pkts else num(first(f, "cflow.permanent_packets", "cflow.post_packets"))
    return (p, b), rev


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
            for tk, tv in s.items():
                if tk.startswith("Options Template (Id = "):
                    for t in as_list(tv):
                        st.options.add((exporter, domain, num(t.get("cflow.template_id"))))
                if "no template found" in tk:
                    st.no_template += len(as_list(tv))
            sid = num(s.get("cflow.flowset_id"))
            is_opt = (exporter, domain, sid) in st.options
            for fk, fv in s.items():
                if not fk.startswith("Flow "):
                    continue
                for f in as_list(fv):
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
                    out.append((proj(exporter, src, dst, sport, dport, proto, in_if, out_if, sas,
                                     das, rate), p, b))
                    if rev is not None:
                        out.append((proj(exporter, dst, src, dport, sport, proto, out_if, in_if,
                                         das, sas, rate), rev[0], rev[1]))
    return out


def tshark_table(path, ports, sflow_ports):
    """{projection: [packets, bytes, records]}, tshark's no-template set count."""
    frames = tshark_json(path, ports, sflow_ports)
    table = collections.defaultdict(lambda: [0, 0, 0])
    st = CflowState()
    for fr in frames:
        layers = fr["_source"]["layers"]
        ip = layers.get("ip") or layers.get("ipv6") or {}
        ip = as_list(ip)[0]
        exporter = norm_addr(first(ip, "ip.src", "ipv6.src", default=""))
        recs = []
        for sf in as_list(layers.get("sflow")):
            # sFlow rows carry the agent address the datagram states, not its IP source
            recs += sflow_records(sf, norm_addr(first(sf, "sflow_245.agent",
                                                      "sflow_245.agent.v6", default="")))
        for cf in as_list(layers.get("cflow")):
            recs += cflow_records(cf, exporter, st)
        for pj, p, b in recs:
            e = table[pj]
            e[0] += p
            e[1] += b
            e[2] += 1
    return dict(table), st.no_template


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

def compare_tables(eng, tsh, exact):
    """Problems (list of text). exact: tables equal; otherwise tshark's entries must be in the
    engine's with equal sums."""
    problems = []
    for pj, (p, b, n) in sorted(tsh.items()):
        e = eng.get(pj)
        if e is None:
            problems.append("tshark record(s) with no engine row: %s pkts %d bytes %d (x%d)"
                            % (dict(zip(Projection.FIELDS, pj)), p, b, n))
        elif (e[0], e[1]) != (p, b):
            problems.append("%s: engine %d pkts %d bytes, tshark %d pkts %d bytes"
                            % (dict(zip(Projection.FIELDS, pj)), e[0], e[1], p, b))
    if exact:
        for pj, (p, b, n) in sorted(eng.items()):
            if pj not in tsh:
                problems.append("engine row(s) tshark does not show: %s pkts %d bytes %d (x%d)"
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
        want_sf = d.get("sflow_records", truth["records"]) if d else truth["records"]
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
    table_e = engine_table(rows)
    if f in FIELDS:
        fields = "skipped"
    else:
        fp = compare_tables(table_e, table_t, exact=d is None)
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


def telemetry_query(prefix, cmd, timeout=10):
    import socket
    path = "/var/run/dpdk/%s/dpdk_telemetry.v2" % prefix
    deadline = time.time() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(5)
            s.connect(path)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    s.recv(16384)
    s.send(cmd.encode())
    data = s.recv(1 << 20)
    s.close()
    return json.loads(data.decode())[cmd.split(",")[0]]


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
    prefix = "nmgolden%d" % os.getpid()
    argv = [nmtest.ENGINE, "-c", ini, "--duration", "6", "--", "--no-huge", "-m", "512",
            "--file-prefix=" + prefix]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    problems = []
    try:
        # Start-up takes 1.2-2.1 s at load 10-13 (EAL, ports, pools pre-faulted), so a fixed
        # 2 s sleep raced it: wait until the command is registered (20 s at most), then give
        # the looping ports 1 s of traffic as before.
        deadline = time.time() + 20
        while telemetry_query(prefix, "/netmeta/exporters") is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        exp = telemetry_query(prefix, "/netmeta/exporters")
        ifs = telemetry_query(prefix, "/netmeta/interfaces,127.0.0.1")
    finally:
        nmtest.kill_group(proc, timeout=30)
        out = proc.communicate()[0].decode(errors="replace")
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
    if proc.returncode not in (0,):
        problems.append("telemetry run: exit status %r\n%s" % (proc.returncode, out[-2000:]))
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
        return tshark_table(r["path"], ports, sflow_ports_of(r["path"], ports))

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
    for name, d in sorted(list(DIFF.items()) + list(INVALID.items())):
        print("expected difference: %s: %s" % (name, d["why"]))
    for name, d in sorted(list(ERRORS.items()) + [(k, {"why": v}) for k, v in FIELDS.items()]):
        print("expected difference: %s: %s" % (name, d["why"]))
    print("\n%.0f s for %d engine runs" % (time.time() - t_start, len(cases)))
    if failed:
        print("%d of %d cases failed: %s" % (len(failed), len(cases), ", ".join(failed)))
        return 1
    print("all %d cases passed%s" % (len(cases), "" if only else " (and the override and "
                                                                 "telemetry checks)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
