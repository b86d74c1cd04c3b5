#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""clickhouse-client as far as scripts/clickhouse.sh uses it, answered by chDB (ClickHouse 26.5)
working on the directory NM_CHDB_CLIENT_DIR, so that `clickhouse.sh apply/dicts/query` can be
run against a current ClickHouse here (NM_CH_CLIENT=tests/integration/chdb_client.py).

Options taken: --host/--port/--user/--password (ignored: there is no server), --multiquery,
--query SQL (statements separated by ';' at line ends, as clickhouse-client reads them), or the
statements on stdin. Output: TabSeparated, as clickhouse-client prints. Exit 0, or 1 with the
error on stderr. Each call is one process: chDB keeps its tables in the directory between calls.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chdb  # noqa: E402


def statements(text):
    """Split on ';' outside quotes and -- comments, as clickhouse-client --multiquery does."""
    out, cur, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = len(text) if j < 0 else j
            cur.append(text[i:j])
            i = j
            continue
        elif ch in "'`\"":
            quote = ch
            cur.append(ch)
        elif ch == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return [s.strip() for s in out
            if s.strip() and not all(l.strip().startswith("--") or not l.strip()
                                     for l in s.strip().splitlines())]


def main():
    ap = argparse.ArgumentParser()
    for o in ("--host", "--port", "--user", "--password", "--database"):
        ap.add_argument(o)
    ap.add_argument("--multiquery", "-n", action="store_true")
    ap.add_argument("--query", "-q")
    a = ap.parse_args()
    d = os.environ.get("NM_CHDB_CLIENT_DIR")
    if not d:
        print("chdb_client: NM_CHDB_CLIENT_DIR is not set", file=sys.stderr)
        return 2
    sql = a.query if a.query is not None else sys.stdin.read()
    ch = chdb.Chdb(d)
    marker = os.path.join(d, "dictionaries-reloaded")
    try:
        # A server keeps the dictionaries an earlier SYSTEM RELOAD DICTIONARY/DICTIONARIES loaded;
        # each call here is a new chDB, where they start NOT_LOADED: load them again to match.
        if os.path.exists(marker):
            for (name,) in ch.query("SELECT name FROM system.dictionaries WHERE database = "
                                    "currentDatabase()"):
                try:
                    ch.raw("SYSTEM RELOAD DICTIONARY `%s`" % name)
                except chdb.ChdbError:
                    pass   # as on the server: the failure shows in system.dictionaries
        if "SYSTEM RELOAD DICTIONAR" in sql.upper():
            open(marker, "w").close()
        for s in statements(sql):
            sys.stdout.write(ch.raw(s, "TabSeparated").decode())
    except chdb.ChdbError as e:
        print("chdb_client: %s" % e, file=sys.stderr)
        return 1
    finally:
        ch.close(keep_dir=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
