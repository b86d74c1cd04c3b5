#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Two replicas of one shard (ReplicatedMergeTree on Debian's ZooKeeper); one is killed mid-run.

Set-up (cluster.py): Debian's zookeeper (standalone, loopback, a temp dir); three
clickhouse-server 18.16: shard 1 = replicas r1 and r2, shard 2 = s2, each with its own ports,
data directory, interserver port (replicas fetch parts from each other there) and a config.d
file from `scripts/clickhouse-cluster.sh config` naming the cluster and ZooKeeper. `clickhouse.sh
cluster apply` sees ZooKeeper and makes flows_raw_local a ReplicatedMergeTree (path
/clickhouse/tables/netmeta/default/flows_raw_local/shardN, replica host_port); the first replica
of each shard (r1, s2) has the Kafka table and its view, in one consumer group (the six
partitions shared by two consumers), r2 gets its rows by replication (NM_CH_CLUSTER_CONSUMERS =
first, the default: why in clickhouse-cluster.sh). Two appliances send different captures for
SEND_S seconds in two halves: between them, once r2 holds rows of shard 1 (18.16's consumer
inserts when the stream pauses; r2 fetches the part from r1), r2 gets SIGKILL (no shutdown, a
crash); the second half is sent with r2 dead.

Asserted: each engine lost nothing and decoded TRUTH x ROUNDS; the Distributed table (queried on
s2 while r2 is dead: it fails over to r1) reaches exactly the engines' rows and TRUTH sums and
keeps them SETTLE_S seconds more; its rows equal the topic's row by row (nothing lost, nothing
twice); both shards hold a share; r2 held part of shard 1 when it was killed (it was a live
replica). Then r2 is started again on its data directory and must catch up: its flows_raw_local
equals r1's. Skipped when Debian's
zookeeper (java, /usr/share/java/zookeeper.jar) is not installed. Bounded: about 3 minutes.
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
SEND_S, ROUNDS = 32.0, 4  # slower than the other tests: five servers share two cores
GROUP = "nmtest-replicas"
WAIT_S, SETTLE_S = 150, 15
ROW_COLS = ["TimeReceived", "SamplerAddress", "SrcAddr", "DstAddr", "NextHop", "SrcPort",
            "DstPort", "Proto", "SamplingRate", "InIf", "OutIf", "Packets", "Bytes"]


def main():
    ko.require()
    if not cluster.zookeeper_available():
        nmtest.skip("Debian's zookeeper is not installed (apt-get install zookeeper)")
    c1, c2 = cluster.require_cases()
    tmp = ko.tmpdir()
    sets = ["kafka.format=json", "kafka.compression=lz4", "kafka.exporter_groups=16",
            "kafka.linger_ms=100"]
    problems, apps, servers, broker, zk = [], [], [], None, None
    try:
        zk = cluster.ZooKeeper()
        nmtest.log("zookeeper on 127.0.0.1:%d (dir %s)" % (zk.port, zk.dir))
        r1, r2, s2 = (cluster.Server(n) for n in ("r1", "r2", "s2"))
        servers = [r1, r2, s2]
        shards = [[r1, r2], [s2]]
        cluster.start_servers(servers, lambda s: cluster.cluster_config(
            "netmeta", shards, zk=zk, interserver=s.interserver))
        broker = cluster.ClusterBroker(BROKERS, PARTITIONS)
        nmtest.log("mock cluster %s" % broker.bootstrap)
        cluster.cluster_apply(r1, "netmeta", "json", broker.bootstrap, GROUP)
        tables = {s.name: s.query("SELECT name, engine FROM system.tables WHERE database = "
                                  "currentDatabase() ORDER BY name") for s in servers}
        nmtest.log("tables %r" % tables)
        local = {n: dict(map(tuple, t)).get("flows_raw_local") for n, t in tables.items()}
        consumers = sorted(n for n, t in tables.items() if ["flows_queue", "Kafka"] in t)
        if set(local.values()) != {"ReplicatedMergeTree"} or consumers != ["r1", "s2"]:
            problems.append("apply with ZooKeeper: flows_raw_local %r, Kafka tables on %r; "
                            "expected ReplicatedMergeTree everywhere, Kafka on r1 and s2"
                            % (local, consumers))
        members = [r1, s2]
        cluster.wait_group(members, PARTITIONS)
        t_produce = time.time()
        cluster.start_appliances(apps, (c1, c2), broker.bootstrap, tmp, sets=sets)
        killed = {}

        def kill():
            killed["before"] = [s.count("flows_raw_local") for s in servers]
            r2.kill9()
            killed["at"] = time.time()
            nmtest.log("%.1f: r2 killed (SIGKILL); flows_raw_local r1/r2/s2 before: %r" % (
                time.time(), killed["before"]))
        cluster.send_all(apps, ROUNDS // 2, SEND_S / 2)
        t = time.time()
        while time.time() - t < 60 and r2.count("flows_raw_local")[0] == 0:
            time.sleep(0.5)
        kill()
        if killed["before"][1][0] == 0:
            problems.append("r2 held no row when it was killed: %r" % killed["before"])
        cluster.send_all(apps, ROUNDS - ROUNDS // 2, SEND_S / 2)
        p, rows = cluster.stop_and_check(apps, ROUNDS)
        problems += p
        want = cluster.truth_totals(apps, rows, ROUNDS)
        by_part = cluster.topic_by_partition(broker.bootstrap, PARTITIONS, fmt="json")
        p, where, per_part = cluster.check_topic(by_part, "json", *want)
        problems += p

        got = cluster.wait_totals(s2, "flows_raw", want, WAIT_S)
        nmtest.log("Distributed flows_raw (on s2, r2 dead) %.1f s after the kill: %r, expected %r"
                   % (time.time() - killed.get("at", time.time()), got, want))
        time.sleep(SETTLE_S)
        got = s2.count("flows_raw")
        shares = [r1.count("flows_raw_local"), s2.count("flows_raw_local")]
        nmtest.log("after %d s more: Distributed %r; shard 1 (r1) %r, shard 2 %r" % (
            SETTLE_S, got, shares[0], shares[1]))
        if got != want:
            problems.append("Distributed flows_raw with r2 dead: %r, expected %r" % (got, want))
        if tuple(sum(x) for x in zip(*shares)) != got:
            problems.append("shards %r do not add up to %r" % (shares, got))
        if not all(0 < sh[0] < want[0] for sh in shares):
            problems.append("not a share on each shard: %r of %d rows" % (shares, want[0]))
        topic = collections.Counter(nmtest.row_key(r, ROW_COLS)
                                    for msgs in by_part.values() for _, rs in msgs for r in rs)
        table = s2.row_counter(ROW_COLS)
        if table != topic:
            problems.append("Distributed rows differ from the topic's: %d missing, %d twice" % (
                sum((topic - table).values()), sum((table - topic).values())))

        moved = cluster.rebalances_since(members, t_produce)
        nmtest.log("consumer group rebalances since the engines started: %d" % len(moved))
        if moved:
            problems.append("the consumer group rebalanced while rows flowed (18.16 then inserts "
                            "a lost partition's rows twice): %r" % moved)

        # r2 back on its data directory: replication brings it level with r1
        r2.start()
        t = time.time()
        back = cluster.wait_totals(r2, "flows_raw_local", shares[0], 90)
        nmtest.log("r2 restarted: flows_raw_local %r after %.1f s (r1 %r)" % (
            back, time.time() - t, shares[0]))
        if back != shares[0]:
            problems.append("r2 after its restart holds %r, r1 %r" % (back, shares[0]))
        if problems:
            for s in servers:
                nmtest.log("--- %s error log ---\n%s" % (s.name, s.log_tail(15)))
    finally:
        cluster.teardown(tmp, problems, apps, broker, servers, zk)
    return ko.report(problems, "shard 1 on two replicas, r2 killed mid-run: the Distributed table "
                     "holds the TRUTH exactly, nothing twice; r2 catches up after its restart")


if __name__ == "__main__":
    sys.exit(main())
