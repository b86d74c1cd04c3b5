#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Broker outage in the middle of a live run: nothing lost, nothing twice.

The engine captures a veth (net_pcap rx_iface_in=...) whose peer is in a network namespace of the
test's own and collects on a UDP port of its own; the test sends the corpus's valid NetFlow v5
captures 16 times over 46 s from that namespace, each capture from its own address (8 exporters),
while the engine produces to a mock broker with 4 partitions and a 1 GiB spool. From 8 s to 38 s
the broker is down (nm_mock_broker SIGUSR1/SIGUSR2: connections refused, data kept), and with
message.timeout.ms = 4 s the undelivered batches go to the spool and are replayed once it is up.
Then SIGTERM: the engine drains (kafka.drain_timeout_ms) and exits.
Asserted: the engine decoded exactly what was sent (TRUTH packets/bytes x 16); /netmeta/kafka said
broker down with rows spooled during the outage and broker up after it; the summary shows rows
spooled, none dropped, none lost, exit 0, the spool empty, acked == rows; the topic (kcat, all 4
partitions, independent decoder) holds exactly `rows` FlowMessages whose Packets and Bytes add up
to the truth (so no duplicate and no loss); every exporter's rows are on one partition.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage  # noqa: E402

if __name__ == "__main__":
    sys.exit(kafkaoutage.report(kafkaoutage.outage_run(tiny_spool=False),
                                "30 s outage: the topic holds exactly the truth, once"))
