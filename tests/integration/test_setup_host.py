#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""scripts/setup-host.sh on this machine, checked against the machine itself.

--dry-run with the shipped netmeta.ini and with configs made here:
 - the hugepage lines agree with /proc/meminfo and sysfs (2 MiB and, with pdpe1gb in
   /proc/cpuinfo, 1 GiB): "ok" when enough are reserved, else the exact write it would do;
   asking for more than are reserved prints the echo into /proc/sys/vm/nr_hugepages and its undo;
 - the hugetlbfs line names the mount point /proc/mounts has;
 - the NIC listing is what dpdk-devbind.py --status-dev net prints;
 - CPU isolation: RX lcore 1 reported as not isolated exactly when /proc/cmdline does not put it
   in isolcpus and nohz_full;
 - binding: the PCI device behind the default route's interface is refused (exit 1, the message
   names the interface and the route), also for an SSH session ($SSH_CONNECTION); with --force
   the bind command, its undo (the current driver) and the IOMMU verdict (from
   /sys/kernel/iommu_groups) are printed; a PCI address that does not exist and a bad config
   value are errors that name them; a stop timeout shorter than the drain is refused;
 - and nothing changed: vm.nr_hugepages (2 MiB, 1 GiB), hugetlbfs mounts, the files under
   /etc/sysctl.d, /etc/modules-load.d, /etc/systemd/system, /etc/default, /etc/fstab, the
   drivers of every PCI device are the same before and after.
A real run (no --dry-run) inside a private mount namespace with a tmpfs over /etc/sysctl.d, with
no more hugepages than are reserved: the first run writes its sysctl file, the second changes
nothing. 15 s on an idle 2-core machine, 35 s with other tests running.
"""
import glob
import hashlib
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nmtest  # noqa: E402

SCRIPT = os.path.join(nmtest.SOURCE, "scripts", "setup-host.sh")
INI = os.path.join(nmtest.SOURCE, "netmeta.ini")
HP2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
HP1G = "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"
problems = []


def fail(msg):
    problems.append(msg)
    print("FAIL: " + msg, flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def run(args, env=None, timeout=60):
    e = dict(os.environ)
    e.pop("SSH_CONNECTION", None)
    e.update(env or {})
    p = subprocess.run(["bash", SCRIPT] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=e, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    print("$ setup-host.sh %s  -> exit %d\n%s" % (" ".join(args), p.returncode, out), flush=True)
    return p.returncode, out


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def tree_state(root):
    """Every file, link and directory under root with its content hash or link target."""
    state = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                state[p] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    state[p] = hashlib.sha256(f.read()).hexdigest()
            else:
                state[p] = "dir"
    return state


def host_state():
    s = {"nr_hugepages": read("/proc/sys/vm/nr_hugepages"), "2M": read(HP2M), "1G": read(HP1G),
         # Only hugetlbfs: tests of others create network namespaces (mounts under /run/netns).
         "hugetlbfs mounts": [l for l in read("/proc/mounts").splitlines() if " hugetlbfs " in l],
         "fstab": read("/etc/fstab"),
         "modules": sorted(os.listdir("/sys/module"))}
    for d in ("/etc/sysctl.d", "/etc/modules-load.d", "/etc/systemd/system", "/etc/default"):
        s[d] = tree_state(d)
    for dev in sorted(glob.glob("/sys/bus/pci/devices/*")):
        link = os.path.join(dev, "driver")
        s[dev] = os.readlink(link) if os.path.islink(link) else None
    return s


def meminfo(key):
    for line in read("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def cmdline_cpus(key):
    """CPUs of isolcpus=/nohz_full= in /proc/cmdline (flags such as managed_irq dropped)."""
    cpus = set()
    for w in read("/proc/cmdline").split():
        if w == "--":
            break
        if w.startswith(key + "="):
            cpus = set()
            for part in w.split("=", 1)[1].split(","):
                m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
                if m:
                    cpus |= set(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return cpus


def default_route_nic():
    """(interface, PCI address) behind the IPv4 default route, or None."""
    out = subprocess.run(["ip", "-4", "route", "show", "default"], stdout=subprocess.PIPE,
                         text=True).stdout
    m = re.search(r" dev (\S+)", out)
    if not m:
        return None
    dev = m.group(1)
    path = os.path.realpath("/sys/class/net/%s/device" % dev)
    for p in (path, os.path.dirname(path)):  # virtio: .../0000:00:03.0/virtio0
        if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", os.path.basename(p)):
            return dev, os.path.basename(p)
    return None


def write_ini(tmp, name, text):
    p = os.path.join(tmp, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def dry_default(tmp):
    """The shipped config: hugepages, mounts, NICs, isolation as this machine has them."""
    rc, out = run(["--dry-run", "-c", INI])
    check(rc == 0, "dry run of netmeta.ini: exit %d, expected 0" % rc)
    lines = out.splitlines()
    actions = [l for l in lines if l.startswith("[dry-run] ") and not l.startswith("[dry-run]   |")]
    check(not any(l.startswith("+ ") for l in lines), "a dry run printed '+ ' (executed) lines")

    # 2 MiB pages: default size on x86; /proc/meminfo's HugePages_Total is the sysfs count.
    total = meminfo("HugePages_Total")
    check(int(read(HP2M)) == total, "sysfs and /proc/meminfo disagree (test assumption)")
    m = re.search(r"2 MiB pages wanted: (\d+)", out)
    want = int(m.group(1)) if check(m, "no '2 MiB pages wanted' line") else 512
    check(want == 512, "netmeta.ini needs well under 1 GiB: wanted %d, expected the floor 512" % want)
    if total >= want:
        check("2 MiB hugepages: %d reserved now (>= %d): ok" % (total, want) in out,
              "2 MiB: %d reserved (/proc/meminfo) >= %d, expected the ok line" % (total, want))
        check(not any("/proc/sys/vm/nr_hugepages" in a for a in actions),
              "2 MiB: enough reserved, yet a write to nr_hugepages is planned")
    else:
        check("[dry-run] echo %d > /proc/sys/vm/nr_hugepages" % want in actions,
              "2 MiB: %d reserved < %d, expected the echo into nr_hugepages" % (total, want))

    # 1 GiB pages where the CPU has them.
    if re.search(r"\bpdpe1gb\b", read("/proc/cpuinfo")) and os.path.exists(HP1G):
        have = int(read(HP1G))
        check("1 GiB hugepages: the CPU has them (pdpe1gb); wanted 1, reserved now %d" % have in out,
              "1 GiB: expected 'wanted 1, reserved now %d'" % have)
        planned = "[dry-run] echo 1 > %s" % HP1G in actions
        check(planned == (have < 1), "1 GiB: %d reserved, echo planned: %s" % (have, planned))
    else:
        check("1 GiB hugepages: not available on this CPU" in out, "1 GiB: expected 'not available'")

    # hugetlbfs mounts from /proc/mounts.
    m2 = [l.split()[1] for l in read("/proc/mounts").splitlines()
          if l.split()[2] == "hugetlbfs" and "pagesize=2M" in l]
    if m2:
        check("hugetlbfs for 2 MiB pages: mounted (%s)" % m2[0] in out,
              "hugetlbfs: /proc/mounts has %s, not reported" % m2[0])
    else:
        check("[dry-run] mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages" in actions,
              "hugetlbfs: not mounted, expected the mount action")

    # NICs: the same listing dpdk-devbind.py gives.
    nics = subprocess.run(["dpdk-devbind.py", "--status-dev", "net"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout
    for l in nics.splitlines():
        if l.strip():
            check("    " + l in lines, "NIC listing: %r missing" % l)
    check(re.search(r"^\d{4}:", nics, re.M) is not None or "No 'Network' devices" in nics,
          "dpdk-devbind.py lists no NIC (test assumption)")
    check("vfio-pci: no PCI port to bind in the config" in out, "tap config: vfio-pci line")

    # CPU isolation of RX lcore 1 ([eal] args = -l 0-1).
    isolated = 1 in cmdline_cpus("isolcpus") and 1 in cmdline_cpus("nohz_full")
    warned = "CPU isolation: RX lcore(s) 1 are not in isolcpus and nohz_full" in out
    check(warned != isolated, "lcore 1 isolated per /proc/cmdline: %s, warned: %s" % (isolated, warned))
    check("recommended lcores: [eal] args = -l " in out, "no lcore recommendation")

    # Every planned action has an undo line (the last block, indented).
    if actions:
        undo = out.split("to undo them afterwards:", 1)
        check(len(undo) == 2 and len([l for l in undo[1].splitlines() if l.startswith("    ")]) >= 1,
              "actions planned but no undo commands printed")
    else:
        check("nothing to change" in out, "no actions and no 'nothing to change'")

    # Asking for more 2 MiB pages than are reserved: the write and its undo.
    more = int(read(HP2M)) + 64
    rc, out = run(["--dry-run", "-c", INI, "--hugepages-2m", str(more), "--hugepages-1g", "0"])
    check(rc == 0, "--hugepages-2m %d: exit %d" % (more, rc))
    check("[dry-run] echo %d > /proc/sys/vm/nr_hugepages" % more in out.splitlines(),
          "--hugepages-2m %d: no echo into nr_hugepages" % more)
    check("    echo %d > /proc/sys/vm/nr_hugepages" % (more - 64) in out.splitlines(),
          "--hugepages-2m %d: no undo back to %d" % (more, more - 64))


def dry_binding(tmp):
    nic = default_route_nic()
    if nic is None:
        print("no PCI NIC behind a default route here: refusal not checked", flush=True)
        return
    dev, pci = nic
    ini = write_ini(tmp, "pci.ini", "[port.uplink]\ndevice = %s\nrole = collector\n" % pci)
    rc, out = run(["--dry-run", "-c", ini])
    check(rc == 1, "default-route NIC %s (%s): exit %d, expected 1" % (pci, dev, rc))
    m = re.search(r"ERROR: refusing to bind \[port\.uplink\] %s to vfio-pci: (.*)" % re.escape(pci), out)
    if check(m, "default-route NIC %s: no refusal" % pci):
        check(m.group(1).startswith("%s carries the default route (default via" % dev),
              "refusal does not name %s and the default route: %s" % (dev, m.group(1)))
    check("-b vfio-pci" not in out, "a refused device still gets a bind action")

    # An SSH session into the same interface, named as such.
    addr = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", dev], stdout=subprocess.PIPE,
                          text=True).stdout.split()
    local = addr[3].split("/")[0] if len(addr) > 3 else "127.0.0.1"
    rc, out = run(["--dry-run", "-c", ini], env={"SSH_CONNECTION": "198.51.100.7 50000 %s 22" % local})
    check(rc == 1 and "the SSH session to %s:22" % local in out,
          "SSH_CONNECTION to %s: refusal does not name the SSH session" % local)

    # --force: the bind, its undo, and the IOMMU verdict.
    rc, out = run(["--dry-run", "-c", ini, "--force", "--hugepages-1g", "0"])
    lines = out.splitlines()
    check("refusing" not in out, "--force: still refused")
    check("[dry-run] dpdk-devbind.py --force -b vfio-pci %s" % pci in lines, "--force: no bind action")
    drv = os.path.basename(os.readlink("/sys/bus/pci/devices/%s/driver" % pci))
    check("    dpdk-devbind.py -b %s %s" % (drv, pci) in lines, "--force: undo to %s missing" % drv)
    groups = os.listdir("/sys/kernel/iommu_groups") if os.path.isdir("/sys/kernel/iommu_groups") else []
    if groups:
        check("IOMMU: %d groups: ok" % len(groups) in out, "IOMMU groups present, not reported ok")
    elif read("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode") != "Y":
        check("ERROR: IOMMU: /sys/kernel/iommu_groups is empty" in out and rc == 1,
              "no IOMMU groups here: expected the IOMMU error and exit 1")
    if os.path.isdir("/sys/bus/pci/drivers/vfio-pci"):
        check("vfio-pci: loaded" in out, "vfio-pci loaded, not reported")
    else:
        check("[dry-run] modprobe vfio-pci" in lines, "vfio-pci not loaded: no modprobe action")
    check("[dry-run] write /etc/modules-load.d/netmeta.conf:" in lines or
          "/etc/modules-load.d/netmeta.conf is up to date" in out, "modules-load.d file not planned")


def dry_errors(tmp):
    absent = "0000:7f:1f.7"
    if not os.path.exists("/sys/bus/pci/devices/" + absent):
        ini = write_ini(tmp, "absent.ini", "[port.gone]\ndevice = %s\n" % absent)
        rc, out = run(["--dry-run", "-c", ini])
        check(rc == 1 and "ERROR: [port.gone] device = %s: no such PCI device" % absent in out,
              "absent PCI device: exit %d, message missing" % rc)
    ini = write_ini(tmp, "bad.ini", "[port.p]\ndevice = net_null0\nrx_queues = 0\n")
    rc, out = run(["--dry-run", "-c", ini])
    check(rc == 2 and '%s: [port.p] rx_queues = "0": expected an integer from 1 to 64' % ini in out,
          "rx_queues = 0: exit %d, message missing" % rc)
    rc, out = run(["--dry-run", "-c", INI, "--stop-timeout", "60"])
    check(rc == 1 and "needs a stop timeout of at least 90 s" in out and "TimeoutStopSec=90" in out,
          "--stop-timeout 60 with a 60 s drain: exit %d, message missing" % rc)
    rc, out = run(["--dry-run", "-c", INI, "--stop-timeout", "90",
                   "--set", "kafka.drain_timeout_ms=59000"])
    check(rc == 0 and "stop timeout 90 s >= drain 59000 ms + 30 s: ok" in out,
          "--stop-timeout 90, drain 59 s: exit %d, expected ok" % rc)


def real_run_twice():
    """Idempotence of a real run, in a mount namespace of its own: the sysctl file lands in a
    tmpfs that vanishes with it; hugepages are not raised (asked for as many as there are)."""
    have = read(HP2M)
    inner = ("set -e; mount -t tmpfs tmpfs /etc/sysctl.d; "
             "bash {s} -c {i} --hugepages-2m {n} --hugepages-1g 0; echo '--- second run'; "
             "bash {s} -c {i} --hugepages-2m {n} --hugepages-1g 0; echo '--- file'; "
             "cat /etc/sysctl.d/80-netmeta-hugepages.conf 2>/dev/null || echo none").format(
                 s=SCRIPT, i=INI, n=have)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    print("$ (private mount namespace) setup-host.sh twice\n" + p.stdout, flush=True)
    if not check(p.returncode == 0, "real run in a mount namespace: exit %d" % p.returncode):
        return
    first, rest = p.stdout.split("--- second run", 1)
    second, content = rest.split("--- file", 1)
    boot_ok = "2 MiB hugepages across reboots: the kernel command line" in first or \
        "2 MiB hugepages across reboots: a sysctl file" in first
    if not boot_ok:
        check("+ write /etc/sysctl.d/80-netmeta-hugepages.conf" in first, "first run: no sysctl file")
        check("vm.nr_hugepages = %s" % have in content, "sysctl file content: %r" % content)
        check("/etc/sysctl.d/80-netmeta-hugepages.conf is up to date" in second,
              "second run: sysctl file not up to date")
    check("nothing to change: the host is set up as the config asks" in second,
          "second real run changed something")
    check(not re.search(r"^\+ ", second, re.M), "second real run executed actions")


def main():
    nmtest.exit_on_signals()
    nmtest.require_programs("dpdk-devbind.py", "ip", "findmnt", "unshare")
    if os.geteuid() != 0:
        nmtest.skip("needs root (reads the whole host, mounts a tmpfs in a private namespace)")
    before = host_state()
    with tempfile.TemporaryDirectory(prefix="nmtest-setup-host-") as tmp:
        dry_default(tmp)
        dry_binding(tmp)
        dry_errors(tmp)
    after = host_state()
    for k in before:
        check(before[k] == after[k], "dry runs changed %s" % k)
    real_run_twice()
    after = host_state()
    for k in before:
        check(before[k] == after[k], "the namespaced real run changed %s" % k)
    if problems:
        print("%d problem(s)" % len(problems))
        sys.exit(1)
    print("OK")


main()
