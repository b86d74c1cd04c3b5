#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The protobuf variant end to end on ClickHouse 26.5 (chDB): corpus captures -> engine
(kafka.format = protobuf, the default) -> mock broker -> flows_queue (Kafka engine, format
Protobuf, flow.proto) -> flows_raw_view -> flows_raw (IPv6 columns, TTL), with NetMeta's lookup
layer; all of it from `scripts/clickhouse.sh sql protobuf ... netmeta.ini`, run statement by
statement.

Order: the engine writes every capture to the topic first; the topic is read with kcat; an ini
naming the exporters found there (one with outward_interfaces, the direction rule) is written;
only then is the schema created, so the new consumer group must start at the beginning of the
topic (<kafka><auto_offset_reset>smallest</auto_offset_reset></kafka> in chDB's config).

Asserted, exactly:
- flows_raw count() == rows the engine reported == rows on the topic; sum(Packets), sum(Bytes)
  == TRUTH.tsv; sum(Flows) == the records the engine decoded == TRUTH.tsv records (Flows, the
  merged-records count, adds up to the exporters' flow records);
- row by row: the multiset of (TimeReceived, FlowType, the four addresses, ports, protocol,
  EType, interfaces, AS numbers, SamplingRate, Packets, Bytes, Flows, FlowDirection) in flows_raw
  equals the topic's, decoded by nmtest's own protobuf decoder; FlowDirection as the direction
  rule says for the ruled exporter (0 when InIf is outward, else 1), as sent for the others;
- the address columns are IPv6 and IPv6 addresses arrive intact (the IPv6 capture), IPv4 as
  ::ffff:a.b.c.d; no NextHop is ::ffff:0.0.0.0 (an absent next hop is ::); flows_raw has a TTL;
- port mirror: a mirror-rx port with its own sampler_address and a mirror-tx port with
  [mirror] sampler_address: each address holds the capture's frames and bytes (MIRROR-TRUTH.tsv)
  with FlowDirection 0 / 1;
- README.md's "Your ClickHouse" queries, as written, against sums computed from the topic.
Takes 35-60 s (6 engine runs, chDB consuming 1,832 rows; 60 s measured under meson).
"""
import collections
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chdb  # noqa: E402
import nmtest  # noqa: E402

TOPIC = "flow-messages"
WAIT_S = 180     # at most this long for flows_raw to hold every row
SETTLE_S = 8     # then this long more: late duplicates would show

# Captures of every protocol, IPv4 and IPv6, sampled and not (paths in the corpus).
CAPTURES = [
    "generated/softflowd-v5.pcap",                      # NetFlow v5: next hop 0.0.0.0
    "generated/softflowd-v9.pcap",
    "generated/softflowd-v10.pcap",
    "generated/pmacctd-sfprobe-sflow5-rate10.pcap",     # sFlow 1:10, no direction
    "public/pmacct/501-IPFIXv10-BGP-IPv6-CISCO-MPLS/traffic-00.pcap",   # IPv6
]
# Port mirror: one capture on a mirror-rx and a mirror-tx port (1:1); the rx port has its own
# sampler_address, the tx port takes [mirror] sampler_address.
MIRROR = "generated/inputs/src/nDPI-EAQ.pcap"
MIRROR_RX, MIRROR_TX = "192.0.2.50", "198.51.100.9"
MIRROR_INI = """[eal]
args = -l 0-1
[mirror]
sample_rate = 1
sampler_address = %s
[port.rx]
device = net_pcap10,rx_pcap=%s
role = mirror-rx
sampler_address = %s
[port.tx]
device = net_pcap11,rx_pcap=%s
role = mirror-tx
"""
TYPES = {0: "FLOWUNKNOWN", 1: "SFLOW_5", 2: "NETFLOW_V5", 3: "NETFLOW_V9", 4: "IPFIX"}
ADDRS = ("SamplerAddress", "SrcAddr", "DstAddr", "NextHop")
# (flows_raw column, FlowMessage field)
COLS = [("TimeReceived", "TimeReceived"), ("FlowType", "Type"),
        ("SamplerAddress", "SamplerAddress"), ("SrcAddr", "SrcAddr"), ("DstAddr", "DstAddr"),
        ("NextHop", "NextHop"), ("SrcPort", "SrcPort"), ("DstPort", "DstPort"),
        ("Proto", "Proto"), ("EType", "Etype"), ("InIf", "InIf"), ("OutIf", "OutIf"),
        ("SrcAS", "SrcAS"), ("DstAS", "DstAS"), ("SamplingRate", "SamplingRate"),
        ("Packets", "Packets"), ("Bytes", "Bytes"), ("Flows", "Flows"),
        ("FlowDirection", "FlowDirection")]


def topic_key(m, outward):
    """A decoded FlowMessage as a flows_raw row would hold it."""
    out = []
    for col, field in COLS:
        v = m[field]
        if col == "FlowType":
            v = TYPES[v]
        elif col in ADDRS:
            v = bytes(v) if v else bytes(16)
        elif col == "FlowDirection" and m["SamplerAddress"] in outward:
            v = 0 if m["InIf"] in outward[m["SamplerAddress"]] else 1
        out.append(v)
    return tuple(out)


def ch_rows(ch):
    sel = ", ".join("IPv6NumToString(%s)" % c if c in ADDRS else c for c, _ in COLS)
    cnt = collections.Counter()
    for r in ch.query("SELECT %s FROM flows_raw" % sel):
        key = []
        for (col, _), v in zip(COLS, r):
            if col in ADDRS:
                v = socket.inet_pton(socket.AF_INET6, v)
            elif col != "FlowType":
                v = int(v)
            key.append(v)
        cnt[tuple(key)] += 1
    return cnt


def readme_queries():
    text = open(os.path.join(nmtest.SOURCE, "README.md"), encoding="utf-8").read()
    m = re.search(r"^## Your ClickHouse\n(.*?)(?=^## )", text, re.S | re.M)
    out = {}
    for block in re.findall(r"^```sql\n(.*?)^```", m.group(1) if m else "", re.S | re.M):
        q = re.match(r"--\s*query:\s*(.+)$", block.split("\n", 1)[0])
        if q:
            out[q.group(1).strip()] = block
    return out


def write_ini(path, msgs):
    """An ini naming every exporter on the topic and two interfaces of each; the first with
    two interfaces gets a direction rule (its most common InIf faces outward). Returns (ini text,
    {sampler bytes: set of outward ifIndexes}, {sampler bytes: name})."""
    by_sampler = collections.defaultdict(collections.Counter)
    types = {}
    for m in msgs:
        by_sampler[m["SamplerAddress"]][m["InIf"]] += 1
        types[m["SamplerAddress"]] = m["Type"]
    lines, outward, names = [], {}, {}
    for i, (s, ins) in enumerate(sorted(by_sampler.items())):
        name = "exp%d-%s" % (i, TYPES[types[s]].lower().replace("_", ""))
        names[s] = name
        text = nmtest.addr_text(s)
        if text.startswith("::ffff:"):
            text = text[7:]
        lines += ["[exporter.%s]" % name, "address = %s" % text,
                  "description = %s exporter %d" % (TYPES[types[s]], i)]
        top = [ix for ix, _ in ins.most_common(2)]
        for ix in top:
            lines.append("interface.%d = if%d-of-%s" % (ix, ix, name))
        if not outward and len(top) == 2:   # the first exporter with two interfaces
            lines.append("outward_interfaces = %d" % top[0])
            outward[s] = {top[0]}
        lines.append("")
    text = "\n".join(lines)
    with open(path, "w") as f:
        f.write(text)
    return text, outward, names


def mirror_truth(name):
    """MIRROR-TRUTH.tsv's row for name: frames and bytes as integers, path; None if absent."""
    try:
        with open(os.path.join(nmtest.CORPORA, "MIRROR-TRUTH.tsv")) as f:
            hdr = f.readline().rstrip("\n").split("\t")
            for line in f:
                r = dict(zip(hdr, line.rstrip("\n").split("\t")))
                if r.get("file") == name:
                    return {"frames": int(r["frames"]), "bytes": int(r["bytes"]),
                            "path": os.path.join(nmtest.CORPORA, name)}
    except OSError:
        pass
    return None


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    if chdb.library_path() is None:
        nmtest.skip("chDB (libchdb.so) is not installed: scripts/setup.sh --test")
    truth = {t["file"]: t for t in nmtest.truth_rows()}
    cases = [truth[c] for c in CAPTURES if c in truth and os.path.exists(truth[c]["path"])]
    if len(cases) != len(CAPTURES):
        nmtest.skip("corpus lacks some of %r" % CAPTURES)
    mirror = mirror_truth(MIRROR)
    if mirror is None:
        nmtest.skip("MIRROR-TRUTH.tsv lacks %s" % MIRROR)
    want_pk = sum(t["packets"] for t in cases) + 2 * mirror["frames"]
    want_by = sum(t["bytes"] for t in cases) + 2 * mirror["bytes"]
    want_rec = sum(t["records"] for t in cases) + 2 * mirror["frames"]

    problems = []
    tmp = tempfile.mkdtemp(prefix="nmtest-chdb-e2e-")
    broker = ch = None
    t_start = time.time()
    try:
        broker = nmtest.MockBroker()
        rows = records = 0
        for t in cases:
            run = nmtest.run_engine(t["path"], broker.bootstrap, fmt="protobuf",
                                    ports=t["udp_ports"], topic=TOPIC)
            s = run.summary or {}
            print("%-66s records %6s rows %6s packets %8s bytes %10s rc %d" % (
                t["file"], s.get("records"), s.get("rows"), s.get("records_packets"),
                s.get("records_bytes"), run.rc), flush=True)
            if run.rc != 0 or not s:
                problems.append("%s: engine exit %d\n%s" % (t["file"], run.rc, run.tail(20)))
                continue
            if (s.get("records"), s.get("records_packets"), s.get("records_bytes")) != (
                    t["records"], t["packets"], t["bytes"]):
                problems.append("%s: engine decoded %r records %r packets %r bytes, TRUTH %d/%d/%d"
                                % (t["file"], s.get("records"), s.get("records_packets"),
                                   s.get("records_bytes"), t["records"], t["packets"], t["bytes"]))
            if s.get("rows") != s.get("kafka_records_acked") or s.get("lost_records"):
                problems.append("%s: rows %r acked %r lost %r" % (
                    t["file"], s.get("rows"), s.get("kafka_records_acked"), s.get("lost_records")))
            rows += s.get("rows", 0)
            records += s.get("records", 0)
        # the mirror ports, from an ini (all ports net_pcap files: an offline run)
        mini = os.path.join(tmp, "mirror.ini")
        with open(mini, "w") as f:
            f.write(MIRROR_INI % (MIRROR_TX, mirror["path"], MIRROR_RX, mirror["path"]))
        run = nmtest.run_engine([], broker.bootstrap, topic=TOPIC, config=mini)
        s = run.summary or {}
        print("%-66s records %6s rows %6s packets %8s bytes %10s rc %d" % (
            MIRROR + " (rx+tx)", s.get("records"), s.get("rows"), s.get("records_packets"),
            s.get("records_bytes"), run.rc), flush=True)
        if run.rc != 0 or (s.get("mirror_sampled"), s.get("records_bytes")) != (
                2 * mirror["frames"], 2 * mirror["bytes"]):
            problems.append("mirror run: exit %d, sampled %r bytes %r, want %d/%d\n%s" % (
                run.rc, s.get("mirror_sampled"), s.get("records_bytes"), 2 * mirror["frames"],
                2 * mirror["bytes"], run.tail(20)))
        rows += s.get("rows", 0)
        records += s.get("records", 0)
        msgs = [m for p in nmtest.kcat_consume(broker.bootstrap, TOPIC)
                for m in nmtest.decode_delimited(p)]
        print("topic: %d FlowMessages; engine: %d rows from %d records" % (len(msgs), rows, records),
              flush=True)
        if len(msgs) != rows:
            problems.append("topic holds %d rows, the engine reported %d" % (len(msgs), rows))
        ini = os.path.join(tmp, "netmeta.ini")
        ini_text, outward, names = write_ini(ini, msgs)
        if not outward:
            problems.append("no exporter with two interfaces to give a direction rule")

        # The schema and the lookup layer, exactly as `clickhouse.sh sql` prints them.
        # Retention long enough for every capture (the oldest are from 2019); the TTL itself is
        # checked below by shortening it.
        p = subprocess.run([nmtest.CLICKHOUSE_SH, "sql", "protobuf", broker.bootstrap, TOPIC,
                            "nmtest-chdb", ini], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60, env=dict(os.environ, NM_CH_RETENTION_DAYS="36500"))
        if p.returncode != 0:
            raise RuntimeError("clickhouse.sh sql failed: %s" % p.stderr.decode(errors="replace"))
        script = p.stdout.decode()
        ch = chdb.Chdb()
        ch.add_schema(os.path.join(nmtest.SOURCE, "proto", "flow.proto"))
        n = ch.script(script)
        print("chDB %s: %d statements of clickhouse.sh sql run" % (ch.value("SELECT version()"), n),
              flush=True)

        want = (rows, want_pk, want_by)
        t0 = time.time()
        got = ch.totals()
        while got != want and time.time() - t0 < WAIT_S and got[0] <= rows:
            time.sleep(0.5)
            got = ch.totals()
        print("flows_raw after %.1f s: count %d, packets %d, bytes %d" % ((time.time() - t0,) + got),
              flush=True)
        if got == want:
            time.sleep(SETTLE_S)
            got = ch.totals()
        if got != want:
            problems.append("flows_raw count/packets/bytes %r, want %r (engine rows, TRUTH)" % (got, want))
        flows = int(ch.value("SELECT sum(Flows) FROM flows_raw"))
        if not flows == records == want_rec:
            problems.append("sum(Flows) %d, engine records %d, TRUTH records %d" % (flows, records,
                                                                                     want_rec))
        else:
            print("sum(Flows) = %d = records decoded = TRUTH records; count() = %d rows" % (
                flows, got[0]), flush=True)

        # Row by row against the topic.
        topic = collections.Counter(topic_key(m, outward) for m in msgs)
        mine = ch_rows(ch)
        if topic != mine:
            a, b = topic - mine, mine - topic
            problems.append("flows_raw differs from the topic: %d rows only on the topic (e.g. %r), "
                            "%d only in flows_raw (e.g. %r)" % (
                                sum(a.values()), next(iter(a), None), sum(b.values()),
                                next(iter(b), None)))
        else:
            print("row by row: flows_raw == topic (%d rows, %d columns)" % (sum(mine.values()),
                                                                            len(COLS)), flush=True)

        # Types, TTL, addresses, next hops, direction.
        desc = dict((r[0], r[1]) for r in ch.query("DESCRIBE TABLE flows_raw"))
        bad = [c for c in ADDRS if desc.get(c) != "IPv6"]
        if bad or desc.get("Flows") != "UInt64":
            problems.append("flows_raw types: %r" % desc)
        create = ch.value("SHOW CREATE TABLE flows_raw")
        if "TTL Date + toIntervalDay(36500)" not in create:
            problems.append("flows_raw has no TTL Date + NM_CH_RETENTION_DAYS: %s" % create[-200:])
        v6 = int(ch.value("SELECT count() FROM flows_raw WHERE NOT startsWith(IPv6NumToString(SrcAddr), '::ffff:')"))
        v6_topic = sum(1 for m in msgs if m["SrcAddr"][:12] != bytes(10) + b"\xff\xff")
        fake_nh = int(ch.value("SELECT count() FROM flows_raw WHERE NextHop = toIPv6('::ffff:0.0.0.0')"))
        nf5_nh = ch.query("SELECT DISTINCT IPv6NumToString(NextHop) FROM flows_raw WHERE FlowType = 'NETFLOW_V5'")
        print("IPv6 source rows %d (topic %d); NetFlow v5 next hops %r; ::ffff:0.0.0.0 next hops %d"
              % (v6, v6_topic, [r[0] for r in nf5_nh], fake_nh), flush=True)
        if v6 == 0 or v6 != v6_topic:
            problems.append("IPv6 source addresses: %d rows in flows_raw, %d on the topic" % (v6, v6_topic))
        if fake_nh or ["::"] != [r[0] for r in nf5_nh]:
            problems.append("absent next hops must be '::': %d rows ::ffff:0.0.0.0, v5 next hops %r"
                            % (fake_nh, nf5_nh))
        for s, ifs in outward.items():
            sa = nmtest.addr_text(s)
            r = ch.query("SELECT FlowDirection, InIf IN (%s) AS outward, count() FROM flows_raw "
                         "WHERE SamplerAddress = toIPv6('%s') GROUP BY FlowDirection, outward "
                         "ORDER BY FlowDirection" % (",".join(map(str, ifs)), sa))
            print("direction rule for %s (outward %s): FlowDirection, outward, rows = %r" % (
                sa, sorted(ifs), r), flush=True)
            if sorted((x[0], x[1]) for x in r) != [("0", "1"), ("1", "0")]:
                problems.append("direction rule of %s not applied: %r" % (sa, r))
            inc = ch.query("SELECT isIncomingFlow(SamplerAddress, SrcAddr, DstAddr, SrcAS, DstAS, "
                           "FlowDirection), count() FROM flows_raw WHERE SamplerAddress = "
                           "toIPv6('%s') GROUP BY 1 ORDER BY 1" % sa)
            want_in = sum(1 for m in msgs if m["SamplerAddress"] == s and m["InIf"] in ifs)
            if dict((a, int(b)) for a, b in inc).get("1") != want_in:
                problems.append("isIncomingFlow on %s: %r, want %d incoming" % (sa, inc, want_in))

        # Mirror ports: rx under its own sampler_address, tx under [mirror] sampler_address.
        r = ch.query("SELECT IPv6NumToString(SamplerAddress), FlowType, FlowDirection, sum(Packets), "
                     "sum(Bytes) FROM flows_raw WHERE SamplerAddress IN (toIPv6('::ffff:%s'), "
                     "toIPv6('::ffff:%s')) GROUP BY 1, 2, 3 ORDER BY 1" % (MIRROR_RX, MIRROR_TX))
        want_m = [["::ffff:" + MIRROR_RX, "SFLOW_5", "0", str(mirror["frames"]), str(mirror["bytes"])],
                  ["::ffff:" + MIRROR_TX, "SFLOW_5", "1", str(mirror["frames"]), str(mirror["bytes"])]]
        print("mirror ports: %r" % r, flush=True)
        if r != want_m:
            problems.append("mirror sampler addresses: %r, want %r" % (r, want_m))

        # README's queries, as written.
        qs = readme_queries()
        for need in ("traffic per second by exporter", "top talkers", "top interfaces by name"):
            if need not in qs:
                problems.append("README.md lacks the query %r" % need)
        per_exp = collections.defaultdict(lambda: [0, 0])
        per_src = collections.Counter()
        per_if = collections.Counter()
        for m in msgs:
            per_exp[m["SamplerAddress"]][0] += m["Bytes"] * m["SamplingRate"] * 8
            per_exp[m["SamplerAddress"]][1] += m["Packets"] * m["SamplingRate"]
            per_src[m["SrcAddr"]] += m["Bytes"] * m["SamplingRate"]
            per_if[(m["SamplerAddress"], m["InIf"])] += m["Bytes"] * m["SamplingRate"]
        if "traffic per second by exporter" in qs:
            r = ch.query(qs["traffic per second by exporter"])
            got_e = collections.defaultdict(lambda: [0, 0])
            named = set()
            for sec, exp, name, bits, pk in r:
                got_e[socket.inet_pton(socket.AF_INET6, exp)][0] += int(bits)
                got_e[socket.inet_pton(socket.AF_INET6, exp)][1] += int(pk)
                named.add((socket.inet_pton(socket.AF_INET6, exp), name))
            if dict(got_e) != dict(per_exp) or named != set(names.items()):
                problems.append("README 'traffic per second by exporter': %r / names %r, want %r / %r"
                                % (dict(got_e), named, dict(per_exp), names))
            else:
                print("README 'traffic per second by exporter': %d rows, per-exporter bits and "
                      "packets and names as the topic" % len(r), flush=True)
        if "top talkers" in qs:
            r = ch.query(qs["top talkers"])
            top = sorted(per_src.items(), key=lambda kv: (-kv[1], nmtest.addr_text(kv[0])))[:10]
            if [(socket.inet_pton(socket.AF_INET6, a), int(b)) for a, b, _ in r] != top:
                problems.append("README 'top talkers': %r, want %r" % (r[:3], top[:3]))
            else:
                print("README 'top talkers': %d rows as the topic; first %s %s bytes" % (
                    len(r), r[0][0], r[0][1]), flush=True)
        if "top interfaces by name" in qs:
            r = ch.query(qs["top interfaces by name"])
            top = sorted(per_if.values(), reverse=True)[:10]
            if [int(x[3]) for x in r] != top or not any(x[2] for x in r):
                problems.append("README 'top interfaces by name': %r, want bytes %r" % (r[:3], top))
            else:
                print("README 'top interfaces by name': %d rows as the topic, e.g. %r" % (
                    len(r), r[0]), flush=True)

        # TTL: keep the newest capture's day and drop the older ones (merges apply TTL).
        if ch is not None and got == want:
            days = int(ch.value("SELECT dateDiff('day', max(Date), today()) + 1 FROM flows_raw"))
            newest = ch.value("SELECT max(Date) FROM flows_raw")
            keep = int(ch.value("SELECT count() FROM flows_raw WHERE Date + %d >= today()" % days))
            ch.raw("ALTER TABLE flows_raw MODIFY TTL Date + INTERVAL %d DAY" % days)
            ch.raw("OPTIMIZE TABLE flows_raw FINAL")
            left = int(ch.value("SELECT count() FROM flows_raw"))
            print("TTL Date + %d DAY (newest day %s): %d of %d rows left, want %d" % (
                days, newest, left, rows, keep), flush=True)
            if left != keep or keep == rows:
                problems.append("TTL: %d rows left, want %d of %d" % (left, keep, rows))
    finally:
        chdb.teardown(ch, broker, tmp)
    return chdb.verdict(problems, "protobuf on ClickHouse 26.5 (chDB): %d rows, %d packets, %d "
                        "bytes, %d records of %d captures, row by row as the topic" % (
                            rows, want_pk, want_by, want_rec, len(cases)), t_start)


if __name__ == "__main__":
    sys.exit(main())
