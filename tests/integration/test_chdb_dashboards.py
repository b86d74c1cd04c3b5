#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Every panel of grafana/dashboards/*.json runs on ClickHouse 26.5 (chDB) over corpus data.

Grafana cannot be installed here, so this test does what the official ClickHouse datasource
(grafana-clickhouse-datasource) does to a panel's rawSql before sending it: template variables
and the macros $__timeFilter(col) -> col >= toDateTime(FROM) AND col <= toDateTime(TO),
$__timeInterval(col) -> toStartOfInterval(toDateTime(col), INTERVAL N second), $__interval_s ->
N, $__conditionalAll(cond, $var) -> 1=1 when $var is All, else cond. Each panel's query (and
each template variable's query) runs twice: with every variable at All, and with $sampler set to
one exporter.

Data: three corpus captures through the engine and the mock broker into flows_raw (schema and
lookup layer from `scripts/clickhouse.sh sql protobuf ... ini`). Values checked against
TRUTH.tsv (Bytes x SamplingRate and Packets x SamplingRate: TRUTH's scaled columns for sampled
captures, else the raw ones; records):
- "Traffic per exporter": sum over buckets of bps x interval = 8 x TRUTH bytes;
- "Packets per second, in and out": sum of pps x interval = TRUTH packets;
- "Rows and records per second": records x interval = TRUTH records, rows x interval = count();
- "Top talkers (source)" and "Sampling rates in use": against the topic / TRUTH's sFlow rate;
- "Traffic per interface (by name)": the names from the ini appear;
- with $sampler set, "Traffic per exporter" holds that exporter only.
Takes 17-30 s (27 s measured under meson).
"""
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chdb  # noqa: E402
import nmtest  # noqa: E402

TOPIC = "flow-messages"
INTERVAL_S = 60
CAPTURES = ["generated/softflowd-v9.pcap", "generated/pmacctd-sfprobe-sflow5-rate10.pcap",
            "public/pmacct/501-IPFIXv10-BGP-IPv6-CISCO-MPLS/traffic-00.pcap"]


def expand(sql, frm, to, variables):
    """rawSql as the datasource sends it. variables: name -> value, or None for All."""
    def cond_all(m):
        cond, var = m.group(1), m.group(2)
        return "1=1" if variables.get(var) is None else cond
    # $__conditionalAll(condition, $var): the condition may hold parentheses and commas
    out, i = [], 0
    pat = "$__conditionalAll("
    while True:
        j = sql.find(pat, i)
        if j < 0:
            out.append(sql[i:])
            break
        out.append(sql[i:j])
        depth, k = 1, j + len(pat)
        while depth:
            if sql[k] == "(":
                depth += 1
            elif sql[k] == ")":
                depth -= 1
            k += 1
        inner = sql[j + len(pat):k - 1]
        m = re.match(r"(.*),\s*\$\{?(\w+)\}?\s*$", inner, re.S)
        if not m:
            raise ValueError("malformed $__conditionalAll: %r" % inner)
        out.append(cond_all(m))
        i = k
    sql = "".join(out)
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)",
                 lambda m: "%s >= toDateTime(%d) AND %s <= toDateTime(%d)" % (
                     m.group(1), frm, m.group(1), to), sql)
    sql = re.sub(r"\$__timeInterval\(([^)]*)\)",
                 lambda m: "toStartOfInterval(toDateTime(%s), INTERVAL %d second)" % (
                     m.group(1), INTERVAL_S), sql)
    sql = sql.replace("$__interval_s", str(INTERVAL_S))
    for name, val in variables.items():
        if val is not None:
            sql = sql.replace("${%s}" % name, val).replace("$" + name, val)
    if "$" in sql.replace("$__all", ""):
        raise ValueError("unexpanded macro or variable in: %s" % sql)
    return sql


def columns(ch, sql):
    """(column names, rows) of a query."""
    out = ch.raw(sql, "TabSeparatedWithNames").decode().splitlines()
    names = out[0].split("\t") if out else []
    return names, [dict(zip(names, line.split("\t"))) for line in out[1:]]


def main():
    nmtest.exit_on_signals()
    nmtest.require_corpora()
    nmtest.require_programs(nmtest.ENGINE, "kcat")
    if chdb.library_path() is None:
        nmtest.skip("chDB (libchdb.so) is not installed: scripts/setup.sh --test")
    truth = {t["file"]: t for t in nmtest.truth_rows()}
    cases = [truth[c] for c in CAPTURES if c in truth]
    if len(cases) != len(CAPTURES):
        nmtest.skip("corpus lacks some of %r" % CAPTURES)
    dashboards = sorted(glob.glob(os.path.join(nmtest.SOURCE, "grafana", "dashboards", "*.json")))
    if not dashboards:
        print("FAIL: no dashboards in grafana/dashboards")
        return 1
    want_bits = 8 * sum(t["scaled_bytes"] or t["bytes"] for t in cases)
    want_pk = sum(t["scaled_packets"] or t["packets"] for t in cases)
    want_rec = sum(t["records"] for t in cases)

    problems = []
    tmp = tempfile.mkdtemp(prefix="nmtest-chdb-dash-")
    broker = ch = None
    t_start = time.time()
    try:
        broker = nmtest.MockBroker()
        rows = 0
        for t in cases:
            run = nmtest.run_engine(t["path"], broker.bootstrap, ports=t["udp_ports"], topic=TOPIC)
            if run.rc != 0 or not run.summary:
                raise RuntimeError("engine on %s: exit %d\n%s" % (t["file"], run.rc, run.tail(20)))
            rows += run.summary["rows"]
        msgs = [m for p in nmtest.kcat_consume(broker.bootstrap, TOPIC)
                for m in nmtest.decode_delimited(p)]
        samplers = sorted(set(m["SamplerAddress"] for m in msgs))
        ini = os.path.join(tmp, "netmeta.ini")
        ifnames = {}
        with open(ini, "w") as f:
            for i, s in enumerate(samplers):
                text = nmtest.addr_text(s)
                ins = collections.Counter(m["InIf"] for m in msgs if m["SamplerAddress"] == s)
                ix = ins.most_common(1)[0][0]
                ifnames[s] = "uplink-%d" % i
                f.write("[exporter.dash%d]\naddress = %s\ndescription = Exporter %d\n"
                        "interface.%d = %s\n\n" % (i, text, i, ix, ifnames[s]))
        p = subprocess.run([nmtest.CLICKHOUSE_SH, "sql", "protobuf", broker.bootstrap, TOPIC,
                            "nmtest-dash", ini], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60, env=dict(os.environ, NM_CH_RETENTION_DAYS="36500"))
        if p.returncode != 0:
            raise RuntimeError("clickhouse.sh sql: %s" % p.stderr.decode(errors="replace"))
        ch = chdb.Chdb()
        ch.add_schema(os.path.join(nmtest.SOURCE, "proto", "flow.proto"))
        ch.script(p.stdout.decode())
        t0 = time.time()
        while ch.totals()[0] < rows and time.time() - t0 < 180:
            time.sleep(0.5)
        count = ch.totals()[0]
        if count != rows:
            raise RuntimeError("flows_raw holds %d rows of %d" % (count, rows))
        frm = int(ch.value("SELECT min(TimeReceived) FROM flows_raw"))
        to = int(ch.value("SELECT max(TimeReceived) FROM flows_raw")) + 1
        print("flows_raw: %d rows from %d captures, %d exporters, %d..%d" % (
            count, len(cases), len(samplers), frm, to), flush=True)

        one = nmtest.addr_text(samplers[0])
        n_panels = n_queries = 0
        for path in dashboards:
            dash = json.load(open(path))
            var_names = [v["name"] for v in dash.get("templating", {}).get("list", [])]
            runs = [("all", {v: None for v in var_names if v != "datasource"}),
                    ("sampler=%s" % one, {v: (one if v == "sampler" else None)
                                          for v in var_names if v != "datasource"})]
            for v in dash["templating"]["list"]:
                if v.get("type") == "query":
                    _, r = columns(ch, expand(v["query"], frm, to, runs[0][1]))
                    n_queries += 1
                    vals = sorted(x["__value"] for x in r)
                    want = sorted(nmtest.addr_text(s) for s in samplers)
                    if v["name"] == "sampler" and vals != want:
                        problems.append("variable sampler lists %r, want %r" % (vals, want))
            results = {}
            for p_ in dash["panels"]:
                if p_["type"] == "row":
                    continue
                n_panels += 1
                for label, variables in runs:
                    for t in p_["targets"]:
                        sql = expand(t["rawSql"], frm, to, variables)
                        try:
                            names, r = columns(ch, sql)
                        except chdb.ChdbError as e:
                            problems.append("%s / %s (%s): %s" % (os.path.basename(path),
                                                                  p_["title"], label, e))
                            continue
                        n_queries += 1
                        if t.get("format") == 0 and (not names or names[0] != "time"):
                            problems.append("%s: a time series must start with 'time': %r" % (
                                p_["title"], names))
                        if not r:
                            problems.append("%s (%s): no rows" % (p_["title"], label))
                        results[(p_["title"], label)] = r
                print("  %-36s %4d rows (all), %4d rows (%s)" % (
                    p_["title"], len(results.get((p_["title"], "all"), [])),
                    len(results.get((p_["title"], runs[1][0]), [])), runs[1][0]), flush=True)

            def total(title, col, label="all"):
                return sum(float(x[col]) * INTERVAL_S for x in results.get((title, label), []))
            checks = [("Traffic per exporter", "bps", want_bits),
                      ("Packets per second, in and out", "pps", want_pk),
                      ("Rows and records per second", "records", want_rec),
                      ("Rows and records per second", "rows", count)]
            for title, col, want in checks:
                if (title, "all") not in results:
                    continue
                got = total(title, col)
                ok = abs(got - want) <= 1e-6 * max(want, 1)
                print("check %-32s %-8s %.1f, want %d: %s" % (title, col, got, want,
                                                               "ok" if ok else "WRONG"))
                if not ok:
                    problems.append("%s: sum of %s x interval %.3f, want %d" % (title, col, got, want))
            r = results.get(("Traffic per exporter", runs[1][0]), [])
            if r and set(x["exporter"] for x in r) != {"Exporter 0"}:
                problems.append("Traffic per exporter with sampler=%s shows %r" % (
                    one, set(x["exporter"] for x in r)))
            r = results.get(("Traffic per interface (by name)", "all"), [])
            named = set(n for n in ifnames.values() if any("[%s]" % n in x["interface"] for x in r))
            if named != set(ifnames.values()):
                problems.append("Traffic per interface shows names %r of %r" % (named, ifnames))
            r = results.get(("Top talkers (source)", "all"), [])
            per_src = collections.Counter()
            for m in msgs:
                per_src[m["SrcAddr"]] += m["Bytes"] * m["SamplingRate"]
            if r and int(r[0]["bytes"]) != max(per_src.values()):
                problems.append("Top talkers: first %r, the topic's top is %d bytes" % (
                    r[0], max(per_src.values())))
            r = results.get(("Sampling rates in use", "all"), [])
            rates = sorted(set(int(x["rate"]) for x in r))
            want_rates = sorted(set(m["SamplingRate"] for m in msgs))
            if rates != want_rates or 10 not in rates:
                problems.append("Sampling rates in use: %r, topic %r (sFlow 1:10 must show)" % (
                    rates, want_rates))
        print("%d panels, %d queries run (each panel with All and with one exporter)" % (
            n_panels, n_queries), flush=True)
        if n_panels < 10:
            problems.append("only %d panels" % n_panels)
    finally:
        chdb.teardown(ch, broker, tmp)
    return chdb.verdict(problems, "every panel's SQL runs on ClickHouse 26.5; traffic, packets and "
                        "records as TRUTH", t_start)


if __name__ == "__main__":
    sys.exit(main())
