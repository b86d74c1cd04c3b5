#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""scripts/clickhouse.sh apply, dicts and query for the protobuf variant against ClickHouse 26.5:
clickhouse-client is replaced by tests/integration/chdb_client.py (NM_CH_CLIENT), which answers
each call with chDB on one directory, so the script runs exactly as it would against a server.

Checked:
- apply TARGET protobuf ... INI: the view stores the direction rule of INI (SHOW CREATE);
- dicts TARGET protobuf INI with the operator's TSV files (NM_CH_AUTNUMS, NM_CH_VLAN_NAMES,
  NM_CH_HOST_NAMES): exit 0 and "dictionaries loaded"; every dictionary of the lookup layer is
  LOADED with as many elements as its data; the functions answer from them (SamplerToString,
  InterfaceToString, VLANToString, HostToString, ASNToString, IPv6ToString, toIPv6Net);
- what dicts ran is what `sql` prints (the lookup part of it, statement for statement);
- a second dicts after editing the ini replaces the names (no stale rows);
- refused: an ini with a bad outward_interfaces, an autnums file with a bad AS number (exit 1,
  the file and the value named).
Takes about 40 s (each client call starts chDB, ~3 s).
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chdb  # noqa: E402
import nmtest  # noqa: E402

INI = """[exporter.edge1]
address = 192.0.2.1
description = Frankfurt edge
interface.17 = xe-0/0/1 transit
interface.18 = xe-0/0/2 peering
outward_interfaces = 17, 18

[exporter.core6]
address = 2001:db8::1
sampling_rate = 100
interface.5 = et-0/0/5
"""


def main():
    nmtest.exit_on_signals()
    if chdb.library_path() is None:
        nmtest.skip("chDB (libchdb.so) is not installed: scripts/setup.sh --test")
    tmp = tempfile.mkdtemp(prefix="nmtest-chdb-sh-")
    db = os.path.join(tmp, "chdb")
    os.makedirs(db)
    files = {
        "netmeta.ini": INI,
        "autnums.tsv": "64500\tExample Transit\tDE\n4200000000\tLong name that is cut after "
                       "twenty-five characters\tUS\n",
        "vlans.tsv": "192.0.2.1\t100\tcustomers\n2001:db8::1\t200\tbackbone\n",
        "hosts.tsv": "192.0.2.1\t10.0.0.1\tmail server\n",
        "bad.ini": INI.replace("outward_interfaces = 17, 18", "outward_interfaces = 17, x"),
        "bad-autnums.tsv": "AS64500\tExample\tDE\n",
    }
    for name, text in files.items():
        with open(os.path.join(tmp, name), "w") as f:
            f.write(text)
    env = dict(os.environ, NM_CH_CLIENT=os.path.join(nmtest.SOURCE, "tests", "integration",
                                                     "chdb_client.py"),
               NM_CHDB_CLIENT_DIR=db, NM_CH_AUTNUMS=os.path.join(tmp, "autnums.tsv"),
               NM_CH_VLAN_NAMES=os.path.join(tmp, "vlans.tsv"),
               NM_CH_HOST_NAMES=os.path.join(tmp, "hosts.tsv"))
    target = "127.0.0.1:9"   # not contacted: the client is chDB
    dead = "127.0.0.1:%d" % nmtest.free_port()
    ini = os.path.join(tmp, "netmeta.ini")
    dict_dir = os.path.join(db, "user_files", "netmeta")
    problems = []

    def sh(*args, env_=None):
        p = subprocess.run([nmtest.CLICKHOUSE_SH] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env_ or env, timeout=300)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def query(sql):
        rc, out, err = sh("query", target, sql)
        if rc != 0:
            raise RuntimeError("query %s: %s" % (sql, err))
        return [line.split("\t") for line in out.splitlines()]

    try:
        rc, out, err = sh("apply", target, "protobuf", dead, "t", "g", ini)
        print("apply: exit %d" % rc, flush=True)
        if rc != 0:
            raise RuntimeError("apply failed: %s" % err)
        view = query("SELECT create_table_query FROM system.tables WHERE name = 'flows_raw_view'")[0][0]
        rule = "InIf IN (17, 18)"   # as ClickHouse stores it: multiIf(SamplerAddress = ..., if((InIf IN ...
        if rule not in view or "toIPv6(\\'::ffff:192.0.2.1\\')" not in view \
                or "FlowDirection) AS FlowDirection" not in view:
            problems.append("the view lacks the direction rule %r: %s" % (rule, view[-400:]))

        rc, out, err = sh("dicts", target, "protobuf", ini, dict_dir)
        print("dicts: exit %d: %s" % (rc, out.strip()), flush=True)
        if rc != 0 or "dictionaries loaded (Exporters:2 InterfaceNames:3)" not in out:
            problems.append("dicts: exit %d, %r %r" % (rc, out, err[-500:]))
        st = dict((r[0], (r[1], int(r[2]))) for r in query(
            "SELECT name, status, element_count FROM system.dictionaries "
            "WHERE database = currentDatabase()"))
        n_proto = sum(1 for l in open(os.path.join(nmtest.SOURCE, "proto", "clickhouse", "lookup",
                                                   "IPProtocols.tsv")) if l.strip())
        want = {"SamplerConfig": 2, "Exporters": 2, "InterfaceNames": 3, "OutwardInterfaces": 2,
                "VlanNames": 2, "HostNames": 1, "autnums": 2, "TCPFlags": 8, "IPProtocols": n_proto}
        for name, n in sorted(want.items()):
            if st.get(name) != ("LOADED", n):
                problems.append("dictionary %s: %r, want LOADED with %d elements" % (name, st.get(name), n))
        if "EtherTypes" not in st:
            problems.append("no EtherTypes dictionary")
        print("dictionaries: %s" % ", ".join("%s %s/%d" % (k, v[0], v[1]) for k, v in sorted(st.items())),
              flush=True)
        got = query(
            "SELECT SamplerToString(toIPv6('::ffff:192.0.2.1')), SamplerToString(toIPv6('2001:db8::1')), "
            "SamplerToString(toIPv6('::ffff:198.51.100.1')), "
            "InterfaceToString(toIPv6('::ffff:192.0.2.1'), 18), InterfaceToString(toIPv6('2001:db8::1'), 6), "
            "VLANToString(toIPv6('::ffff:192.0.2.1'), 100), VLANToString(toIPv6('::ffff:192.0.2.1'), 200), "
            "HostToString(toIPv6('::ffff:192.0.2.1'), toIPv6('::ffff:10.0.0.1')), "
            "HostToString(toIPv6('2001:db8::1'), toIPv6('::ffff:10.0.0.1')), "
            "ASNToString(64500), ASNToString(4200000000), ASNToString(7), "
            "IPv6ToString(toIPv6('::ffff:10.1.2.3')), toIPv6Net('192.0.2.0/24'), "
            "dictGetUInt64('Exporters', 'SamplingRate', tuple('2001:db8::1'))")[0]
        want_v = ["Frankfurt edge", "core6", "198.51.100.1", "Frankfurt edge - 18 [xe-0/0/2 peering]",
                  "core6 - 6", "customers", "200", "mail server", "10.0.0.1", "Example Transit AS64500",
                  "Long name that is cut aft AS4200000000", "AS7", "10.1.2.3", "::ffff:192.0.2.0/120",
                  "100"]
        if got != want_v:
            problems.append("functions: %r\n  want %r" % (got, want_v))
        else:
            print("functions: %d answers as netmeta.ini and the TSV files say" % len(got), flush=True)

        # dicts ran what sql prints: the lookup part, statement for statement
        rc, printed, err = sh("sql", "protobuf", dead, "t", "g", ini)
        ran = open(os.path.join(dict_dir, "lookup.sql")).read()
        if rc != 0 or chdb.split_script(ran) != chdb.split_script(printed)[-len(chdb.split_script(ran)):]:
            problems.append("sql does not end with the statements dicts ran (exit %d)" % rc)
        else:
            print("sql: %d statements, the last %d of them what dicts ran" % (
                len(chdb.split_script(printed)), len(chdb.split_script(ran))), flush=True)

        # edit and re-run: the new name, no old rows
        with open(ini, "w") as f:
            f.write(INI.replace("xe-0/0/2 peering", "xe-0/0/2 IX").replace("interface.5 = et-0/0/5\n", ""))
        rc, out, err = sh("dicts", target, "protobuf", ini, dict_dir)
        got = query("SELECT InterfaceToString(toIPv6('::ffff:192.0.2.1'), 18), "
                    "dictHas('InterfaceNames', tuple('2001:db8::1', toUInt32(5))), "
                    "(SELECT count() FROM netmeta_lookup.InterfaceNames)")[0]
        print("after editing the ini: %r (dicts exit %d)" % (got, rc), flush=True)
        if rc != 0:
            print(err[-1500:])
        if rc != 0 or got != ["Frankfurt edge - 18 [xe-0/0/2 IX]", "0", "2"]:
            problems.append("re-run of dicts: exit %d, %r" % (rc, got))

        # refused input
        rc, out, err = sh("dicts", target, "protobuf", os.path.join(tmp, "bad.ini"), dict_dir)
        if rc == 0 or "outward_interfaces = '17, x'" not in err:
            problems.append("bad outward_interfaces: exit %d, %r" % (rc, err[-300:]))
        env_bad = dict(env, NM_CH_AUTNUMS=os.path.join(tmp, "bad-autnums.tsv"))
        rc, out, err = sh("dicts", target, "protobuf", ini, dict_dir, env_=env_bad)
        if rc == 0 or "bad-autnums.tsv" not in err or "'AS64500'" not in err:
            problems.append("bad autnums file: exit %d, %r" % (rc, err[-300:]))
        print("refused: a bad outward_interfaces, a bad autnums file", flush=True)
    finally:
        chdb.teardown(tmp=tmp)
    return chdb.verdict(problems, "clickhouse.sh apply/dicts/query/sql for protobuf on ClickHouse "
                        "26.5")


if __name__ == "__main__":
    sys.exit(main())
