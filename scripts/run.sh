#!/usr/bin/env bash
# Run the engine on its defaults (netmeta.ini): a net_tap port "nm0" (kernel side 169.254.20.1/24,
# the engine answers as 169.254.20.2) collecting NetFlow/IPFIX/sFlow on UDP 2055, 2056, 4739, 6343,
# the embedded Kafka broker (address printed at start), statistics every second. Ctrl-C stops it
# cleanly: tables are flushed and Kafka acknowledges everything before it exits.
# Extra arguments go to the engine, e.g.: scripts/run.sh --set kafka.brokers=10.1.1.1:9092
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/dpdk_app/netmeta -c netmeta.ini "$@"
