# SPDX-License-Identifier: BSD-3-Clause
"""ClickHouse 26.5 in the test process: chDB's libchdb.so through ctypes (Python standard library
only).

chDB is ClickHouse built as a shared library; the npm package @chdb/lib-linux-x64-gnu ships it
(scripts/setup.sh --test installs it into /opt/netmeta-chdb). Its C API (chdb.h):

    chdb_connection *chdb_connect(int argc, char **argv);      argv as clickhouse-local's
    chdb_result *chdb_query(chdb_connection conn, const char *sql, const char *format);
    char *chdb_result_buffer(chdb_result *); size_t chdb_result_length(chdb_result *);
    const char *chdb_result_error(chdb_result *);               NULL when the query succeeded
    void chdb_destroy_query_result(chdb_result *); void chdb_close_conn(chdb_connection *);

One connection per process (chDB keeps one global server context); queries from one thread.
Background work (the Kafka engine's consumers, materialized views, TTL merges) runs in chDB's own
threads between and during queries, as in a server.

The library is found at NM_CHDB_LIB, else under NM_CHDB_DIR (default /opt/netmeta-chdb, then
build-deps/chdb in the source tree): node_modules/@chdb/lib-linux-x64-gnu/libchdb.so.
"""
import ctypes
import os
import shutil
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCE = os.path.abspath(os.path.join(_HERE, "..", ".."))
_PKG = os.path.join("node_modules", "@chdb", "lib-linux-x64-gnu", "libchdb.so")


def library_path():
    """Path of libchdb.so, or None when it is not installed."""
    cands = [os.environ.get("NM_CHDB_LIB")]
    for d in (os.environ.get("NM_CHDB_DIR"), "/opt/netmeta-chdb",
              os.path.join(_SOURCE, "build-deps", "chdb")):
        if d:
            cands.append(os.path.join(d, _PKG))
    for c in cands:
        if c and os.path.isfile(c):
            return c
    return None


class ChdbError(RuntimeError):
    pass


_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    path = library_path()
    if path is None:
        raise ChdbError("libchdb.so not found (scripts/setup.sh --test installs it; or set "
                        "NM_CHDB_LIB)")
    lib = ctypes.CDLL(path)
    lib.chdb_connect.restype = ctypes.c_void_p
    lib.chdb_connect.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    lib.chdb_query.restype = ctypes.c_void_p
    lib.chdb_query.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.chdb_result_buffer.restype = ctypes.c_void_p
    lib.chdb_result_buffer.argtypes = [ctypes.c_void_p]
    lib.chdb_result_length.restype = ctypes.c_size_t
    lib.chdb_result_length.argtypes = [ctypes.c_void_p]
    lib.chdb_result_error.restype = ctypes.c_char_p
    lib.chdb_result_error.argtypes = [ctypes.c_void_p]
    lib.chdb_destroy_query_result.restype = None
    lib.chdb_destroy_query_result.argtypes = [ctypes.c_void_p]
    lib.chdb_close_conn.restype = None
    lib.chdb_close_conn.argtypes = [ctypes.c_void_p]
    _lib = lib
    return lib


CONFIG = """<?xml version="1.0"?>
<!-- chDB (ClickHouse 26.5) for NetMeta's tests: written by tests/integration/chdb.py -->
<clickhouse>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <timezone>UTC</timezone>
    <!-- a new consumer group starts at the beginning of the topic (librdkafka's default is the
         end), as scripts/clickhouse.sh start writes for 18.16 -->
    <kafka>
        <auto_offset_reset>smallest</auto_offset_reset>
    </kafka>
</clickhouse>
"""


class Chdb:
    """A chDB session in a temp dir: with Chdb() as ch: ch.query("SELECT 1")"""

    def __init__(self, path=None):
        self.lib = _load()
        self.dir = path or tempfile.mkdtemp(prefix="nmtest-chdb-")
        for d in ("data", "format_schemas", "user_files"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        self.config = os.path.join(self.dir, "config.xml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(dir=self.dir))
        args = [b"chdb", ("--path=%s/data" % self.dir).encode(),
                ("--config-file=%s" % self.config).encode()]
        argv = (ctypes.c_char_p * len(args))(*args)
        self._conn_ptr = self.lib.chdb_connect(len(args), argv)
        if not self._conn_ptr:
            raise ChdbError("chdb_connect failed (dir %s)" % self.dir)
        # chdb_connect returns chdb_connection * (a pointer to the handle); queries take the handle
        self._conn = ctypes.cast(self._conn_ptr, ctypes.POINTER(ctypes.c_void_p))[0]
        # chDB runs as clickhouse-local, not as a server: a relative format schema
        # ('flow.proto:FlowMessage', as the DDL says for servers, which look in
        # format_schema_path) is opened relative to the process's working directory (checked on
        # 26.5: "File not found" otherwise). So the session works from format_schemas/.
        self._old_cwd = os.getcwd()
        self.schemas = os.path.join(self.dir, "format_schemas")
        os.chdir(self.schemas)

    def raw(self, sql, fmt="TabSeparated"):
        """Run one statement; the result as bytes in format fmt. Raises ChdbError with the
        server's message when it fails."""
        if self._conn is None:
            raise ChdbError("connection closed")
        res = self.lib.chdb_query(self._conn, sql.encode(), fmt.encode())
        if not res:
            raise ChdbError("chdb_query returned NULL: %s" % sql[:200])
        try:
            err = self.lib.chdb_result_error(res)
            if err:
                raise ChdbError("%s\n-- in: %s" % (err.decode(errors="replace").strip(), sql[:2000]))
            n = self.lib.chdb_result_length(res)
            buf = self.lib.chdb_result_buffer(res)
            return ctypes.string_at(buf, n) if n else b""
        finally:
            self.lib.chdb_destroy_query_result(res)

    def query(self, sql):
        """Rows of a query as lists of strings (TabSeparated, unescaped for \\t \\n \\\\)."""
        out = self.raw(sql, "TabSeparated").decode()
        return [[_tsv_unescape(v) for v in line.split("\t")] for line in out.splitlines()]

    def value(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def script(self, text):
        """Run every statement of a script that separates statements with lines holding only ';'
        (the format of scripts/clickhouse.sh sql). Returns the number of statements."""
        n = 0
        for stmt in split_script(text):
            self.raw(stmt)
            n += 1
        return n

    def totals(self, table="flows_raw"):
        """(count(), sum(Packets), sum(Bytes)) of flows_raw as integers."""
        r = self.query("SELECT count(), sum(Packets), sum(Bytes) FROM %s" % table)[0]
        return tuple(int(x) for x in r)

    def add_schema(self, path):
        """Copy a .proto file into format_schemas/ (as scripts/clickhouse.sh apply does)."""
        shutil.copy(path, self.schemas)

    def close(self, keep_dir=False):
        if getattr(self, "_old_cwd", None):
            os.chdir(self._old_cwd)
            self._old_cwd = None
        if self._conn_ptr:
            self.lib.chdb_close_conn(self._conn_ptr)
            self._conn_ptr = self._conn = None
        if self.dir and not keep_dir and not os.environ.get("NM_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir and not keep_dir:
            print("chdb dir kept: %s" % self.dir, flush=True)
        self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_script(text):
    """Statements of a script whose statements end with a line holding only ';'."""
    out, cur = [], []
    for line in text.splitlines():
        if line.strip() == ";":
            stmt = "\n".join(cur).strip()
            if stmt and not all(l.strip().startswith("--") or not l.strip() for l in cur):
                out.append(stmt)
            cur = []
        else:
            cur.append(line)
    rest = "\n".join(cur).strip()
    if rest and not all(l.strip().startswith("--") or not l.strip() for l in cur):
        out.append(rest)
    return out


def teardown(ch=None, broker=None, tmp=None):
    """The end of a chDB test, whatever happened: close the session, stop the mock broker, remove
    the test's temporary directory (each may be None)."""
    try:
        if ch is not None:
            ch.close()
    finally:
        if broker is not None:
            broker.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def verdict(problems, passed, t_start=None):
    """A chDB test's exit status: "took N s" (with t_start), then a FAIL line per problem and 1,
    or the PASS line and 0."""
    if t_start is not None:
        print("took %.0f s" % (time.time() - t_start))
    if problems:
        for p in problems:
            print("FAIL: " + p)
        return 1
    print("PASS: " + passed)
    return 0


def _tsv_unescape(v):
    if "\\" not in v:
        return v
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            n = v[i + 1]
            out.append({"t": "\t", "n": "\n", "\\": "\\", "0": "\0", "'": "'", "r": "\r"}.get(n, n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


if __name__ == "__main__":
    print("libchdb.so:", library_path())
    with Chdb() as ch:
        print(ch.query("SELECT version()"))
