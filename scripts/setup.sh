#!/usr/bin/env bash
# Set up a Debian 12 machine for NetMeta: packages, hugepages, build.
#   scripts/setup.sh            what the engine needs to build and run
#   scripts/setup.sh --test     plus what the test suites need (ClickHouse, kcat, tshark, exporters,
#                               and ClickHouse 26.5 as chDB from the npm registry, see below)
# Idempotent; run as root (it calls apt-get and writes /proc/sys/vm/nr_hugepages).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for a in "$@"; do
    case "$a" in
        --test) want_test=1 ;;
        *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (or with sudo: sudo $0 $*): it installs packages and reserves hugepages" >&2
    exit 1
fi

build_pkgs=(build-essential pkg-config meson ninja-build python3
    libdpdk-dev dpdk librdkafka-dev libprotobuf-c-dev protobuf-c-compiler
    liburcu-dev libiniparser-dev libpcap-dev libcmocka-dev libbpf-dev iproute2)
test_pkgs=(clang clang-format llvm systemd libclang-rt-14-dev kafkacat tshark protobuf-compiler
    clickhouse-server clickhouse-client softflowd pmacct nfdump wireshark-common
    zookeeper  # test_cluster_replicas: ReplicatedMergeTree needs a coordination service
    dpdk-dev prometheus)  # telemetry tests: dpdk-telemetry.py (in dpdk-dev), promtool

pkgs=("${build_pkgs[@]}")
[ "$want_test" = 1 ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # tshark asks whether non-root users may capture; the answer does not matter here.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ClickHouse 26.5 for the clickhouse suite: chDB, ClickHouse as a shared library, from the npm
# package @chdb/lib-linux-x64-gnu (about 530 MB unpacked) into NM_CHDB_DIR (default
# /opt/netmeta-chdb, where tests/integration/chdb.py looks). npm comes from Debian (nodejs, npm)
# when the machine has none. Skipped when a 26.5 libchdb.so is there already.
if [ "$want_test" = 1 ]; then
    chdb_dir=${NM_CHDB_DIR:-/opt/netmeta-chdb}
    chdb_pkg="$chdb_dir/node_modules/@chdb/lib-linux-x64-gnu"
    if [ -f "$chdb_pkg/libchdb.so" ] && grep -q '"version": "26\.5\.' "$chdb_pkg/package.json"; then
        echo "setup.sh: chDB $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$chdb_pkg/package.json") in $chdb_dir"
    else
        if ! command -v npm > /dev/null; then
            echo "setup.sh: installing nodejs npm (for chDB)"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q
            apt-get install -y -q --no-install-recommends nodejs npm
        fi
        mkdir -p "$chdb_dir"
        echo "setup.sh: npm install @chdb/lib-linux-x64-gnu@26.5 into $chdb_dir"
        npm install --prefix "$chdb_dir" --no-audit --no-fund --no-save "@chdb/lib-linux-x64-gnu@26.5"
        [ -f "$chdb_pkg/libchdb.so" ] || { echo "setup.sh: no libchdb.so in $chdb_pkg" >&2; exit 1; }
    fi
fi

# 2 MiB hugepages: 1 GiB unless more are already reserved. Without them the engine falls back
# to --no-huge (and says so), which works but is slow.
want_hp=${NM_HUGEPAGES:-512}
if [ -w /proc/sys/vm/nr_hugepages ]; then
    cur=$(cat /proc/sys/vm/nr_hugepages)
    if [ "$cur" -lt "$want_hp" ]; then
        echo "$want_hp" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
    fi
    if ! grep -q hugetlbfs /proc/mounts; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
    fi
fi
free_hp=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
if [ "${free_hp:-0}" -eq 0 ] || ! grep -q hugetlbfs /proc/mounts; then
    echo "setup.sh: WARNING: no usable hugepages; the engine will run with --no-huge" >&2
else
    echo "setup.sh: $free_hp free 2 MiB hugepages"
fi

if [ ! -f build/build.ninja ]; then
    meson setup build
fi
ninja -C build
