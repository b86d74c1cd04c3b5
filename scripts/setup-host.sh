#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Prepare this host for the NetMeta engine, as its config asks, and say what is not ready.
#
#   setup-host.sh [-c FILE] [--set SECTION.KEY=VALUE]... [--dry-run] [--force]
#                 [--hugepages-2m N] [--hugepages-1g N] [--stop-timeout SECONDS]
#
#   -c FILE            the engine's config (default /etc/netmeta/netmeta.ini, else the source
#                      tree's netmeta.ini next to this script); --set as on the engine's command line
#   --dry-run          print every action (lines "[dry-run] ...") and change nothing
#   --force            bind a NIC even if it carries the default route or an SSH session
#   --hugepages-2m N   2 MiB pages to reserve (default: what the config needs, at least 512)
#   --hugepages-1g N   1 GiB pages to reserve where the CPU has them (pdpe1gb); default: what the
#                      config needs; 0: none
#   --stop-timeout S   the systemd unit's TimeoutStopSec: fail when kafka.drain_timeout_ms plus
#                      a 30 s margin does not fit in it (the unit passes its own value)
#
# What it does (each step only when the host is not already so; a second run changes nothing):
#   - 2 MiB hugepages: raises vm.nr_hugepages now (never lowers it) and keeps the number across
#     reboots in /etc/sysctl.d/80-netmeta-hugepages.conf, unless the kernel command line or
#     another sysctl file already reserves enough;
#   - 1 GiB hugepages (CPU flag pdpe1gb): raises the count now through sysfs (the kernel often
#     cannot find 1 GiB of contiguous memory after boot: what it got is reported) and across
#     reboots on the kernel command line, "hugepagesz=1G hugepages=N", through
#     /etc/default/grub.d/netmeta-hugepages.cfg and update-grub (sysctl cannot reserve them);
#   - hugetlbfs: mounts /dev/hugepages (2 MiB; across reboots systemd's dev-hugepages.mount, or
#     an /etc/fstab line without systemd) and /dev/hugepages1G (pagesize=1G; across reboots
#     /etc/systemd/system/dev-hugepages1G.mount);
#   - vfio-pci, when a [port.*] device is a PCI address: loads the module now and at boot
#     (/etc/modules-load.d/netmeta.conf), checks the IOMMU (/sys/kernel/iommu_groups), and binds
#     the devices with dpdk-devbind.py (package dpdk; the systemd unit runs this script before
#     each start, which is what keeps the binding across reboots). A device whose interface
#     carries the default route or an SSH session is refused unless --force. NICs whose DPDK
#     driver works with the kernel driver (mlx4/mlx5) are left alone;
#   - reports: the NICs (dpdk-devbind.py --status-dev net), CPU isolation of the RX lcores
#     (isolcpus, nohz_full, rcu_nocbs in /proc/cmdline), NUMA node of each NIC against its
#     lcores, memory the config needs (hugepages for mbufs, ordinary RAM for the aggregation
#     tables and Kafka buffers), and recommended lcores.
# At the end it prints the commands that undo what this run changed.
#
# Exit status: 0 the host is ready (warnings may be printed); 1 it is not (an action failed, a
# device is missing or refused, no IOMMU for vfio-pci, too few hugepages, drain longer than the
# stop timeout); 2 bad usage or config.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PROG=setup-host

conf=""
sets=()
dry=0
force=0
hp2m=""
hp1g=""
stop_timeout=""
DRAIN_MARGIN_S=30

usage() {
    sed -n '4,18p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "$PROG: $*" >&2
    exit 2
}

need_arg() {
    [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (--help)"
}

while [ $# -gt 0 ]; do
    case "$1" in
    -c | --config) need_arg "$@"; conf=$2; shift 2 ;;
    --set) need_arg "$@"; sets+=("$2"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    --force) force=1; shift ;;
    --hugepages-2m) need_arg "$@"; hp2m=$2; shift 2 ;;
    --hugepages-1g) need_arg "$@"; hp1g=$2; shift 2 ;;
    --stop-timeout) need_arg "$@"; stop_timeout=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (--help)" ;;
    esac
done
for v in "$hp2m" "$hp1g" "$stop_timeout"; do
    [ -z "$v" ] || [[ "$v" =~ ^[0-9]+$ ]] || die "expected a number, got '$v'"
done
if [ -z "$conf" ]; then
    if [ -f /etc/netmeta/netmeta.ini ]; then
        conf=/etc/netmeta/netmeta.ini
    elif [ -f "$HERE/../netmeta.ini" ]; then
        conf="$(cd "$HERE/.." && pwd)/netmeta.ini"
    else
        die "no config: give -c FILE"
    fi
fi
[ -r "$conf" ] || die "$conf: cannot read"
if [ "$dry" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (it writes /proc/sys, /sys and /etc), or with --dry-run"
fi

# The files this script owns (each says so in its first line).
SYSCTL_FILE=/etc/sysctl.d/80-netmeta-hugepages.conf
GRUB_FILE=/etc/default/grub.d/netmeta-hugepages.cfg
MODLOAD_FILE=/etc/modules-load.d/netmeta.conf
MOUNT1G=/dev/hugepages1G
MOUNT1G_UNIT=/etc/systemd/system/dev-hugepages1G.mount
MOUNT1G_WANTS=/etc/systemd/system/local-fs.target.wants/dev-hugepages1G.mount
HP2M_SYS=/sys/kernel/mm/hugepages/hugepages-2048kB
HP1G_SYS=/sys/kernel/mm/hugepages/hugepages-1048576kB

errors=0
changes=0
undo=()

info() { echo "$PROG: $*"; }
warn() { echo "$PROG: WARNING: $*"; }
err() {
    echo "$PROG: ERROR: $*"
    errors=$((errors + 1))
}

# act UNDO-COMMAND -- COMMAND...: print and run COMMAND (only print it with --dry-run), and
# remember how to undo it. A failing command is an error, not the end: later checks still report.
act() {
    local u=$1
    shift 2
    changes=$((changes + 1))
    [ -n "$u" ] && undo=("$u" "${undo[@]}")
    local shown="$*"
    [ "$1" = echo_to ] && shown="echo $2 > $3"
    if [ "$dry" = 1 ]; then
        echo "[dry-run] $shown"
        return 0
    fi
    echo "+ $shown"
    if ! "$@"; then
        err "failed: $*"
        return 1
    fi
}

# write_file PATH CONTENT UNDO: create or replace a file this script owns, when its content
# differs.
write_file() {
    local path=$1 content=$2 u=$3
    if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
        info "$path is up to date"
        return 0
    fi
    changes=$((changes + 1))
    undo=("$u" "${undo[@]}")
    if [ "$dry" = 1 ]; then
        echo "[dry-run] write $path:"
        sed 's/^/[dry-run]   | /' <<<"$content"
        return 0
    fi
    echo "+ write $path"
    mkdir -p "$(dirname "$path")" && printf '%s\n' "$content" >"$path" || err "cannot write $path"
}

# echo_to VALUE FILE: write a value into /proc or /sys (a function so that act can run it).
echo_to() {
    echo "$1" >"$2"
}

# ---------------------------------------------------------------------------------------------
# The config, read the way the engine reads it (iniparser: case-insensitive sections and keys,
# ";" and "#" comments, --set overrides last) and turned into shell variables. Only what this
# script needs is checked here; the engine checks the rest when it starts.
py_out=$(python3 - "$conf" "${sets[@]+"${sets[@]}"}" <<'PY'
import configparser, math, os, re, shlex, sys

path, sets = sys.argv[1], sys.argv[2:]

def fail(msg):
    print("setup-host: %s" % msg, file=sys.stderr)
    sys.exit(2)

cp = configparser.RawConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=(";", "#"),
                                  strict=False, interpolation=None, delimiters=("=",))
try:
    with open(path) as f:
        cp.read_file(f)
except (OSError, configparser.Error) as e:
    fail("%s: %s" % (path, e))
cfg = {}
for sec in cp.sections():
    d = cfg.setdefault(sec.lower(), {})
    for k, v in cp.items(sec):
        d[k.lower()] = v.strip().strip('"')
src = path
for s in sets:
    m = re.match(r"^([A-Za-z0-9_.-]+)\.([A-Za-z0-9_]+)=(.*)$", s)
    if not m:
        fail("--set %s: expected SECTION.KEY=VALUE" % s)
    cfg.setdefault(m.group(1).lower(), {})[m.group(2).lower()] = m.group(3)
    src = path + " + --set"

def get(sec, key, default):
    return cfg.get(sec, {}).get(key, "") or default

def num(sec, key, default, lo, hi):
    v = get(sec, key, str(default))
    if not re.fullmatch(r"[0-9]+", v) or not lo <= int(v) <= hi:
        fail("%s: [%s] %s = \"%s\": expected an integer from %d to %d" % (src, sec, key, v, lo, hi))
    return int(v)

def cpu_list(text, what):
    out = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            fail("%s: %s \"%s\": expected lcore ids like 1 or 1,2 or 1-3" % (src, what, text))
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        out += list(range(a, b + 1))
    return out

# [eal] args: the lcores (-l LIST, --lcores LIST, -c MASK); the first is the main lcore, which
# runs the flusher; the others poll RX queues.
eal = get("eal", "args", "-l 0-1").split()
lcores = None
i = 0
while i < len(eal):
    a = eal[i]
    val = None
    if a in ("-l", "--lcores", "-c") and i + 1 < len(eal):
        val, i = eal[i + 1], i + 1
    elif a.startswith("--lcores="):
        val, a = a.split("=", 1)[1], "--lcores"
    elif len(a) > 2 and a[:2] in ("-l", "-c") and a[2] != "-":
        val, a = a[2:], a[:2]
    if val is not None:
        if a == "-c":
            mask = int(val, 16)
            lcores = [b for b in range(mask.bit_length()) if mask >> b & 1]
        else:
            if "@" in val or "(" in val:
                fail("%s: [eal] args: lcore maps (%s) are not understood here; use -l" % (src, val))
            lcores = cpu_list(val, "[eal] args -l")
    i += 1
if lcores is None:
    lcores = list(range(os.cpu_count() or 1))
main_lcore, workers = lcores[0], lcores[1:]

# Ports: a file with [port.*] sections replaces the default tap port.
ports = []
for sec in sorted(s for s in cfg if s.startswith("port.")):
    name = sec[5:]
    dev = get(sec, "device", "")
    if not dev:
        fail("%s: [%s] device: missing (PCI address or vdev string)" % (src, sec))
    role = get(sec, "role", "collector")
    if role not in ("collector", "mirror-rx", "mirror-tx"):
        fail("%s: [%s] role = \"%s\": expected one of collector, mirror-rx, mirror-tx" % (src, sec, role))
    q = num(sec, "rx_queues", 1, 1, 64)
    lc = get(sec, "lcores", "")
    ports.append({"name": name, "device": dev, "role": role, "rxq": q,
                  "lcores": cpu_list(lc, "[%s] lcores" % sec) if lc else []})
if not ports:
    ports.append({"name": "tap0", "device": "net_tap0,iface=nm0", "role": "collector", "rxq": 1,
                  "lcores": []})

def pci_addr(dev):
    m = re.fullmatch(r"(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])", dev.split(",")[0])
    if not m:
        return None
    return ("%s:%s:%s.%s" % (m.group(1) or "0000", m.group(2), m.group(3), m.group(4))).lower()

def node_of_pci(addr):
    try:
        n = int(open("/sys/bus/pci/devices/%s/numa_node" % addr).read())
    except (OSError, ValueError):
        return -1
    return n

# Queue -> lcore as the engine assigns them (dpdk_app/main.c): a port's lcores key takes its
# queues q -> lcores[q mod n]; the queues of the other ports go round robin over every worker.
rr = 0
used = {}
for p in ports:
    p["pci"] = pci_addr(p["device"])
    p["node"] = node_of_pci(p["pci"]) if p["pci"] else -1
    p["polled_by"] = []
    for qi in range(p["rxq"]):
        if p["lcores"]:
            lc = p["lcores"][qi % len(p["lcores"])]
        elif workers:
            lc = workers[rr % len(workers)]
            rr += 1
        else:
            lc = None
        if lc is not None and lc not in p["polled_by"]:
            p["polled_by"].append(lc)
        if lc is not None:
            used[lc] = True

# Hugepages: one mbuf pool per NUMA socket with ports, sized as create_pools() does: every RX
# descriptor, full per-lcore caches (256 * 3/2) and a burst (32) per lcore, [engine] mbufs the
# floor, rounded up to 2^k - 1. An mbuf element is 2368 bytes (2176 buffer incl. headroom + 128
# rte_mbuf + 64 mempool header), its ring 8 bytes. Measured with a net_tap port (hugetlbfs files
# of the engine's --file-prefix while it runs): 16383 mbufs 42 MiB, 65535 152 MiB, 262143 600 MiB,
# i.e. the pool plus 4-7 MiB (EAL, ethdev rings, workers, rings, telemetry). Allowed: 16 MiB per
# socket on top, and 10 % slack.
mbufs = num("engine", "mbufs", 16383, 1, 1 << 30)
rx_desc = num("engine", "rx_desc", 1024, 1, 65536)
need = {}
n_lcores = len(lcores)
for p in ports:
    s = max(p["node"], 0)
    need[s] = need.get(s, 0) + p["rxq"] * rx_desc + 64 + n_lcores * (256 * 3 // 2 + 32)
pool_bytes = 0
for s, n in need.items():
    n = max(n, mbufs)
    n = (1 << math.ceil(math.log2(n + 1))) - 1
    pool_bytes += n * 2368 + (n + 1) * 8
huge_mib = math.ceil((pool_bytes / 1048576 + 16 * len(need)) * 1.1)

# Ordinary memory: NM_TABLES_PER_WORKER (4) aggregation tables per polling lcore, each
# cap = max_flows + max_flows/64 + 16 entries of 256 bytes (lib/agg: cds_lfht node, flows, the
# 232-byte record), a bucket per power of two >= cap (16 bytes), a 4096-slot cache (16 bytes);
# Kafka: a batch_bytes buffer per exporter group, librdkafka's queue up to queue_max_bytes.
max_flows = num("aggregation", "max_flows", 262144, 1, 1 << 30)
cap = max_flows + max_flows // 64 + 16
buckets = 1 << math.ceil(math.log2(cap))
table_bytes = cap * 256 + buckets * 16 + min(buckets, 4096) * 16
n_workers = len(used)
batch = num("kafka", "batch_bytes", 1000000, 1, 104857600)
groups = num("kafka", "exporter_groups", 16, 1, 1024)
queue = num("kafka", "queue_max_bytes", 268435456, 1, 1 << 62)
ram_mib = math.ceil((4 * n_workers * table_bytes + groups * batch + queue) / 1048576)
drain = num("kafka", "drain_timeout_ms", 60000, 0, 1 << 31)

def sh(name, val):
    if isinstance(val, (list, tuple)):
        print("%s=(%s)" % (name, " ".join(shlex.quote(str(x)) for x in val)))
    else:
        print("%s=%s" % (name, shlex.quote(str(val))))

sh("NM_SRC", src)
sh("NM_LCORES", lcores)
sh("NM_MAIN_LCORE", main_lcore)
sh("NM_WORKERS", workers)
sh("NM_PORT_NAMES", [p["name"] for p in ports])
sh("NM_PORT_DEVS", [p["device"] for p in ports])
sh("NM_PORT_PCI", [p["pci"] or "-" for p in ports])
sh("NM_PORT_RXQ", [p["rxq"] for p in ports])
sh("NM_PORT_POLLED", [",".join(map(str, p["polled_by"])) or "-" for p in ports])
sh("NM_PORT_LCKEY", [1 if p["lcores"] else 0 for p in ports])
sh("NM_HUGE_MIB", huge_mib)
sh("NM_POOL_MIB", math.ceil(pool_bytes / 1048576))
sh("NM_TABLE_MIB", math.ceil(table_bytes / 1048576))
sh("NM_N_WORKERS", n_workers)
sh("NM_RAM_MIB", ram_mib)
sh("NM_DRAIN_MS", drain)
PY
) || exit $?
eval "$py_out"

info "config $NM_SRC: lcores ${NM_LCORES[*]} (main ${NM_MAIN_LCORE}, flusher), ${#NM_PORT_NAMES[@]} port(s)"
if [ "$dry" = 1 ]; then
    info "dry run: nothing is changed; every action is printed as \"[dry-run] ...\""
fi

# ---------------------------------------------------------------------------------------------
# Hugepages

# Pages of SIZE (2M or 1G) the kernel command line reserves at boot (0 if none): "hugepages=N"
# counts pages of the size named by the "hugepagesz=" before it, else of the default size (2M).
cmdline_pages() {
    local want=$1 size=2M w n=0
    for w in $(cat /proc/cmdline); do
        case "$w" in
        --) break ;;
        hugepagesz=*)
            case "${w#hugepagesz=}" in
            2M | 2m | 2048K | 2048k) size=2M ;;
            1G | 1g | 1024M | 1024m | 1048576K | 1048576k) size=1G ;;
            *) size=other ;;
            esac
            ;;
        hugepages=*) [ "$size" = "$want" ] && n=${w#hugepages=} ;;
        esac
    done
    echo "$n"
}
# The largest vm.nr_hugepages some sysctl file other than ours sets (0 if none).
sysctl_files_pages() {
    local f n max=0
    for f in /etc/sysctl.conf /etc/sysctl.d/*.conf /run/sysctl.d/*.conf /usr/lib/sysctl.d/*.conf \
        /lib/sysctl.d/*.conf; do
        [ -f "$f" ] && [ "$f" != "$SYSCTL_FILE" ] || continue
        n=$(sed -n 's/^[[:space:]]*vm[./]nr_hugepages[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$f" | tail -1)
        [ -n "$n" ] && [ "$n" -gt "$max" ] && max=$n
    done
    echo "$max"
}

need_2m=$(((NM_HUGE_MIB + 1) / 2))
want_2m=${hp2m:-$((need_2m > 512 ? need_2m : 512))}
[ -n "$hp2m" ] && need_2m=$((need_2m < hp2m ? need_2m : hp2m))
info "hugepages: the config needs about ${NM_HUGE_MIB} MiB (mbuf pools ${NM_POOL_MIB} MiB + EAL and rings); 2 MiB pages wanted: ${want_2m}"
cur_2m=$(cat "$HP2M_SYS/nr_hugepages" 2>/dev/null || echo 0)
if [ "$cur_2m" -ge "$want_2m" ]; then
    info "2 MiB hugepages: ${cur_2m} reserved now (>= ${want_2m}): ok"
else
    act "echo $cur_2m > /proc/sys/vm/nr_hugepages" -- echo_to "$want_2m" /proc/sys/vm/nr_hugepages || true
    if [ "$dry" = 0 ]; then
        got=$(cat "$HP2M_SYS/nr_hugepages")
        if [ "$got" -lt "$need_2m" ]; then
            err "the kernel reserved only $got of $want_2m 2 MiB hugepages (the config needs $need_2m): free memory, or reserve them at boot"
        elif [ "$got" -lt "$want_2m" ]; then
            warn "the kernel reserved $got of $want_2m 2 MiB hugepages (enough for this config)"
        fi
    fi
fi
boot_cmd=$(cmdline_pages 2M)
boot_sysctl=$(sysctl_files_pages)
if [ "$boot_cmd" -ge "$want_2m" ]; then
    info "2 MiB hugepages across reboots: the kernel command line reserves $boot_cmd: ok"
elif [ "$boot_sysctl" -ge "$want_2m" ]; then
    info "2 MiB hugepages across reboots: a sysctl file sets vm.nr_hugepages = $boot_sysctl: ok"
else
    info "2 MiB hugepages across reboots: sysctl file $SYSCTL_FILE"
    write_file "$SYSCTL_FILE" "# NetMeta engine (setup-host.sh): 2 MiB hugepages at boot
vm.nr_hugepages = $want_2m" "rm -f $SYSCTL_FILE"
fi

if grep -qw pdpe1gb /proc/cpuinfo && [ -d "$HP1G_SYS" ]; then
    want_1g=${hp1g:-$(((NM_HUGE_MIB + 1023) / 1024))}
    cur_1g=$(cat "$HP1G_SYS/nr_hugepages")
    if [ "$want_1g" -eq 0 ]; then
        info "1 GiB hugepages: none wanted (--hugepages-1g 0); ${cur_1g} reserved"
    else
        info "1 GiB hugepages: the CPU has them (pdpe1gb); wanted ${want_1g}, reserved now ${cur_1g}"
        if [ "$cur_1g" -lt "$want_1g" ]; then
            act "echo $cur_1g > $HP1G_SYS/nr_hugepages" -- echo_to "$want_1g" "$HP1G_SYS/nr_hugepages" || true
            if [ "$dry" = 0 ]; then
                got=$(cat "$HP1G_SYS/nr_hugepages")
                [ "$got" -ge "$want_1g" ] ||
                    warn "the kernel found only $got of $want_1g 1 GiB pages now (memory is fragmented after boot); the 2 MiB pages cover the need until the next boot"
            fi
        fi
        boot_1g=$(cmdline_pages 1G)
        if [ "$boot_1g" -ge "$want_1g" ]; then
            info "1 GiB hugepages across reboots: the kernel command line reserves $boot_1g: ok"
        elif [ -f /etc/default/grub ] && command -v update-grub >/dev/null; then
            info "1 GiB hugepages across reboots: kernel command line (GRUB), hugepagesz=1G hugepages=$want_1g"
            if [ ! -f "$GRUB_FILE" ] || ! grep -q "hugepages=$want_1g\"" "$GRUB_FILE"; then
                write_file "$GRUB_FILE" "# NetMeta engine (setup-host.sh): 1 GiB hugepages at boot
GRUB_CMDLINE_LINUX=\"\$GRUB_CMDLINE_LINUX hugepagesz=1G hugepages=$want_1g\"" "rm -f $GRUB_FILE && update-grub"
                act "" -- update-grub || true
            else
                info "$GRUB_FILE is up to date (takes effect at the next boot)"
            fi
        else
            warn "1 GiB hugepages across reboots: this host has no GRUB config (/etc/default/grub); add \"hugepagesz=1G hugepages=$want_1g\" to the kernel command line in its boot loader"
        fi
        if findmnt -n -t hugetlbfs -o OPTIONS | grep -q 'pagesize=1024M\|pagesize=1G'; then
            info "hugetlbfs for 1 GiB pages: mounted ($(findmnt -n -t hugetlbfs -o TARGET,OPTIONS | grep 'pagesize=1024M\|pagesize=1G' | awk '{print $1}' | head -1))"
        else
            act "rmdir $MOUNT1G" -- mkdir -p "$MOUNT1G" || true
            act "umount $MOUNT1G" -- mount -t hugetlbfs -o pagesize=1G nodev "$MOUNT1G" || true
        fi
        write_file "$MOUNT1G_UNIT" "# NetMeta engine (setup-host.sh): hugetlbfs for 1 GiB pages
[Unit]
Description=Huge Pages File System, 1 GiB pages (NetMeta)
DefaultDependencies=no
Before=sysinit.target
ConditionPathExists=$HP1G_SYS
ConditionCapability=CAP_SYS_ADMIN

[Mount]
What=hugetlbfs
Where=$MOUNT1G
Type=hugetlbfs
Options=pagesize=1G

[Install]
WantedBy=local-fs.target" "rm -f $MOUNT1G_UNIT"
        if [ -L "$MOUNT1G_WANTS" ]; then
            info "$MOUNT1G_WANTS is in place"
        else
            act "rm -f $MOUNT1G_WANTS" -- ln -sf ../dev-hugepages1G.mount "$MOUNT1G_WANTS" || true
        fi
    fi
else
    info "1 GiB hugepages: not available on this CPU (no pdpe1gb): 2 MiB pages only"
fi

# 2 MiB hugetlbfs: EAL finds every mounted hugetlbfs by itself.
if findmnt -n -t hugetlbfs -o OPTIONS | grep -q 'pagesize=2M'; then
    info "hugetlbfs for 2 MiB pages: mounted ($(findmnt -n -t hugetlbfs -o TARGET,OPTIONS | grep pagesize=2M | awk '{print $1}' | head -1))"
else
    act "rmdir /dev/hugepages" -- mkdir -p /dev/hugepages || true
    act "umount /dev/hugepages" -- mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages || true
fi
if [ -f /lib/systemd/system/dev-hugepages.mount ] || [ -f /usr/lib/systemd/system/dev-hugepages.mount ]; then
    info "hugetlbfs across reboots: systemd's dev-hugepages.mount"
elif grep -qs '^[^#].*[[:space:]]hugetlbfs[[:space:]]' /etc/fstab; then
    info "hugetlbfs across reboots: /etc/fstab"
else
    act "sed -i '/NetMeta setup-host/d' /etc/fstab" -- \
        sh -c 'echo "nodev /dev/hugepages hugetlbfs pagesize=2M 0 0 # NetMeta setup-host" >> /etc/fstab' || true
fi

# ---------------------------------------------------------------------------------------------
# NICs

if command -v dpdk-devbind.py >/dev/null; then
    info "NICs (dpdk-devbind.py --status-dev net):"
    # lspci complains on hosts without kernel modules (libkmod); the listing is still right.
    dpdk-devbind.py --status-dev net 2>/dev/null | sed '/^$/d; s/^/    /'
else
    err "dpdk-devbind.py not found (apt-get install dpdk)"
fi

# Interfaces this host is reached through: the default routes' devices and those of SSH
# sessions ($SSH_CONNECTION of whoever runs this, and every established connection to sshd's
# port), each with the devices under it (VLAN, bond, bridge ports).
declare -A guard=()
add_guard() {
    local dev=$1 why=$2 low
    [ -n "$dev" ] && [ -d "/sys/class/net/$dev" ] || return 0
    guard[$dev]="${guard[$dev]:+${guard[$dev]}, }$why"
    for low in /sys/class/net/"$dev"/lower_* /sys/class/net/"$dev"/brif/*; do
        [ -e "$low" ] || continue
        low=$(basename "$low")
        add_guard "${low#lower_}" "$why (through $dev)"
    done
}
route_dev() {
    ip route get "$1" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -1
}
addr_dev() {
    ip -o addr show to "$1" 2>/dev/null | awk '{print $2}' | head -1
}
while read -r line; do
    dev=$(sed -n 's/.* dev \([^ ]*\).*/\1/p' <<<"$line")
    add_guard "$dev" "the default route ($line)"
done < <(ip -4 route show default 2>/dev/null; ip -6 route show default 2>/dev/null)
ssh_peers=()
if [ -n "${SSH_CONNECTION:-}" ]; then
    read -r c_ip _ s_ip s_port <<<"$SSH_CONNECTION"
    ssh_peers+=("$c_ip $s_ip $s_port")
fi
if command -v ss >/dev/null; then
    while read -r local peer; do
        ssh_peers+=("${peer%:*} ${local%:*} ${local##*:}")
    done < <(ss -Htn state established '( sport = :22 )' 2>/dev/null | awk '{print $(NF-1), $NF}')
fi
for s in "${ssh_peers[@]+"${ssh_peers[@]}"}"; do
    read -r c_ip s_ip s_port <<<"$s"
    c_ip=${c_ip#[}; c_ip=${c_ip%]}; s_ip=${s_ip#[}; s_ip=${s_ip%]}
    add_guard "$(route_dev "$c_ip")" "the SSH session from $c_ip"
    add_guard "$(addr_dev "$s_ip")" "the SSH session to $s_ip:$s_port"
done

# Kernel interfaces of a PCI device (virtio NICs keep theirs one level down).
pci_ifaces() {
    local d
    for d in /sys/bus/pci/devices/"$1"/net/* /sys/bus/pci/devices/"$1"/virtio*/net/*; do
        [ -e "$d" ] && basename "$d"
    done
}
pci_driver() {
    local l
    l=$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null) && basename "$l" || echo none
}

to_bind=()
for i in "${!NM_PORT_NAMES[@]}"; do
    pci=${NM_PORT_PCI[$i]}
    [ "$pci" != "-" ] || continue
    name=${NM_PORT_NAMES[$i]}
    if [ ! -d "/sys/bus/pci/devices/$pci" ]; then
        err "[port.$name] device = $pci: no such PCI device on this host (dpdk-devbind.py --status lists them)"
        continue
    fi
    drv=$(pci_driver "$pci")
    case "$drv" in
    vfio-pci | igb_uio | uio_pci_generic)
        info "[port.$name] $pci: bound to $drv already"
        continue
        ;;
    mlx4_core | mlx5_core)
        info "[port.$name] $pci: $drv: the mlx PMDs work beside the kernel driver, nothing to bind"
        continue
        ;;
    esac
    ifs=$(pci_ifaces "$pci" | tr '\n' ' ' | sed 's/ $//')
    refused=""
    for ifc in $ifs; do
        [ -n "${guard[$ifc]:-}" ] && refused="${refused:+$refused; }$ifc carries ${guard[$ifc]}"
    done
    if [ -n "$refused" ] && [ "$force" = 0 ]; then
        err "refusing to bind [port.$name] $pci to vfio-pci: $refused. Binding it would cut this host off that network; --force does it anyway (or use an AF_XDP port on a shared NIC)"
        continue
    elif [ -n "$refused" ]; then
        warn "[port.$name] $pci: $refused; binding anyway (--force)"
    fi
    info "[port.$name] $pci (${ifs:-no interface}, driver $drv): to bind to vfio-pci"
    to_bind+=("$pci:$drv")
done

if [ "${#to_bind[@]}" -gt 0 ]; then
    if [ -n "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; then
        info "IOMMU: $(ls /sys/kernel/iommu_groups | wc -l) groups: ok"
    elif [ "$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode 2>/dev/null)" = Y ]; then
        warn "IOMMU: none, vfio runs in unsafe no-IOMMU mode (DMA is not confined)"
    else
        err "IOMMU: /sys/kernel/iommu_groups is empty, vfio-pci cannot take devices: enable VT-d/AMD-Vi in the firmware and add intel_iommu=on iommu=pt (or amd_iommu=on) to the kernel command line"
    fi
    if [ -d /sys/bus/pci/drivers/vfio-pci ]; then
        info "vfio-pci: loaded"
    elif command -v modprobe >/dev/null || [ "$dry" = 1 ]; then
        act "modprobe -r vfio-pci" -- modprobe vfio-pci || true
    else
        err "vfio-pci is not loaded and modprobe is missing (apt-get install kmod)"
    fi
    write_file "$MODLOAD_FILE" "# NetMeta engine (setup-host.sh): vfio-pci for the DPDK ports
vfio-pci" "rm -f $MODLOAD_FILE"
    for pd in "${to_bind[@]}"; do
        pci=${pd%:*}
        drv=${pd##*:}
        fa=()
        [ "$force" = 1 ] && fa=(--force)
        act "dpdk-devbind.py -b $drv $pci" -- dpdk-devbind.py "${fa[@]+"${fa[@]}"}" -b vfio-pci "$pci" || true
    done
else
    info "vfio-pci: no PCI port to bind in the config (vdev ports: net_af_xdp, net_af_packet, net_tap, net_pcap need none)"
fi

# ---------------------------------------------------------------------------------------------
# CPUs and NUMA

# Expand a kernel cpu list ("1-3,5", flags such as "domain,managed_irq," dropped).
expand() {
    local part a b
    for part in ${1//,/ }; do
        [[ "$part" =~ ^[0-9]+(-[0-9]+)?$ ]] || continue
        a=${part%-*}
        b=${part#*-}
        seq "$a" "$b"
    done
}
cmd_val() {
    tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -1
}
node_of_cpu() {
    local n
    for n in /sys/devices/system/cpu/cpu"$1"/node*; do
        [ -e "$n" ] && { basename "$n" | tr -dc 0-9; return; }
    done
    echo 0
}
online=" $(expand "$(cat /sys/devices/system/cpu/online)" | tr '\n' ' ') "
isol=" $(expand "$(cmd_val isolcpus)" | tr '\n' ' ') "
nohz=" $(expand "$(cmd_val nohz_full)" | tr '\n' ' ') "
rcuno=" $(expand "$(cmd_val rcu_nocbs)" | tr '\n' ' ') "
info "CPUs online:$online; isolcpus:${isol:- }; nohz_full:${nohz:- }; rcu_nocbs:${rcuno:- }" | sed 's/  */ /g; s/: ;/: none;/g; s/: $/: none/'
for lc in "${NM_LCORES[@]}"; do
    [[ "$online" == *" $lc "* ]] || err "[eal] args: lcore $lc is not an online CPU of this host (online:$online)"
done
not_isol=()
for i in "${!NM_PORT_NAMES[@]}"; do
    for lc in ${NM_PORT_POLLED[$i]//,/ }; do
        [ "$lc" != "-" ] || continue
        if [[ "$isol" != *" $lc "* ]] || [[ "$nohz" != *" $lc "* ]]; then
            [[ " ${not_isol[*]-} " == *" $lc "* ]] || not_isol+=("$lc")
        fi
    done
done
if [ "${#not_isol[@]}" -gt 0 ]; then
    l=$(tr ' ' ',' <<<"${not_isol[*]}")
    warn "CPU isolation: RX lcore(s) $l are not in isolcpus and nohz_full: the scheduler and the timer tick interrupt their polling; add \"isolcpus=$l nohz_full=$l rcu_nocbs=$l\" to the kernel command line"
elif [ "$NM_N_WORKERS" -gt 0 ]; then
    info "CPU isolation: every RX lcore is in isolcpus and nohz_full: ok"
fi
for i in "${!NM_PORT_NAMES[@]}"; do
    pci=${NM_PORT_PCI[$i]}
    name=${NM_PORT_NAMES[$i]}
    if [ "$pci" = "-" ]; then
        info "NUMA: [port.$name] ${NM_PORT_DEVS[$i]%%,*} is a virtual device; polled by lcore(s) ${NM_PORT_POLLED[$i]}"
        continue
    fi
    pn=$(cat "/sys/bus/pci/devices/$pci/numa_node" 2>/dev/null || echo -1)
    if [ "$pn" -lt 0 ]; then
        info "NUMA: [port.$name] $pci has no NUMA node (single-node host); polled by lcore(s) ${NM_PORT_POLLED[$i]}"
        continue
    fi
    for lc in ${NM_PORT_POLLED[$i]//,/ }; do
        [ "$lc" != "-" ] || continue
        cn=$(node_of_cpu "$lc")
        if [ "$cn" = "$pn" ]; then
            info "NUMA: [port.$name] $pci on node $pn, lcore $lc on node $cn: ok"
        else
            warn "NUMA: [port.$name] $pci is on node $pn but lcore $lc is on node $cn: every packet crosses the interconnect; use lcores of node $pn"
        fi
    done
done

# Recommended lcores: per port node, one RX lcore per queue on that node, isolated CPUs first,
# one hyperthread per core, CPU 0 last (it takes the housekeeping interrupts); the main lcore
# (flusher: encoding, Kafka) on the first port's node, not isolated if there is a choice.
recommend() {
    local node=$1 count=$2 pick=() c sib
    local -A core_used=()
    local cands
    if [ "$node" -lt 0 ]; then
        cands=$(expand "$(cat /sys/devices/system/cpu/online)")
    else
        cands=$(expand "$(cat "/sys/devices/system/node/node$node/cpulist" 2>/dev/null || cat /sys/devices/system/cpu/online)")
    fi
    for pass in isolated other zero; do
        for c in $cands; do
            [ "${#pick[@]}" -lt "$count" ] || break 2
            [[ " ${pick[*]-} ${RECOMMENDED-} " == *" $c "* ]] && continue
            case $pass in
            isolated) [[ "$isol" == *" $c "* ]] && [ "$c" != 0 ] || continue ;;
            other) [[ "$isol" != *" $c "* ]] && [ "$c" != 0 ] || continue ;;
            zero) [ "$c" = 0 ] || continue ;;
            esac
            sib=$(cut -d, -f1 <"/sys/devices/system/cpu/cpu$c/topology/thread_siblings_list" 2>/dev/null | cut -d- -f1)
            [ -n "${core_used[${sib:-$c}]:-}" ] && [ "$pass" != zero ] && continue
            core_used[${sib:-$c}]=1
            pick+=("$c")
        done
    done
    echo "${pick[*]-}"
}
RECOMMENDED=""
rec_lines=()
total_q=0
for i in "${!NM_PORT_NAMES[@]}"; do
    total_q=$((total_q + NM_PORT_RXQ[i]))
done
first_node=-1
for i in "${!NM_PORT_NAMES[@]}"; do
    pci=${NM_PORT_PCI[$i]}
    pn=-1
    [ "$pci" != "-" ] && pn=$(cat "/sys/bus/pci/devices/$pci/numa_node" 2>/dev/null || echo -1)
    [ "$i" = 0 ] && first_node=$pn
    got=$(recommend "$pn" "${NM_PORT_RXQ[$i]}")
    RECOMMENDED="$RECOMMENDED $got "
    rec_lines+=("[port.${NM_PORT_NAMES[$i]}] lcores = $(tr ' ' ',' <<<"$got")")
done
main=""
for c in $(expand "$(cat /sys/devices/system/cpu/online)"); do
    [[ "$RECOMMENDED" == *" $c "* ]] && continue
    [ "$first_node" -ge 0 ] && [ "$(node_of_cpu "$c")" != "$first_node" ] && continue
    main=$c
    break
done
rx_cpus=$(tr -s ' ' '\n' <<<"$RECOMMENDED" | sed '/^$/d' | sort -n | uniq | tr '\n' ',' | sed 's/,$//')
n_rx=$(tr -s ' ' '\n' <<<"$RECOMMENDED" | sed '/^$/d' | sort -u | wc -l)
if [ -z "$main" ] || [ "$n_rx" -lt "$total_q" ]; then
    warn "lcores: this host has too few CPUs for one main lcore and one RX lcore per queue ($total_q queues); queues will share lcores"
fi
if [ -n "$main" ] && [ -n "$rx_cpus" ]; then
    info "recommended lcores: [eal] args = -l $main,$rx_cpus (main lcore $main runs the flusher)"
    for l in "${rec_lines[@]}"; do
        info "recommended lcores: $l"
    done
fi

# ---------------------------------------------------------------------------------------------
# Memory and the stop timeout

avail_mib=$(($(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1024))
info "memory: ordinary RAM for the config about ${NM_RAM_MIB} MiB (${NM_N_WORKERS} RX lcore(s) x 4 aggregation tables x ${NM_TABLE_MIB} MiB, Kafka batches and queue); MemAvailable ${avail_mib} MiB"
[ "$NM_RAM_MIB" -le "$avail_mib" ] ||
    warn "memory: the config may need more RAM than is available: lower [aggregation] max_flows or [kafka] queue_max_bytes"
if [ -n "$stop_timeout" ]; then
    need_s=$(((NM_DRAIN_MS + 999) / 1000 + DRAIN_MARGIN_S))
    if [ "$need_s" -gt "$stop_timeout" ]; then
        err "[kafka] drain_timeout_ms = $NM_DRAIN_MS needs a stop timeout of at least ${need_s} s (drain + ${DRAIN_MARGIN_S} s to flush and spool), the unit gives ${stop_timeout} s: systemd would kill the engine mid-drain. Run \"systemctl edit netmeta\" and set [Service] TimeoutStopSec=${need_s}"
    else
        info "stop timeout ${stop_timeout} s >= drain ${NM_DRAIN_MS} ms + ${DRAIN_MARGIN_S} s: ok"
    fi
fi

# ---------------------------------------------------------------------------------------------
if [ "$changes" -eq 0 ]; then
    info "nothing to change: the host is set up as the config asks"
else
    if [ "$dry" = 1 ]; then
        info "$changes action(s) would run; to undo them afterwards:"
    else
        info "$changes change(s) made; to undo them:"
    fi
    for u in "${undo[@]}"; do
        echo "    $u"
    done
fi
if [ "$errors" -gt 0 ]; then
    info "$errors problem(s): the host is not ready for this config"
    exit 1
fi
exit 0
