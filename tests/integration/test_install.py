#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""`meson install` of an appliance build (--prefix=/usr) into a DESTDIR, and what it installed.

A build of its own in a temporary directory (meson setup --prefix=/usr), installed with `meson
install --destdir`: 35 s on an idle 2-core machine, 110 s with other tests running. Asserted:
 - every file is in place, executables executable: /usr/bin/netmeta, /usr/bin/netmeta-stats,
   /usr/sbin/netmeta-setup-host, /etc/netmeta/netmeta.ini, /usr/share/netmeta/proto (flow.proto,
   the ClickHouse DDL as in the tree), /usr/share/netmeta/scripts/clickhouse.sh, the XDP
   filter, /usr/lib/systemd/system/netmeta.service;
 - the installed config is the shipped netmeta.ini, key for key, but for kafka.spool_dir
   (/var/lib/netmeta/spool, inside the unit's StateDirectory) and engine.stats_interval_ms;
   a second install keeps an edited config and puts the new one beside it as netmeta.ini.new;
 - the unit: ExecStartPre runs the installed setup-host on the installed config with the unit's
   stop timeout, ExecStart the installed engine, Restart=on-failure, KillSignal=SIGTERM,
   TimeoutStopSec >= kafka.drain_timeout_ms + 30 s, StateDirectory=netmeta, journal output;
 - `systemd-analyze verify` accepts it with its paths pointed into the DESTDIR (and rejects the
   same unit with ExecStart pointing at a missing program, so the verification is not empty);
 - the unit's commands work as installed: ExecStartPre with --dry-run exits 0 and finds the
   drain within the stop timeout; ExecStart, with --pcap on a corpus capture and the spool in a
   temporary directory, exits 0 with TRUTH.tsv's records and packets all acknowledged by the
   embedded broker; clickhouse.sh finds its DDL from the installed location.
"""
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

problems = []
CAPTURE = "generated/softflowd-v5.pcap"


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def sh(argv, timeout=600, env=None, cwd=None):
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    return p.returncode, p.stdout


def ini(path):
    cp = configparser.RawConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=(";",),
                                      strict=False, interpolation=None, delimiters=("=",))
    cp.read(path)
    return {s.lower(): {k: v for k, v in cp.items(s)} for s in cp.sections()}


def unit_entries(path):
    """(section, key) -> list of values, in order (systemd keys may repeat)."""
    out, sec = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                sec = line.strip("[]")
                continue
            k, v = line.split("=", 1)
            out.setdefault((sec, k.strip()), []).append(v.strip())
    return out


def main():
    nmtest.exit_on_signals()
    nmtest.require_programs("meson", "ninja", "systemd-analyze")
    nmtest.require_corpora()
    truth = [r for r in nmtest.truth_rows() if r["file"] == CAPTURE]
    if len(truth) != 1:
        nmtest.skip("%s not in TRUTH.tsv" % CAPTURE)
    truth = truth[0]
    tmp = tempfile.mkdtemp(prefix="nmtest-install-")
    try:
        run(tmp, truth)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        print("%d problem(s)" % len(problems))
        sys.exit(1)
    print("OK")


def run(tmp, truth):
    build, dest = os.path.join(tmp, "build"), os.path.join(tmp, "dest")
    rc, out = sh(["meson", "setup", "--prefix=/usr", "-Dfuzz=disabled",
                  "-Dcorpora=" + nmtest.CORPORA, build, nmtest.SOURCE])
    if not check(rc == 0, "meson setup --prefix=/usr failed:\n" + out[-3000:]):
        return
    rc, out = sh(["meson", "install", "-C", build, "--destdir", dest])
    if not check(rc == 0, "meson install failed:\n" + out[-3000:]):
        return
    D = lambda p: dest + p  # noqa: E731

    # Files.
    execs = ["/usr/bin/netmeta", "/usr/bin/netmeta-stats", "/usr/sbin/netmeta-setup-host",
             "/usr/share/netmeta/scripts/clickhouse.sh"]
    files = execs + ["/etc/netmeta/netmeta.ini", "/usr/lib/systemd/system/netmeta.service",
                     "/usr/share/netmeta/proto/flow.proto",
                     "/usr/share/netmeta/scripts/clickhouse-dicts.py"]
    for root, _, names in os.walk(os.path.join(nmtest.SOURCE, "proto", "clickhouse")):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), os.path.join(nmtest.SOURCE, "proto"))
            files.append("/usr/share/netmeta/proto/" + rel)
    if os.path.exists(os.path.join(nmtest.BUILD, "dpdk_app", "nm_xdp_collector.bpf.o")):
        xdp = [f for f in _walk(dest) if f.endswith("/netmeta/nm_xdp_collector.bpf.o")]
        check(len(xdp) == 1 and xdp[0].startswith("/usr/lib/"), "XDP filter installed: %s" % xdp)
    for f in files:
        check(os.path.isfile(D(f)), "%s not installed" % f)
    for f in execs:
        check(os.access(D(f), os.X_OK), "%s not executable" % f)
    with open(os.path.join(nmtest.SOURCE, "scripts", "setup-host.sh"), "rb") as a, \
            open(D("/usr/sbin/netmeta-setup-host"), "rb") as b:
        check(a.read() == b.read(), "netmeta-setup-host differs from scripts/setup-host.sh")

    # The installed config against the shipped one.
    shipped, inst = ini(os.path.join(nmtest.SOURCE, "netmeta.ini")), ini(D("/etc/netmeta/netmeta.ini"))
    changed = {("kafka", "spool_dir"): "/var/lib/netmeta/spool",
               ("engine", "stats_interval_ms"): "60000"}
    check(set(shipped) == set(inst), "sections differ: %s vs %s" % (sorted(shipped), sorted(inst)))
    for s in shipped:
        for k, v in shipped[s].items():
            got = inst.get(s, {}).get(k)
            check(got == changed.get((s, k), v), "installed [%s] %s = %r, expected %r" % (
                s, k, got, changed.get((s, k), v)))
        check(set(shipped[s]) == set(inst.get(s, {})), "keys of [%s] differ" % s)

    # The unit.
    unit = D("/usr/lib/systemd/system/netmeta.service")
    u = unit_entries(unit)
    g = lambda k: u.get(("Service", k), [None])[-1]  # noqa: E731
    drain_s = int(shipped["kafka"]["drain_timeout_ms"]) / 1000
    stop = g("TimeoutStopSec")
    check(stop is not None and stop.isdigit() and int(stop) >= drain_s + 30,
          "TimeoutStopSec=%s, drain %d s + 30 s margin" % (stop, drain_s))
    pre = "+/usr/sbin/netmeta-setup-host -c /etc/netmeta/netmeta.ini --stop-timeout %s" % stop
    check(g("ExecStartPre") == pre, "ExecStartPre=%s, expected %s" % (g("ExecStartPre"), pre))
    check(g("ExecStart") == "/usr/bin/netmeta -c /etc/netmeta/netmeta.ini",
          "ExecStart=%s" % g("ExecStart"))
    for k, v in (("Restart", "on-failure"), ("KillSignal", "SIGTERM"), ("StateDirectory", "netmeta"),
                 ("StandardOutput", "journal"), ("StandardError", "journal"),
                 ("SuccessExitStatus", "4"), ("RestartPreventExitStatus", "2"),
                 ("ExecReload", "/bin/kill -HUP $MAINPID")):
        check(g(k) == v, "%s=%s, expected %s" % (k, g(k), v))
    check(u.get(("Install", "WantedBy")) == ["multi-user.target"], "WantedBy")
    check(inst["kafka"]["spool_dir"].startswith("/var/lib/" + g("StateDirectory") + "/"),
          "spool_dir %s outside the StateDirectory" % inst["kafka"]["spool_dir"])

    # systemd-analyze verify, paths rewritten into the DESTDIR (it checks that the programs exist
    # and are executable), and once with a missing program to show it does look.
    with open(unit) as f:
        text = f.read()
    moved = text
    for p in ("/usr/", "/etc/"):
        moved = moved.replace(p, dest + p)
    vdir = os.path.join(tmp, "verify")
    os.makedirs(vdir)
    vunit = os.path.join(vdir, "netmeta.service")
    with open(vunit, "w") as f:
        f.write(moved)
    rc, out = sh(["systemd-analyze", "verify", vunit], timeout=60)
    print(out, flush=True)
    check(rc == 0 and out.strip() == "", "systemd-analyze verify: exit %d: %s" % (rc, out))
    with open(vunit, "w") as f:
        f.write(moved.replace(dest + "/usr/bin/netmeta -c", dest + "/usr/bin/netmeta-missing -c"))
    rc, out = sh(["systemd-analyze", "verify", vunit], timeout=60)
    check(rc != 0 and "netmeta-missing" in out,
          "systemd-analyze verify accepted a missing ExecStart program: %s" % out)

    # The unit's commands as installed (paths moved into the DESTDIR).
    pre_argv = shlex.split(pre.lstrip("+"))
    pre_argv = [dest + a if a.startswith(("/usr/", "/etc/")) else a for a in pre_argv]
    rc, out = sh(pre_argv + ["--dry-run"], timeout=120)
    print(out, flush=True)
    check(rc == 0, "installed ExecStartPre --dry-run: exit %d" % rc)
    check("stop timeout %s s >= drain %d ms + 30 s: ok" % (stop, drain_s * 1000) in out,
          "installed ExecStartPre: no stop-timeout verdict")
    check("config %s:" % D("/etc/netmeta/netmeta.ini") in out, "setup-host did not read the installed config")

    spool = os.path.join(tmp, "spool")
    summary = os.path.join(tmp, "summary.json")
    eal = nmtest.eal_args()
    start = [dest + "/usr/bin/netmeta", "-c", D("/etc/netmeta/netmeta.ini"),
             "--set", "kafka.spool_dir=" + spool,
             "--pcap", os.path.join(nmtest.CORPORA, CAPTURE), "--summary-json", summary, "--"] + eal
    try:
        rc, out = sh(start, timeout=180)
    finally:
        nmtest.remove_runtime_dir(eal)
    print(out[-3000:], flush=True)
    check(rc == 0, "installed engine on the installed config: exit %d" % rc)
    if check(os.path.exists(summary), "no summary"):
        with open(summary) as f:
            s = json.load(f)
        check(s["records"] == truth["records"] and s["records_packets"] == truth["packets"],
              "records %d packets %d, TRUTH %d %d" % (s["records"], s["records_packets"],
                                                     truth["records"], truth["packets"]))
        check(s["kafka_records_acked"] == s["rows"] and s["rows"] > 0,
              "rows %d acked %d" % (s["rows"], s["kafka_records_acked"]))
    check(os.path.isdir(spool), "the engine did not create the spool directory %s" % spool)

    # The installed clickhouse.sh prints the statements of its installed DDL files, both variants.
    for variant in ("json", "protobuf"):
        rc, out = sh(["bash", D("/usr/share/netmeta/scripts/clickhouse.sh"), "sql", variant,
                      "127.0.0.1:9092", "flow-messages", "netmeta"], timeout=30)
        check(rc == 0 and re.search(r"CREATE TABLE[^;]*flows_raw", out) is not None
              and re.search(r"ENGINE\s*=\s*Kafka", out) is not None,
              "installed clickhouse.sh sql %s does not print its DDL (exit %d): %s"
              % (variant, rc, out[-2000:]))

    # A second install keeps the operator's config.
    with open(D("/etc/netmeta/netmeta.ini"), "a") as f:
        f.write("\n; edited by the operator\n")
    rc, out = sh(["meson", "install", "-C", build, "--destdir", dest, "--no-rebuild"])
    check(rc == 0, "second meson install failed")
    with open(D("/etc/netmeta/netmeta.ini")) as f:
        check(f.read().endswith("; edited by the operator\n"), "second install replaced the config")
    check(os.path.isfile(D("/etc/netmeta/netmeta.ini.new")), "no netmeta.ini.new beside it")


def _walk(dest):
    for root, _, names in os.walk(dest):
        for n in names:
            yield os.path.join(root, n)[len(dest):]


main()
