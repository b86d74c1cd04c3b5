#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Two appliances -> a Kafka cluster -> two ClickHouse 18.16 shards -> one Distributed table.

Set-up (cluster.py): two clickhouse-server 18.16 on loopback, each with its own ports and data
directory and the same config.d file (scripts/clickhouse-cluster.sh config netmeta S1 S2: cluster
"netmeta", one shard per server, no ZooKeeper); nm_mock_broker -n 3 -p 6; the schema applied by
`scripts/clickhouse.sh cluster apply` (per host): on each server flows_raw_local (MergeTree,
since no coordination service runs), flows_queue (Kafka, JSONEachRow, the same consumer group
on both, so the topic's six partitions are shared between the shards), flows_raw_view and
flows_raw = Distributed(netmeta, default, flows_raw_local). Then two engines ("appliances"), each
with its own exporters, config and spool, send different corpus captures (NetFlow v5 on one,
NetFlow v9/IPFIX on the other) ROUNDS times over SEND_S seconds, kafka.format = json.

Asserted, exactly: each engine decoded TRUTH x ROUNDS and lost nothing; the Distributed table's
count(), sum(Packets), sum(Bytes) equal the engines' rows and the captures' TRUTH sums; each
shard's flows_raw_local holds a share (more than 0, less than all) and the shares add up to the
whole (no row on both shards); the Distributed table's rows equal the topic's row by row (multiset
of the row key, kcat per partition); README's "top talkers" query on the Distributed table equals
the same sums over the topic's rows. Bounded: about 2 minutes.
"""
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import kafkaoutage as ko  # noqa: E402
import nmtest  # noqa: E402

BROKERS, PARTITIONS = 3, 6
SEND_S, ROUNDS = 20.0, 4
GROUP = "nmtest-cluster"
WAIT_S, SETTLE_S = 120, 15
ROW_COLS = ["TimeReceived", "SamplerAddress", "SrcAddr", "DstAddr", "NextHop", "SrcPort",
            "DstPort", "Proto", "SamplingRate", "InIf", "OutIf", "Packets", "Bytes"]
TOP_TALKERS = """SELECT
    IPv6NumToString(SrcAddr) AS source,
    sum(Bytes * SamplingRate) AS bytes,
    sum(Packets * SamplingRate) AS packets
FROM flows_raw
GROUP BY SrcAddr
ORDER BY bytes DESC, source
LIMIT 10"""


def main():
    ko.require()
    c1, c2 = cluster.require_cases()
    tmp = ko.tmpdir()
    sets = ["kafka.format=json", "kafka.compression=lz4", "kafka.exporter_groups=16",
            "kafka.linger_ms=100"]
    problems, apps, servers, broker = [], [], [], None
    try:
        servers = [cluster.Server("shard1"), cluster.Server("shard2")]
        xml = cluster.cluster_config("netmeta", [[servers[0]], [servers[1]]])
        cluster.start_servers(servers, lambda s: xml)
        broker = cluster.ClusterBroker(BROKERS, PARTITIONS)
        nmtest.log("mock cluster %s" % broker.bootstrap)
        cluster.cluster_apply(servers[0], "netmeta", "json", broker.bootstrap, GROUP)
        nmtest.log(servers[0].query("SELECT cluster, shard_num, replica_num, host_name, port "
                                    "FROM system.clusters WHERE cluster = 'netmeta'"))
        members = servers
        cluster.wait_group(members, PARTITIONS)
        t_produce = time.time()
        cluster.start_appliances(apps, (c1, c2), broker.bootstrap, tmp, sets=sets)
        cluster.send_all(apps, ROUNDS, SEND_S)
        p, rows = cluster.stop_and_check(apps, ROUNDS)
        problems += p
        want = cluster.truth_totals(apps, rows, ROUNDS)
        by_part = cluster.topic_by_partition(broker.bootstrap, PARTITIONS, fmt="json")
        p, where, per_part = cluster.check_topic(by_part, "json", *want)
        problems += p
        nmtest.log("topic rows per partition %r" % per_part)

        t = time.time()
        got = cluster.wait_totals(servers[0], "flows_raw", want, WAIT_S)
        nmtest.log("Distributed flows_raw after %.1f s: %r, expected %r" % (time.time() - t, got,
                                                                          want))
        time.sleep(SETTLE_S)  # late duplicates would show now
        got = servers[0].count("flows_raw")
        shares = [s.count("flows_raw_local") for s in servers]
        nmtest.log("after %d s more: Distributed %r; flows_raw_local per shard %r" % (
            SETTLE_S, got, shares))
        if got != want:
            problems.append("Distributed flows_raw: count/packets/bytes %r, expected %r" % (got,
                                                                                           want))
        if tuple(sum(x) for x in zip(*shares)) != got:
            problems.append("shards %r do not add up to the Distributed table %r" % (shares, got))
        for s, share in zip(servers, shares):
            if not 0 < share[0] < want[0]:
                problems.append("%s holds %d of %d rows: not a share" % (s.name, share[0],
                                                                         want[0]))
        # the other shard's view of the same Distributed table
        if servers[1].count("flows_raw") != got:
            problems.append("shard2's flows_raw %r differs from shard1's %r" % (
                servers[1].count("flows_raw"), got))
        topic_rows = [r for msgs in by_part.values() for _, rs in msgs for r in rs]
        topic = collections.Counter(nmtest.row_key(r, ROW_COLS) for r in topic_rows)
        table = servers[0].row_counter(ROW_COLS)
        if table != topic:
            problems.append("Distributed rows differ from the topic's: %d missing, %d extra" % (
                sum((topic - table).values()), sum((table - topic).values())))
        talk = collections.defaultdict(lambda: [0, 0])
        for r in topic_rows:
            talk[r["SrcAddr"]][0] += int(r["Bytes"]) * int(r["SamplingRate"])
            talk[r["SrcAddr"]][1] += int(r["Packets"]) * int(r["SamplingRate"])
        expect = sorted(([a, str(v[0]), str(v[1])] for a, v in talk.items()),
                        key=lambda x: (-int(x[1]), x[0]))[:10]
        top = servers[0].query(TOP_TALKERS)
        nmtest.log("top talkers on the Distributed table: %r" % top[:3])
        if top != expect:
            problems.append("top talkers %r, from the topic %r" % (top, expect))
        moved = cluster.rebalances_since(members, t_produce)
        nmtest.log("consumer group rebalances since the engines started: %d" % len(moved))
        if moved:
            problems.append("the consumer group rebalanced while rows flowed (18.16 then inserts "
                            "a lost partition's rows twice): %r" % moved)
        if problems:
            for s in servers:
                nmtest.log("--- %s error log ---\n%s" % (s.name, s.log_tail(20)))
    finally:
        cluster.teardown(tmp, problems, apps, broker, servers)
    return ko.report(problems, "two appliances, 3 brokers, 2 shards: the Distributed table holds "
                     "the TRUTH exactly, each shard a share, none twice")


if __name__ == "__main__":
    sys.exit(main())
