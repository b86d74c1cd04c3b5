#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Broker outage with a spool too small for it: the drops are counted and logged, the rest arrives.

As test_kafka_outage (live run on a veth, 8 exporters, 30 s outage in a 46 s run, 4 partitions),
with kafka.batch_bytes = 8192 and kafka.spool_max_bytes = 69632 (about 8 batches).
Asserted: rows were spooled and batches dropped; one "kafka: DROPPED a batch of N records, M bytes"
line on stderr per dropped batch, their N adding up to kafka_records_dropped; exit status 1 with
lost_records == the drops; the topic holds exactly rows - dropped FlowMessages, and its Packets and
Bytes equal the truth minus kafka_packets_dropped / kafka_flow_bytes_dropped (what the dropped
rows carried): everything not counted as dropped arrived, once.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafkaoutage  # noqa: E402

if __name__ == "__main__":
    sys.exit(kafkaoutage.report(kafkaoutage.outage_run(tiny_spool=True),
                                "full spool: drops counted and logged, everything else arrived once"))
