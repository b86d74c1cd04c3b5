#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""netmeta --check-config: the shipped netmeta.ini and the README's examples pass, broken
configs fail with exit 2 and every problem named -- each message checked word for word, and the
count of them -- and nothing is started (no EAL: no hugepage taken, no runtime directory).

The host checks run twice: against this machine's /sys (the shipped config must pass here; the
README's deployment example names a NIC and lcores this 2-CPU VM does not have), and against a
host described by a directory of the test's own (NM_CHECK_SYSFS: online CPUs, PCI devices and
their drivers, network interfaces, free hugepages), so every host problem is provoked on purpose
and the README's deployment example is shown to pass on a host that has what it names.

Runs in about 2 s.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

problems = []


def check(cond, what):
    if not cond:
        problems.append(what)
    return cond


def run(args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([nmtest.ENGINE, "--check-config"] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=e, timeout=60)
    return p.returncode, p.stdout, p.stderr


def fake_host(root, cpus="0-3", pci=None, ifaces=(), huge_free=1024, huge_nr=1024):
    """A /sys of the test's own: pci {address: driver or None}."""
    def write(rel, text):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")
    write("devices/system/cpu/online", cpus)
    os.makedirs(os.path.join(root, "bus/pci/drivers"), exist_ok=True)
    for addr, drv in (pci or {}).items():
        d = os.path.join(root, "bus/pci/devices", addr)
        os.makedirs(d, exist_ok=True)
        if drv:
            os.makedirs(os.path.join(root, "bus/pci/drivers", drv), exist_ok=True)
            os.symlink("../../../bus/pci/drivers/" + drv, os.path.join(d, "driver"))
    for i in ifaces:
        os.makedirs(os.path.join(root, "class/net", i), exist_ok=True)
    write("kernel/mm/hugepages/hugepages-2048kB/free_hugepages", str(huge_free))
    write("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", str(huge_nr))
    return {"NM_CHECK_SYSFS": root}


def readme_examples():
    """The README's ```ini blocks, and the [port.uplink] example of its deployment steps (in
    shell comments) with the [eal] args those steps name."""
    with open(os.path.join(nmtest.SOURCE, "README.md")) as f:
        text = f.read()
    blocks = re.findall(r"```ini\n(.*?)```", text, re.S)
    m = re.search(r"((?:#       .*\n)+)", text[text.find("#       [port.uplink]"):])
    port = "".join(l[len("#       "):] + "\n" for l in m.group(1).splitlines()) if m else None
    m2 = re.search(r"set \[eal\] args = (-l [0-9][0-9,-]*[0-9])", text)
    eal = m2.group(1) if m2 else None
    return blocks, port, eal


def main():
    nmtest.require_programs(nmtest.ENGINE)
    tmp = tempfile.mkdtemp(prefix="nmtest-check-")
    shipped = os.path.join(nmtest.SOURCE, "netmeta.ini")
    prefix = "nmcheck%d" % os.getpid()

    # 1. The shipped file and no file at all, on this machine.
    for args in (["-c", shipped], []):
        rc, out, err = run(args)
        nmtest.log("check %s: rc %d\n%s%s" % (args, rc, out, err))
        check(rc == 0, "%s: exit %d: %s" % (args, rc, err))
        check("config and host OK: 1 port(s), 1 worker lcore(s)" in out, "%s: %r" % (args, out))
        check(re.search(r"hugepages: about \d+ MiB needed \(16383 mbufs\)", out) or
              "--no-huge" in out, "%s: no hugepage line: %r" % (args, out))

    # 2. The README's examples.
    blocks, port, eal = readme_examples()
    check(len(blocks) >= 2 and port and eal, "README examples not found (%d ini blocks)" % len(blocks))
    for i, b in enumerate(blocks):
        path = os.path.join(tmp, "readme%d.ini" % i)
        with open(path, "w") as f:
            f.write(b)
        rc, out, err = run(["-c", path])
        nmtest.log("README ini block %d: rc %d\n%s%s" % (i, rc, out, err))
        spool = re.search(r"^spool_dir = (\S+)", b, re.M)
        if spool and not os.path.isdir(os.path.dirname(spool.group(1))):
            # The engine creates the spool directory, not its parents: under the service
            # StateDirectory= makes /var/lib/netmeta; on this machine it does not exist.
            check(rc == 2 and err.splitlines()[0] ==
                  "netmeta: %s: [kafka] spool_dir = \"%s\": does not exist and cannot be "
                  "created in %s: No such file or directory (the engine creates the directory, "
                  "not its parents; the service's StateDirectory=netmeta makes /var/lib/netmeta)"
                  % (path, spool.group(1), os.path.dirname(spool.group(1))),
                  "README block %d: %d %s" % (i, rc, err))
            check(len(err.splitlines()) == 2, "README block %d: %s" % (i, err))
            continue
        check(rc == 0 and "config and host OK" in out, "README block %d: %d %s" % (i, rc, err))
    deploy = os.path.join(tmp, "deploy.ini")
    with open(deploy, "w") as f:
        f.write("[eal]\nargs = %s\n%s" % (eal, port))
    host = fake_host(os.path.join(tmp, "host-ok"), cpus="0-3", pci={"0000:01:00.0": "vfio-pci"})
    rc, out, err = run(["-c", deploy], host)
    nmtest.log("README deployment example on a host that has it: rc %d\n%s%s" % (rc, out, err))
    check(rc == 0, "deployment example, fitting host: exit %d: %s" % (rc, err))
    check("config and host OK: 1 port(s), 2 worker lcore(s)" in out, out)
    check("note:" not in out, "deployment example: unexpected note: %s" % out)
    # The same on this machine: it has no such NIC, and lcore 2 only with 3 CPUs or more.
    rc, out, err = run(["-c", deploy])
    nmtest.log("README deployment example on this machine: rc %d\n%s%s" % (rc, out, err))
    if not os.path.exists("/sys/bus/pci/devices/0000:01:00.0"):
        check(rc == 2, "deployment example here: exit %d" % rc)
        check("%s: [port.uplink] device = \"0000:01:00.0\": no such PCI device on this host "
              "(/sys/bus/pci/devices/0000:01:00.0); dpdk-devbind.py --status lists the NICs"
              % deploy in err, err)

    # 3. A NIC still on its kernel driver: a note, not a problem (setup-host binds it).
    host = fake_host(os.path.join(tmp, "host-ixgbe"), pci={"0000:01:00.0": "ixgbe"})
    rc, out, err = run(["-c", deploy], host)
    check(rc == 0, "kernel driver: exit %d: %s" % (rc, err))
    check("note: [port.uplink] device = 0000:01:00.0 is on driver ixgbe: netmeta-setup-host "
          "(the service's ExecStartPre) binds it to vfio-pci" in out, out)

    # 4. Everything wrong at once: the config's own problems and the host's, all of them.
    notdir = os.path.join(tmp, "spool-is-a-file")
    open(notdir, "w").close()
    bad = os.path.join(tmp, "bad.ini")
    with open(bad, "w") as f:
        f.write("[eal]\nargs = -l 0-5\n"
                "[kafka]\nformat = xml\nspool_dir = %s\ncolour = blue\n"
                "[engine]\nmbufs = 65535\nlog_level = chatty\n"
                "[port.a]\ndevice = 0000:7f:00.0\nlcores = 0,1\n"
                "[port.b]\ndevice = net_pcap0,rx_pcap=%s/none.pcap\n"
                "[port.c]\ndevice = net_af_packet0,iface=nosuch0\n"
                "[port.d]\ndevice = net_af_xdp0\nrx_queues = 65\n"
                "[exporter.x]\nsampling_rate = 5\n"
                "[exporter.y]\naddress = 192.0.2.300\n" % (notdir, tmp))
    host = fake_host(os.path.join(tmp, "host-small"), cpus="0-1", ifaces=("eth1",),
                     huge_free=20, huge_nr=512)
    rc, out, err = run(["-c", bad, "--set", "kafka.linger_ms=-1", "--set", "nodot=1"], host)
    nmtest.log("broken config: rc %d\nstdout:\n%sstderr:\n%s" % (rc, out, err))
    check(rc == 2, "broken config: exit %d" % rc)
    src = bad + " + --set"
    sysfs = host["NM_CHECK_SYSFS"]
    want = [
        '%s: [kafka] format = "xml": expected one of protobuf, json' % bad,
        '%s: [kafka] colour = "blue": unknown key; [kafka] has brokers, topic, format, '
        'batch_bytes, linger_ms, compression, drain_timeout_ms, exporter_groups, '
        'queue_max_bytes, spool_dir, spool_max_bytes, spool_after_ms, spool_max_rejects and '
        'property.<librdkafka name>' % bad,
        '%s: [engine] log_level = "chatty": expected one of emerg, alert, crit, err, warning, '
        'notice, info, debug' % bad,
        '%s: [port.d] rx_queues = "65": expected an integer from 1 to 64' % bad,
        '%s: [exporter.y] address = "192.0.2.300": expected an IPv4 or IPv6 address (e.g. '
        '192.0.2.1 or 2001:db8::1)' % bad,
        '--set: [kafka] linger_ms = "-1": expected an integer from 0 to 60000',
        '--set nodot=1: expected SECTION.KEY=VALUE',
        '%s: [exporter.x]: address is missing (the exporter\'s IPv4 or IPv6 address, e.g. '
        'address = 192.0.2.1)' % src,
        '%s: [exporter.y]: address is missing' % src,
    ]
    for lc in (2, 3, 4, 5):
        want.append('%s: [eal] args = "-l 0-5": lcore %d is not an online CPU of this host '
                    '(online: 0-1, from %s/devices/system/cpu/online)' % (src, lc, sysfs))
    want += [
        '%s: [port.a] lcores = "0,1": lcore 0 is the main lcore (it runs the flusher); worker '
        'lcores are those of [eal] args (0-5) less 0' % src,
        '%s: [port.a] device = "0000:7f:00.0": no such PCI device on this host '
        '(%s/bus/pci/devices/0000:7f:00.0); dpdk-devbind.py --status lists the NICs'
        % (src, sysfs),
        '%s: [port.b] device = "net_pcap0,rx_pcap=%s/none.pcap": rx_pcap=%s/none.pcap: cannot '
        'read: No such file or directory' % (src, tmp, tmp),
        '%s: [port.c] device = "net_af_packet0,iface=nosuch0": iface=nosuch0: no such network '
        'interface on this host (%s/class/net/nosuch0; ip link lists them)' % (src, sysfs),
        '%s: [port.d] device = "net_af_xdp0": needs iface=<interface> (e.g. '
        'net_af_xdp0,iface=eth1)' % src,
        # 65535 x 2368 bytes + a ring of 65536 x 8: 148 MiB, and 17 MiB for EAL and rings
        '%s: [engine] mbufs = 65535, rx_desc = 1024: the mbuf pool (65535 mbufs for 4 port(s)) '
        'and EAL need about 165 MiB of hugepages, 40 MiB are free (2 MiB pages: 20 free of '
        '512): reserve more (netmeta-setup-host, or scripts/setup.sh) or lower [engine] '
        'mbufs / rx_desc / rx_queues' % src,
        '%s: [kafka] spool_dir = "%s": exists and is not a directory' % (src, notdir),
    ]
    lines = [l[len("netmeta: "):] for l in err.splitlines() if l.startswith("netmeta: ")]
    for w in want:
        check(any(l.startswith(w) for l in lines), "missing or different: %s" % w)
    check(lines and lines[-1] == "%s: %d problem(s); nothing was started" % (src, len(want)),
          "last line %r, expected %d problems" % (lines[-1] if lines else None, len(want)))
    check(len(lines) == len(want) + 1, "%d lines for %d problems" % (len(lines), len(want)))
    check("config and host OK" not in out, out)

    # 5. --pcap replaces the ports: the files are what is checked.
    rc, out, err = run(["--pcap", os.path.join(tmp, "missing.pcap")])
    check(rc == 2 and "netmeta: --pcap %s/missing.pcap: cannot read: No such file or directory"
          % tmp in err, "--pcap: %d %s" % (rc, err))

    # Nothing is started: EAL would make its runtime directory for this prefix.
    rc, out, err = run(["-c", shipped, "--", "--file-prefix=" + prefix])
    check(rc == 0, "with EAL words: %d %s" % (rc, err))
    check(not os.path.exists("/var/run/dpdk/" + prefix), "EAL ran: /var/run/dpdk/%s" % prefix)

    if problems:
        for p in problems:
            print("FAIL:", p, flush=True)
        return 1
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
