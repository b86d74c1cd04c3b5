#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The ClickHouse side as a user meets it: README's example queries, the InterfaceNames/Exporters
dictionaries from netmeta.ini, the schema against NetMeta's.

1. Without a server:
   - proto/flow.proto against NetMeta's pb/FlowMessage.proto (field numbers, names and types,
     transcribed below from monogon-dev/NetMeta; see proto/clickhouse/README.md); the protobuf
     variant's Kafka table names only flow.proto fields, each in a column type that holds it;
   - scripts/clickhouse-dicts.py refuses bad [exporter.*] sections (exit 2, names the key).
2. A private clickhouse-server 18.16 and the mock broker:
   - json DDL applied; `scripts/clickhouse.sh dicts DIR json INI` from a test ini with three
     exporters: the two of the captures, whose addresses and ifIndexes are taken from the
     captures with tshark, and an IPv6 one without traffic;
   - the Device keys clickhouse-dicts.py writes equal ClickHouse's own IPv6NumToString() of the
     same addresses (edge cases of the text form included);
   - flows_raw against NetMeta's flows_raw: columns and types (IPv6 -> FixedString(16) on 18.16),
     ORDER BY, PARTITION BY;
   - the protobuf variant's DDL as far as 18.16 goes: the Kafka table exactly as written, and
     the three objects with IPv6 -> FixedString(16) and without TTL (checked on its own) in a
     scratch database, one row pushed through its view;
   - the engine (-c the same ini, kafka.format=json) on two captures, one engine run each:
     NetFlow v9 from softflowd sampled 1:10 (options data, the ini says 1:10 too), NetFlow v5
     from a router with interface indexes that announces no rate (the ini overrides: 1:3);
   - every row's SamplingRate is its exporter's rate and equals the Exporters dictionary's;
   - flows_raw count() == rows the engines reported (no duplicates, no losses), also after a
     settle time; sum(Packets)/sum(Bytes) == TRUTH.tsv;
   - the three queries of README.md's "Your ClickHouse" section, extracted from README.md and
     run as written, give exactly the values computed from tshark's decode of the captures
     (every record's packets and octets times its exporter's sampling interval, per second, per
     source address, per input interface with the ini's names); scaled totals == TRUTH.tsv
     times the rate (softflowd 1:10: 2450 packets, 2669550 bytes, as
     ../shared/corpora/generated/RECIPES.md says; the v5 router x 3);
   - retention on 18.16: `clickhouse.sh prune DIR DAYS` with DAYS = days since the newest
     capture's date drops exactly the older capture's daily partition.
"""
import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

TOPIC = "flow-messages"
WAIT_S = 90        # at most this long for flows_raw to hold what was produced
SETTLE_S = 16      # then this long more (> 2 x 7.5 s Kafka engine flush) to catch late duplicates
DICTS_PY = os.path.join(nmtest.SOURCE, "scripts", "clickhouse-dicts.py")

# (capture under CORPORA, UDP port, exporter section name, sampling_rate in the ini or None)
# softflowd announces 1:10 (options data) and the ini says the same; the v5 router announces
# nothing (1:1) and the ini overrides it with 1:3, which the engine applies.
CAPTURES = [
    ("generated/softflowd-v9-sampled10.pcap", 2055, "softflowd", 10),
    ("public/akvorado/netflow/nfv5.pcap", 9990, "akvorado-mx", 3),
]
IPV6_EXPORTER = ("core6", "2001:db8:0:1::1", {5: "et-0/0/5 backbone", 6: "et-0/0/6 backbone"})

# NetMeta's FlowMessage (monogon-dev/NetMeta pb/FlowMessage.proto, commits ce747ca and 66ffc47,
# identical in fields): number -> (name, type). Fields 43-52 (encapsulation) and 63-64 (PPP)
# are NetMeta's own; the engine leaves them out (goflow2 numbers them differently).
NETMETA_PROTO = {
    1: ("Type", "FlowType"), 2: ("TimeReceived", "uint64"), 3: ("SamplingRate", "uint64"),
    4: ("SequenceNum", "uint32"), 5: ("TimeFlowEnd", "uint64"), 6: ("SrcAddr", "bytes"),
    7: ("DstAddr", "bytes"), 9: ("Bytes", "uint64"), 10: ("Packets", "uint64"),
    11: ("SamplerAddress", "bytes"), 12: ("NextHop", "bytes"), 13: ("NextHopAS", "uint32"),
    14: ("SrcAS", "uint32"), 15: ("DstAS", "uint32"), 16: ("SrcNet", "uint32"),
    17: ("DstNet", "uint32"), 18: ("InIf", "uint32"), 19: ("OutIf", "uint32"),
    20: ("Proto", "uint32"), 21: ("SrcPort", "uint32"), 22: ("DstPort", "uint32"),
    23: ("IPTos", "uint32"), 24: ("ForwardingStatus", "uint32"), 25: ("IPTTL", "uint32"),
    26: ("TCPFlags", "uint32"), 27: ("SrcMac", "uint64"), 28: ("DstMac", "uint64"),
    29: ("VlanId", "uint32"), 30: ("Etype", "uint32"), 31: ("IcmpType", "uint32"),
    32: ("IcmpCode", "uint32"), 33: ("SrcVlan", "uint32"), 34: ("DstVlan", "uint32"),
    35: ("FragmentId", "uint32"), 36: ("FragmentOffset", "uint32"),
    37: ("IPv6FlowLabel", "uint32"), 38: ("TimeFlowStart", "uint64"),
    39: ("IngressVrfID", "uint32"), 40: ("EgressVrfID", "uint32"),
    41: ("BiFlowDirection", "uint32"), 42: ("FlowDirection", "uint32"),
    43: ("HasEncap", "bool"), 44: ("SrcAddrEncap", "bytes"), 45: ("DstAddrEncap", "bytes"),
    46: ("ProtoEncap", "uint32"), 47: ("EtypeEncap", "uint32"), 48: ("IPTosEncap", "uint32"),
    49: ("IPTTLEncap", "uint32"), 50: ("IPv6FlowLabelEncap", "uint32"),
    51: ("FragmentIdEncap", "uint32"), 52: ("FragmentOffsetEncap", "uint32"),
    53: ("HasMPLS", "bool"), 54: ("MPLSCount", "uint32"), 55: ("MPLS1TTL", "uint32"),
    56: ("MPLS1Label", "uint32"), 57: ("MPLS2TTL", "uint32"), 58: ("MPLS2Label", "uint32"),
    59: ("MPLS3TTL", "uint32"), 60: ("MPLS3Label", "uint32"), 61: ("MPLSLastTTL", "uint32"),
    62: ("MPLSLastLabel", "uint32"), 63: ("HasPPP", "bool"), 64: ("PPPAddressControl", "uint32"),
}
NETMETA_ONLY = set(range(43, 53)) | {63, 64}
OURS_ONLY = {70: ("ObservationDomainID", "uint32"),   # goflow2's number
             2000: ("Flows", "uint64")}              # the engine's merged-records count

# NetMeta's flows_raw (deploy/single-node/schema/0001_create_flows_raw.sql, commit d13c1f3):
# columns in order, ORDER BY, PARTITION BY. The json variant stores IPv6 as FixedString(16).
NETMETA_FLOWS_RAW = [
    ("Date", "Date"),
    ("FlowType", "Enum8('FLOWUNKNOWN' = 0, 'SFLOW_5' = 1, 'NETFLOW_V5' = 2, 'NETFLOW_V9' = 3, "
                 "'IPFIX' = 4)"),
    ("SequenceNum", "UInt64"), ("TimeReceived", "UInt64"), ("SamplingRate", "UInt64"),
    ("FlowDirection", "UInt8"), ("SamplerAddress", "IPv6"), ("TimeFlowStart", "UInt64"),
    ("TimeFlowEnd", "UInt64"), ("Bytes", "UInt64"), ("Packets", "UInt64"), ("SrcAddr", "IPv6"),
    ("DstAddr", "IPv6"), ("EType", "UInt16"), ("Proto", "UInt8"), ("SrcPort", "UInt32"),
    ("DstPort", "UInt32"), ("InIf", "UInt32"), ("OutIf", "UInt32"), ("SrcMac", "UInt64"),
    ("DstMac", "UInt64"), ("SrcVlan", "UInt32"), ("DstVlan", "UInt32"), ("VlanId", "UInt32"),
    ("IngressVrfId", "UInt32"), ("EgressVrfId", "UInt32"), ("IPTos", "UInt8"),
    ("ForwardingStatus", "UInt8"), ("IPTTL", "UInt8"), ("TCPFlags", "UInt8"),
    ("IcmpType", "UInt8"), ("IcmpCode", "UInt8"), ("IPv6FlowLabel", "UInt32"),
    ("FragmentId", "UInt32"), ("FragmentOffset", "UInt32"), ("BiFlowDirection", "UInt8"),
    ("SrcAS", "UInt32"), ("DstAS", "UInt32"), ("NextHop", "IPv6"), ("NextHopAS", "UInt32"),
    ("SrcNet", "UInt8"), ("DstNet", "UInt8"),
]
NETMETA_ORDER_BY = "(TimeReceived, FlowDirection, SamplerAddress, SrcAS, DstAS, SrcAddr, DstAddr)"
NETMETA_PARTITION_BY = "Date"

# Addresses whose text form has edge cases (IPv4-mapped/-compatible, zero runs, ties).
KEY_CASES = ["192.0.2.1", "0.0.0.0", "::ffff:0.0.0.1", "::1.2.3.4", "::", "::1", "1::",
             "2001:db8::1", "2001:db8:0:1:0:0:0:1", "2001:db8:0:0:1:0:0:1", "1:0:0:2:0:0:0:3",
             "2001:0:0:1::", "fe80::1:0:0:0", "ff02::1:ff00:1", "::ffff:0:1.2.3.4",
             "abcd:ef01:2345:6789:abcd:ef01:2345:6789", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7::"]


class Fail(Exception):
    pass


# --------------------------------------------------------------------------------------------
# README

def readme_section():
    text = open(os.path.join(nmtest.SOURCE, "README.md"), encoding="utf-8").read()
    m = re.search(r"^## Your ClickHouse\n(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        raise Fail("README.md has no '## Your ClickHouse' section")
    return m.group(1)


def readme_queries():
    """The "-- query: NAME" SQL blocks of README.md's "## Your ClickHouse" section."""
    out = {}
    for block in re.findall(r"^```sql\n(.*?)^```", readme_section(), re.S | re.M):
        first = block.split("\n", 1)[0]
        q = re.match(r"--\s*query:\s*(.+)$", first)
        if q:
            out[q.group(1).strip()] = block
    return out


# --------------------------------------------------------------------------------------------
# proto/flow.proto against NetMeta's

def check_proto(problems):
    text = open(os.path.join(nmtest.SOURCE, "proto", "flow.proto")).read()
    text = re.sub(r"//[^\n]*", "", text)
    ours = {}
    for typ, name, num in re.findall(r"^\s*(\w+)\s+(\w+)\s*=\s*(\d+)\s*;", text, re.M):
        ours[int(num)] = (name, typ)
    enum = dict((v, int(n)) for v, n in re.findall(r"^\s*([A-Z0-9_]+)\s*=\s*(\d+)\s*;", text, re.M))
    if enum != {"FLOWUNKNOWN": 0, "SFLOW_5": 1, "NETFLOW_V5": 2, "NETFLOW_V9": 3, "IPFIX": 4}:
        problems.append("flow.proto FlowType values %r differ from NetMeta's" % enum)
    for num, (name, typ) in sorted(ours.items()):
        want = NETMETA_PROTO.get(num) or OURS_ONLY.get(num)
        if want != (name, typ):
            problems.append("flow.proto field %d is %s %s, NetMeta/goflow2 has %r" % (num, typ, name, want))
    for num, want in sorted(NETMETA_PROTO.items()):
        if num not in NETMETA_ONLY and num not in ours:
            problems.append("flow.proto lacks NetMeta's field %d %r" % (num, want))
    # The protobuf variant's Kafka table: ClickHouse's Protobuf format matches columns to fields
    # by name; every column must name a field of flow.proto and hold its type.
    fits = {"bytes": ("IPv6",), "uint64": ("UInt64",), "bool": ("UInt8",),
            "uint32": ("UInt8", "UInt16", "UInt32", "UInt64"), "FlowType": ("Enum8",)}
    by_name = {n: t for n, t in ours.values()}
    qsql = ddl_text("protobuf", "0002_flows_queue.sql")
    body = qsql[qsql.index("CREATE TABLE"):qsql.index("ENGINE")]
    cols = re.findall(r"^\s+(\w+)\s+(\w+)", body, re.M)
    for col, typ in cols:
        if col not in by_name:
            problems.append("protobuf flows_queue column %s: no such field in flow.proto" % col)
        elif typ not in fits[by_name[col]]:
            problems.append("protobuf flows_queue column %s %s cannot hold proto %s" % (col, typ, by_name[col]))
    unread = sorted(set(by_name) - set(c for c, _ in cols))
    if unread != sorted(["HasMPLS", "MPLSCount", "MPLS1TTL", "MPLS1Label", "MPLS2TTL", "MPLS2Label",
                         "MPLS3TTL", "MPLS3Label", "MPLSLastTTL", "MPLSLastLabel", "ObservationDomainID"]):
        problems.append("protobuf flows_queue leaves out %r (want only MPLS and ObservationDomainID, "
                        "as NetMeta)" % unread)
    print("protobuf flows_queue: %d columns, each a flow.proto field of a fitting type; not read: "
          "%s" % (len(cols), ", ".join(unread)), flush=True)
    print("flow.proto: %d fields; %d of NetMeta's %d match by number, name and type "
          "(%d encap/PPP fields left out), + ObservationDomainID 70" % (
              len(ours), sum(1 for n in ours if NETMETA_PROTO.get(n) == ours[n]),
              len(NETMETA_PROTO), len(NETMETA_ONLY)), flush=True)


# --------------------------------------------------------------------------------------------
# clickhouse-dicts.py without a server

def run_dicts(ini_text, out):
    ini = os.path.join(out, "t.ini")
    with open(ini, "w") as f:
        f.write(ini_text)
    return subprocess.run([sys.executable, DICTS_PY, "-c", ini, "-o", os.path.join(out, "o")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)


def check_dicts_rejects(problems, tmp):
    bad = [
        ("[exporter.a]\ndescription = x\n", "address is required"),
        ("[exporter.a]\naddress = 300.1.1.1\n", "not an IPv4 or IPv6"),
        ("[exporter.a]\naddress = 2001:db8::1%eth0\n", "not an IPv4 or IPv6"),
        ("[exporter.a]\naddress = 10.0.0.1\n[exporter.b]\naddress = ::ffff:10.0.0.1\n",
         "same exporter"),
        ("[exporter.a]\naddress = 10.0.0.1\ninterface.x = y\n", "interface.<ifIndex>"),
        ("[exporter.a]\naddress = 10.0.0.1\ninterface.4294967296 = y\n", "interface.<ifIndex>"),
        ("[exporter.a]\naddress = 10.0.0.1\nsampling_rate = 0\n", "sampling_rate"),
        ("[exporter.a]\naddress = 10.0.0.1\nsamplingrate = 10\n", "unknown key 'samplingrate'"),
        ("[exporter.a]\naddress = 10.0.0.1\naddress = 10.0.0.2\n", "address"),
        ("[exporter.a b]\naddress = 10.0.0.1\n", "exporter name"),
        ("[exporter.a]\naddress = 10.0.0.1\ninterface.1 = %s\n" % ("x" * 64), "1 to 63 bytes"),
        ("[exporter.a]\naddress = 10.0.0.1\nsampling_rate = 4294967297\n", "sampling_rate"),
    ]
    for ini, want in bad:
        p = run_dicts(ini, tmp)
        err = p.stderr.decode(errors="replace")
        if p.returncode != 2 or want not in err:
            problems.append("clickhouse-dicts.py on %r: exit %d, %r (want exit 2 and %r)" % (
                ini, p.returncode, err.strip(), want))
    print("clickhouse-dicts.py: %d bad [exporter.*] sections refused with exit 2" % len(bad), flush=True)
    # README's example section is accepted and gives what it says
    blocks = re.findall(r"^```ini\n(.*?)^```", readme_section(), re.S | re.M)
    if len(blocks) != 1:
        problems.append("README 'Your ClickHouse' has %d ini examples, expected 1" % len(blocks))
        return
    p = run_dicts(blocks[0], tmp)
    try:
        with open(os.path.join(tmp, "o", "InterfaceNames.tsv")) as f:
            ifs = f.read()
        with open(os.path.join(tmp, "o", "Exporters.tsv")) as f:
            exs = f.read()
    except OSError:
        ifs = exs = None
    if p.returncode != 0 or exs != "::ffff:192.0.2.1\tedge1\tFrankfurt edge\t1000\n" or \
            ifs != ("::ffff:192.0.2.1\t17\txe-0/0/1 transit-A\n"
                    "::ffff:192.0.2.1\t18\txe-0/0/2 peering-IX\n"):
        problems.append("README's ini example: exit %d, %r / %r" % (p.returncode, exs, ifs))
    else:
        print("README's [exporter.edge1] example: accepted, 1 exporter and 2 interface names", flush=True)


# --------------------------------------------------------------------------------------------
# tshark: every flow record of a capture

def _pairs(pairs):
    d = collections.OrderedDict()
    for k, v in pairs:
        if k in d:   # tshark -T json repeats keys; keep all values
            if not isinstance(d[k], list) or not getattr(d[k], "_multi", False):
                lst = _Multi([d[k]])
                d[k] = lst
            d[k].append(v)
        else:
            d[k] = v
    return d


class _Multi(list):
    _multi = True


def _walk(o, found):
    if isinstance(o, dict):
        if "cflow.packets" in o and "cflow.octets" in o:
            found.append(o)
            return
        for v in o.values():
            _walk(v, found)
    elif isinstance(o, list):
        for v in o:
            _walk(v, found)


def _find_key(o, key):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == key:
                return v
            r = _find_key(v, key)
            if r is not None:
                return r
    elif isinstance(o, list):
        for v in o:
            r = _find_key(v, key)
            if r is not None:
                return r
    return None


def tshark_records(path, port):
    """-> (records, exporter address text, sampling rate). A record: dict second, exporter,
    src (text, IPv4-mapped for IPv4), inif, outif, packets, octets. The rate is the exporter's:
    NetFlow v9 options data samplingInterval (IE 34), else the v5 header's sample rate, else 1;
    one rate per capture (the captures chosen have one)."""
    p = subprocess.run(["tshark", "-r", path, "-d", "udp.port==%d,cflow" % port, "-T", "json"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
    if p.returncode != 0:
        raise Fail("tshark failed on %s" % path)
    frames = json.loads(p.stdout.decode(), object_pairs_hook=_pairs)
    records, exporters, rates = [], set(), set()
    for fr in frames:
        layers = fr["_source"]["layers"]
        cf = layers.get("cflow")
        if cf is None:
            continue
        exp = layers["ip"]["ip.src"] if "ip" in layers else layers["ipv6"]["ipv6.src"]
        exporters.add(exp)
        sec = int(float(layers["frame"]["frame.time_epoch"]))
        si = _find_key(cf, "cflow.sampling_interval")
        if si is not None and int(si) > 0:
            rates.add(int(si))
        sr = cf.get("cflow.samplerate")
        if sr is not None and int(sr) > 0:
            rates.add(int(sr))
        found = []
        _walk(cf, found)
        for r in found:
            src = r.get("cflow.srcaddr")
            src = "::ffff:" + src if src else r.get("cflow.srcaddrv6")
            records.append({"second": sec, "exporter": exp, "src": src,
                            "inif": int(r.get("cflow.inputint", 0)),
                            "outif": int(r.get("cflow.outputint", 0)),
                            "packets": int(r["cflow.packets"]), "octets": int(r["cflow.octets"])})
    if len(exporters) != 1 or len(rates) > 1:
        raise Fail("%s: expected one exporter and one sampling rate, tshark shows %r / %r" % (
            path, exporters, rates))
    return records, exporters.pop(), (rates.pop() if rates else 1)


def _load_dicts_module():
    spec = importlib.util.spec_from_file_location("clickhouse_dicts", DICTS_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_DICTS = None


def addr_text(text):
    """Text of an address as clickhouse-dicts.py writes it for the Device key (checked against
    ClickHouse's IPv6NumToString below)."""
    global _DICTS
    if _DICTS is None:
        _DICTS = _load_dicts_module()
    return _DICTS.device_key(text)


# --------------------------------------------------------------------------------------------
# schema checks on the server

def tsv_unescape(v):
    """A TabSeparated field as ClickHouse escapes it -> the value."""
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "0": "\0"}.get(m.group(1), m.group(1)), v)


def check_flows_raw(ch, problems):
    desc = ch.query("DESCRIBE TABLE flows_raw")
    cols = [(tsv_unescape(r[0]), tsv_unescape(r[1])) for r in desc]
    want = [(n, "FixedString(16)" if t == "IPv6" else t) for n, t in NETMETA_FLOWS_RAW]
    want.append(("Flows", "UInt64"))   # ours, last, DEFAULT 1 (NetMeta's view leaves it out)
    if cols != want:
        diff = [(a, b) for a, b in zip(cols, want) if a != b]
        problems.append("json flows_raw columns differ from NetMeta's: %d vs %d columns, first "
                        "differences %r" % (len(cols), len(want), diff[:3]))
    create = ch.query("SHOW CREATE TABLE flows_raw")[0][0]
    if "PARTITION BY %s " % NETMETA_PARTITION_BY not in create + " " or \
            "ORDER BY %s" % NETMETA_ORDER_BY not in create:
        problems.append("json flows_raw: PARTITION BY/ORDER BY differ from NetMeta's: %s" % create[-200:])
    print("json flows_raw: %d columns as NetMeta's (IPv6 as FixedString(16)), PARTITION BY %s, "
          "ORDER BY %s" % (len(cols), NETMETA_PARTITION_BY, NETMETA_ORDER_BY), flush=True)


def ddl_text(variant, name):
    with open(os.path.join(nmtest.SOURCE, "proto", "clickhouse", variant, name)) as f:
        return f.read()


def subst(sql, brokers):
    return (sql.replace("{{KAFKA_BROKERS}}", brokers).replace("{{KAFKA_TOPIC}}", "pb-check")
            .replace("{{KAFKA_GROUP}}", "pb-check").replace("{{RETENTION_DAYS}}", "7")
            .replace("{{FLOW_DIRECTION}}", "FlowDirection"))   # no direction rules


def check_protobuf_ddl(ch, problems):
    """The protobuf variant on 18.16, as far as it goes."""
    client = ["clickhouse-client", "--host", "127.0.0.1", "--port", str(ch.tcp)]

    def run(sql, db):
        p = subprocess.run(client + ["--database", db, "--multiquery", "--query", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stderr.decode(errors="replace").strip()

    # a port where nothing listens: the Kafka table must not consume anything
    dead = "127.0.0.1:%d" % nmtest.free_port()
    raw = subst(ddl_text("protobuf", "0001_flows_raw.sql"), dead)
    queue = subst(ddl_text("protobuf", "0002_flows_queue.sql"), dead)
    view = subst(ddl_text("protobuf", "0003_flows_raw_view.sql"), dead)
    ttl = re.findall(r"^TTL .*$", raw, re.M)
    if ttl != ["TTL Date + INTERVAL 7 DAY;"]:
        problems.append("protobuf flows_raw: TTL clause %r, want 'TTL Date + INTERVAL {{RETENTION_DAYS}} DAY'" % ttl)
    raw18 = re.sub(r"\)\s*\nTTL .*;", ");", re.sub(r"\bIPv6\b(?=,|\s*\n)", "FixedString(16)", raw))
    queue18 = re.sub(r"\bIPv6\b(?=,|\s*\n)", "FixedString(16)", queue)
    for db in ("nm_pb_check", "nm_pb_kafka"):
        ch.query("DROP DATABASE IF EXISTS %s" % db)
        ch.query("CREATE DATABASE %s" % db)
    try:
        # 1. the Kafka table as written, but for IPv6: 18.16 takes format Protobuf and kafka_schema
        rc, err = run(queue18, "nm_pb_kafka")
        if rc != 0:
            problems.append("protobuf 0002_flows_queue.sql (IPv6 -> FixedString(16)) refused by 18.16: %s" % err)
        else:
            create = ch.query("SHOW CREATE TABLE nm_pb_kafka.flows_queue")[0][0]
            if "kafka_format = \\'Protobuf\\'" not in create or "kafka_schema = \\'flow.proto:FlowMessage\\'" not in create:
                problems.append("protobuf flows_queue lost its format/schema: %s" % create[-300:])
        ch.query("DROP TABLE IF EXISTS nm_pb_kafka.flows_queue")
        # 2. flows_raw and the view, with the queue as a Memory table, one row through the view
        mem = re.sub(r"ENGINE = Kafka\(\)\s*SETTINGS.*;", "ENGINE = Memory;", queue18, flags=re.S)
        for what, sql in (("0001_flows_raw.sql", raw18), ("0002_flows_queue.sql as Memory", mem),
                          ("0003_flows_raw_view.sql", view)):
            rc, err = run(sql, "nm_pb_check")
            if rc != 0:
                raise Fail("protobuf %s refused by 18.16: %s" % (what, err))
        rc, err = run("INSERT INTO flows_queue (Type, TimeReceived, SamplingRate, SamplerAddress, "
                      "SrcAddr, DstAddr, Bytes, Packets, Etype, IngressVrfID, EgressVrfID, InIf) "
                      "SELECT 'NETFLOW_V9', 1680655485, 100, "
                      "toFixedString(IPv6StringToNum('::ffff:192.0.2.1'), 16), "
                      "toFixedString(IPv6StringToNum('2001:db8::1'), 16), "
                      "toFixedString(IPv6StringToNum('::ffff:10.0.0.1'), 16), 1500, 1, 2048, 7, 8, 3",
                      "nm_pb_check")
        if rc != 0:
            raise Fail("insert into the protobuf flows_queue (Memory) failed: %s" % err)
        got = ch.query("SELECT Date, FlowType, TimeReceived, SamplingRate, "
                       "IPv6NumToString(SamplerAddress), IPv6NumToString(SrcAddr), Bytes, Packets, "
                       "EType, IngressVrfId, EgressVrfId, InIf FROM nm_pb_check.flows_raw")
        want = [["2023-04-05", "NETFLOW_V9", "1680655485", "100", "::ffff:192.0.2.1", "2001:db8::1",
                 "1500", "1", "2048", "7", "8", "3"]]
        if got != want:
            problems.append("protobuf view on 18.16: flows_raw holds %r, want %r" % (got, want))
        pb = [(r[0], r[1]) for r in ch.query("DESCRIBE TABLE nm_pb_check.flows_raw")]
        js = [(r[0], r[1]) for r in ch.query("DESCRIBE TABLE default.flows_raw")]
        if pb != js:
            problems.append("protobuf flows_raw (IPv6 as FixedString(16)) differs from json flows_raw")
        print("protobuf DDL on 18.16: Kafka table as written (format Protobuf, kafka_schema) "
              "accepted; flows_raw/view accepted with IPv6 -> FixedString(16) and without TTL; "
              "one row through the view: %s" % ("ok" if got == want else "WRONG"), flush=True)
    except Fail as e:
        problems.append(str(e))
    finally:
        for db in ("nm_pb_check", "nm_pb_kafka"):
            ch.query("DROP DATABASE IF EXISTS %s" % db)


def check_ddl_dictionaries(dict_dir, problems):
    """dictionaries.sql (current ClickHouse; 18.16 cannot parse CREATE DICTIONARY): the same
    dictionaries, keys, attributes and files as the XML the test loads."""
    sql = open(os.path.join(dict_dir, "dictionaries.sql")).read()
    xml = open(os.path.join(dict_dir, "netmeta_dictionary.xml")).read()
    for name, keys, attrs in (("InterfaceNames", ["Device String", "Index UInt32"],
                               ["Description String DEFAULT ''"]),
                              ("Exporters", ["Device String"],
                               ["Name String DEFAULT ''", "Description String DEFAULT ''",
                                "SamplingRate UInt64 DEFAULT 0"])):
        m = re.search(r"CREATE OR REPLACE DICTIONARY %s\n\((.*?)\)\nPRIMARY KEY ([^\n]*)\n"
                      r"SOURCE\(FILE\(path '([^']*)' format 'TabSeparated'\)\)\n"
                      r"LIFETIME\(MIN \d+ MAX \d+\)\nLAYOUT\(COMPLEX_KEY_HASHED\(\)\);" % name, sql, re.S)
        if not m:
            problems.append("dictionaries.sql: no well-formed CREATE DICTIONARY %s" % name)
            continue
        cols = [c.strip() for c in m.group(1).split(",\n")]
        if cols != keys + attrs or m.group(2) != ", ".join(k.split()[0] for k in keys):
            problems.append("dictionaries.sql %s: columns %r key %r" % (name, cols, m.group(2)))
        if "<path>%s</path>" % m.group(3) not in xml:
            problems.append("dictionaries.sql %s reads %s, the XML another file" % (name, m.group(3)))


# --------------------------------------------------------------------------------------------

def make_ini(exporters):
    """exporters: list of (name, address, rate or None, description, {ifIndex: name})"""
    lines = ["; test ini: the engine's sections are ignored by clickhouse-dicts.py",
             "[kafka]", "format = json", ""]
    for name, addr, rate, desc, ifs in exporters:
        lines += ["[exporter.%s]" % name, "address = %s            ; from the capture" % addr]
        if rate:
            lines.append("sampling_rate = %d" % rate)
        if desc:
            lines.append('description = "%s"' % desc)
        for idx in sorted(ifs):
            lines.append("interface.%d = %s" % (idx, ifs[idx]))
        lines.append("")
    return "\n".join(lines)


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "tshark")
    problems = []
    tmp = tempfile.mkdtemp(prefix="nmtest-chdicts-")
    broker = ch = None
    try:
        queries = readme_queries()
        names = ["traffic per second by exporter", "top talkers", "top interfaces by name"]
        missing = [n for n in names if n not in queries]
        if missing:
            raise Fail("README.md 'Your ClickHouse' lacks the queries %r (has %r)" % (missing, list(queries)))
        print("README.md: %d example queries extracted" % len(queries), flush=True)
        check_proto(problems)
        check_dicts_rejects(problems, tmp)

        truth = {t["file"]: t for t in nmtest.truth_rows()}
        caps = []   # dicts: file, path, port, section, records, exporter, rate, truth
        for f, port, section, override in CAPTURES:
            if f not in truth:
                raise Fail("%s is not in TRUTH.tsv" % f)
            path = os.path.join(nmtest.CORPORA, f)
            recs, exp, rate = tshark_records(path, port)
            t = truth[f]
            pk, by = sum(r["packets"] for r in recs), sum(r["octets"] for r in recs)
            if (len(recs), pk, by) != (t["records"], t["packets"], t["bytes"]):
                raise Fail("%s: tshark here decodes %d records %d packets %d bytes, TRUTH.tsv %d/%d/%d"
                           % (f, len(recs), pk, by, t["records"], t["packets"], t["bytes"]))
            caps.append({"file": f, "path": path, "port": port, "section": section, "records": recs,
                         "exporter": exp, "device": addr_text(exp), "rate": override or rate,
                         "override": override, "truth": t})
            print("%s: exporter %s, %d records, %d packets, %d bytes, announces 1:%d, ini 1:%s, "
                  "ifIndexes %s" % (f, exp, len(recs), pk, by, rate, override,
                sorted(set(r["inif"] for r in recs) | set(r["outif"] for r in recs))), flush=True)

        # The test ini: every ifIndex of each capture named, plus an IPv6 exporter without traffic.
        ifnames = {}
        exporters = []
        for c in caps:
            ifs = {}
            for i in sorted(set(r["inif"] for r in c["records"]) | set(r["outif"] for r in c["records"])):
                ifs[i] = "%s port %d" % (c["section"], i) if i else "%s local" % c["section"]
                ifnames[(c["device"], i)] = ifs[i]
            exporters.append((c["section"], c["exporter"], c["override"],
                              "%s; from %s" % (c["section"], os.path.basename(c["file"])), ifs))
        exporters.append((IPV6_EXPORTER[0], IPV6_EXPORTER[1], 2000, "IPv6 exporter # no traffic",
                          IPV6_EXPORTER[2]))
        ini = os.path.join(tmp, "exporters.ini")
        with open(ini, "w") as fh:
            fh.write(make_ini(exporters))

        broker = nmtest.MockBroker()
        ch = nmtest.ClickHouse()
        print("mock broker %s; clickhouse-server pid %d on 127.0.0.1:%d (dir %s)" % (
            broker.bootstrap, ch.pid, ch.tcp, ch.dir), flush=True)
        ch.apply("json", broker.bootstrap, TOPIC, "nmtest-dicts")
        check_flows_raw(ch, problems)
        check_protobuf_ddl(ch, problems)

        p = subprocess.run([nmtest.CLICKHOUSE_SH, "dicts", ch.dir, "json", ini],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        print(p.stdout.decode(errors="replace").strip(), flush=True)
        if p.returncode != 0:
            raise Fail("clickhouse.sh dicts failed (%d)" % p.returncode)
        check_ddl_dictionaries(os.path.join(ch.dir, "dictionaries"), problems)

        # Device keys == ClickHouse's IPv6NumToString of the same 16 bytes
        cases = KEY_CASES + [c["exporter"] for c in caps] + [IPV6_EXPORTER[1]]
        mine = [addr_text(a) for a in cases]
        sel = ", ".join("IPv6NumToString(IPv6StringToNum('%s'))" % (
            a if ":" in a else "::ffff:" + a) for a in cases)
        theirs = ch.query("SELECT " + sel)[0]
        bad = [(a, m, t) for a, m, t in zip(cases, mine, theirs) if m != t]
        if bad:
            problems.append("Device keys differ from IPv6NumToString (address, ours, ClickHouse's): %r" % bad)
        print("Device keys: %d addresses, text form identical to ClickHouse's IPv6NumToString: %s" % (
            len(cases), "yes" if not bad else "NO"), flush=True)

        # The dictionaries answer for every (exporter, ifIndex) of the ini
        keys = sorted(ifnames.items()) + [((addr_text(IPV6_EXPORTER[1]), i), n)
                                          for i, n in sorted(IPV6_EXPORTER[2].items())]
        sel = ", ".join("dictGetString('InterfaceNames', 'Description', tuple('%s', toUInt32(%d)))"
                        % (d, i) for (d, i), _ in keys)
        got = ch.query("SELECT " + sel)[0]
        if got != [n for _, n in keys]:
            problems.append("InterfaceNames lookups %r, want %r" % (got, [n for _, n in keys]))
        sel = ", ".join("dictGetString('Exporters', 'Name', tuple('%s')), "
                        "dictGetString('Exporters', 'Description', tuple('%s')), "
                        "dictGetUInt64('Exporters', 'SamplingRate', tuple('%s'))" % ((addr_text(e[1]),) * 3)
                        for e in exporters)
        got = ch.query("SELECT " + sel)[0]
        want = []
        for name, addr, rate, desc, _ in exporters:
            want += [name, desc.replace("\t", "\\t"), str(rate or 0)]
        if got != want:
            problems.append("Exporters lookups %r, want %r" % (got, want))
        listed = ch.query("SELECT (SELECT count() FROM dictionaries.InterfaceNames), "
                          "(SELECT count() FROM dictionaries.Exporters)")[0]
        if listed != [str(len(keys)), str(len(exporters))]:
            problems.append("database dictionaries lists %r elements, want %d/%d" % (
                listed, len(keys), len(exporters)))
        print("dictionaries: %d interface names and %d exporters resolve as in the ini" % (
            len(keys), len(exporters)), flush=True)

        # Re-run after an edit, as a user with a remote server would: USER@HOST:PORT and the
        # server's dictionary directory; the new name is served at once.
        c = caps[-1]
        idx = min(r["inif"] for r in c["records"])   # an input interface: the README query shows it
        ifnames[(c["device"], idx)] = "%s port %d renamed, quoted; #" % (c["section"], idx)
        exporters = [(n, a, r, d, {**ifs, idx: '"%s"' % ifnames[(c["device"], idx)]}
                      if n == c["section"] else ifs) for n, a, r, d, ifs in exporters]
        with open(ini, "w") as fh:
            fh.write(make_ini(exporters))
        p = subprocess.run([nmtest.CLICKHOUSE_SH, "dicts", "default@127.0.0.1:%d" % ch.tcp, "json", ini,
                            os.path.join(ch.dir, "dictionaries")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        print(p.stdout.decode(errors="replace").strip(), flush=True)
        got = ch.query("SELECT dictGetString('InterfaceNames', 'Description', tuple('%s', toUInt32(%d)))"
                       % (c["device"], idx))
        if p.returncode != 0 or got != [[ifnames[(c["device"], idx)]]]:
            problems.append("dicts re-run (exit %d): %r, want %r" % (p.returncode, got, ifnames[(c["device"], idx)]))
        else:
            print("dicts re-run through default@127.0.0.1:%d: ifIndex %d now %r" % (
                ch.tcp, idx, got[0][0]), flush=True)

        # The engine, one run per capture (each capture's seconds stay its own)
        rows = 0
        for c in caps:
            run = nmtest.run_engine(c["path"], broker.bootstrap, fmt="json", ports=str(c["port"]),
                                    topic=TOPIC, config=ini)
            s = run.summary or {}
            print("engine on %s: exit %d, records %s, rows %s, acked %s, lost %s (%.1f s)" % (
                c["file"], run.rc, s.get("records"), s.get("rows"), s.get("kafka_records_acked"),
                s.get("lost_records"), run.seconds), flush=True)
            if run.rc != 0 or not s:
                raise Fail("engine on %s: exit %d\n%s" % (c["file"], run.rc, run.tail(25)))
            t = c["truth"]
            if (s.get("records"), s.get("records_packets"), s.get("records_bytes")) != (
                    t["records"], t["packets"], t["bytes"]):
                problems.append("%s: engine decoded %r/%r/%r, TRUTH %d/%d/%d" % (
                    c["file"], s.get("records"), s.get("records_packets"), s.get("records_bytes"),
                    t["records"], t["packets"], t["bytes"]))
            if s.get("rows") != s.get("kafka_records_acked") or s.get("lost_records"):
                problems.append("%s: rows %r acked %r lost %r" % (
                    c["file"], s.get("rows"), s.get("kafka_records_acked"), s.get("lost_records")))
            rows += s.get("rows", 0)
            c["rows"] = s.get("rows", 0)

        want_pk = sum(c["truth"]["packets"] for c in caps)
        want_by = sum(c["truth"]["bytes"] for c in caps)
        want = (rows, want_pk, want_by)

        def totals():
            return tuple(int(x) for x in ch.query(
                "SELECT count(), sum(Packets), sum(Bytes) FROM flows_raw")[0])
        t0 = time.time()
        got = totals()
        while got != want and time.time() - t0 < WAIT_S and got[0] <= rows:
            time.sleep(0.5)
            got = totals()
        print("flows_raw after %.1f s: count %d, packets %d, bytes %d (want %r)" % (
            (time.time() - t0,) + got + (want,)), flush=True)
        if got == want:
            time.sleep(SETTLE_S)
            got = totals()
            print("flows_raw %d s later: count %d, packets %d, bytes %d" % ((SETTLE_S,) + got), flush=True)
        if got[0] != rows:
            problems.append("flows_raw count() %d != engine rows %d (%s)" % (
                got[0], rows, "duplicates" if got[0] > rows else "missing rows"))
        if got[1:] != (want_pk, want_by):
            problems.append("flows_raw sum(Packets) %d sum(Bytes) %d != TRUTH %d / %d" % (
                got[1], got[2], want_pk, want_by))

        # Every row carries its exporter's rate as the ini (and so the Exporters dictionary) says
        rates = ch.query("SELECT dictGetString('Exporters', 'Name', tuple(IPv6NumToString(SamplerAddress))), "
                         "SamplingRate, dictGetUInt64('Exporters', 'SamplingRate', "
                         "tuple(IPv6NumToString(SamplerAddress))), count() FROM flows_raw "
                         "GROUP BY SamplerAddress, SamplingRate ORDER BY 1, 2")
        want_rates = sorted([c["section"], str(c["rate"]), str(c["override"]), str(c["rows"])]
                            for c in caps)
        if rates != want_rates:
            problems.append("SamplingRate per exporter (name, rows' rate, Exporters.SamplingRate, "
                            "rows): %r, want %r" % (rates, want_rates))
        print("SamplingRate per exporter (rows' rate, dictionary's, rows): %r" % rates, flush=True)

        # Expected query results from tshark's records
        per_sec = collections.defaultdict(lambda: [0, 0])
        per_src = collections.defaultdict(lambda: [0, 0])
        per_if = collections.defaultdict(lambda: [0, 0])
        scaled_pk = scaled_by = 0
        for c in caps:
            for r in c["records"]:
                b, k = r["octets"] * c["rate"], r["packets"] * c["rate"]
                for agg, key in ((per_sec, (r["second"], c["device"])), (per_src, addr_text(r["src"])),
                                 (per_if, (c["section"], r["inif"]))):
                    agg[key][0] += b
                    agg[key][1] += k
                scaled_by += b
                scaled_pk += k
            t = c["truth"]
            print("  %s: TRUTH %d packets %d bytes x %d = %d / %d" % (
                c["file"], t["packets"], t["bytes"], c["rate"], t["packets"] * c["rate"],
                t["bytes"] * c["rate"]), flush=True)
        truth_scaled = (sum(c["truth"]["packets"] * c["rate"] for c in caps),
                        sum(c["truth"]["bytes"] * c["rate"] for c in caps))
        if (scaled_pk, scaled_by) != truth_scaled:
            problems.append("tshark scaled %d/%d != TRUTH scaled %r" % (scaled_pk, scaled_by, truth_scaled))
        names_by_device = {c["device"]: c["section"] for c in caps}

        # 1. traffic per second by exporter: every row
        res = ch.query(queries["traffic per second by exporter"])
        exp_rows = [[str(sec), dev, names_by_device[dev], str(v[0] * 8), str(v[1])]
                    for (sec, dev), v in sorted(per_sec.items())]
        if res != exp_rows:
            problems.append("README 'traffic per second by exporter': got %r, want %r" % (res[:5], exp_rows[:5]))
        q_pk = sum(int(r[4]) for r in res)
        q_by = sum(int(r[3]) for r in res) // 8
        if (q_pk, q_by) != truth_scaled:
            problems.append("per-second totals %d packets %d bytes != TRUTH scaled %r" % (q_pk, q_by, truth_scaled))
        print("query 'traffic per second by exporter': %d rows, total %d packets %d bytes "
              "(TRUTH x sampling: %d / %d)" % ((len(res), q_pk, q_by) + truth_scaled), flush=True)
        for r in res:
            print("    " + "\t".join(r))

        # 2. top talkers: the first 10 of (bytes desc, source)
        res = ch.query(queries["top talkers"])
        exp_rows = sorted(([src, str(v[0]), str(v[1])] for src, v in per_src.items()),
                          key=lambda x: (-int(x[1]), x[0]))[:10]
        if res != exp_rows:
            problems.append("README 'top talkers': got %r, want %r" % (res, exp_rows))
        print("query 'top talkers': %d rows as expected from tshark: %s; first %r" % (
            len(res), res == exp_rows, res[:1]), flush=True)

        # 3. top interfaces by name
        res = ch.query(queries["top interfaces by name"])
        exp_rows = sorted(([sec, str(i), ifnames[(dev, i)], str(v[0]), str(v[1])]
                           for (sec, i), v in per_if.items()
                           for dev in [next(c["device"] for c in caps if c["section"] == sec)]),
                          key=lambda x: (-int(x[3]), x[0], int(x[1])))[:10]
        if res != exp_rows:
            problems.append("README 'top interfaces by name': got %r, want %r" % (res, exp_rows))
        unnamed = [r for r in res if not r[2]]
        if unnamed:
            problems.append("interfaces without a name: %r" % unnamed)
        print("query 'top interfaces by name': %d rows as expected: %s" % (len(res), res == exp_rows), flush=True)
        for r in res:
            print("    " + "\t".join(r))
        # Retention on 18.16: prune keeps the newest day and drops the older partition(s)
        parts = ch.query("SELECT Date, count() FROM flows_raw GROUP BY Date ORDER BY Date")
        days = max(0, int(ch.query("SELECT toInt64(today()) - toInt64(max(Date)) FROM flows_raw")[0][0]))
        p = subprocess.run([nmtest.CLICKHOUSE_SH, "prune", ch.dir, str(days)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        after = ch.query("SELECT Date, count() FROM flows_raw GROUP BY Date ORDER BY Date")
        print("prune %d days: partitions %r -> %r" % (days, parts, after), flush=True)
        if p.returncode != 0 or after != parts[-1:] or len(parts) < 2:
            problems.append("clickhouse.sh prune %d (exit %d: %s): %r -> %r, want only %r" % (
                days, p.returncode, p.stdout.decode(errors="replace").strip(), parts, after, parts[-1:]))

        if problems:
            err = ch.log_tail(20)
            if err:
                print("--- clickhouse-server.err.log (tail) ---\n" + err)
    except Fail as e:
        problems.append(str(e))
    finally:
        if ch is not None:
            ch.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    if problems:
        for p in problems:
            print("FAIL: " + p)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
