#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Two appliances into a Kafka cluster of three brokers; one broker goes down mid-run.

Set-up (cluster.py): nm_mock_broker -n 3 -p 6 (topic flow-messages, 6 partitions, replicas on
all three brokers, partition p led by broker p mod 3 + 1). Two engines, each an "appliance" with
its own config, spool, DPDK file prefix and network namespace: appliance 1's exporters send the
corpus's valid NetFlow v5 captures, appliance 2's the generated NetFlow v9/IPFIX captures, one
exporter address per capture (10.254.1.x, 10.254.2.x), ROUNDS times over SEND_S seconds, both at
once. Both produce protobuf into the same topic with kafka.exporter_groups = 16 (the key of a
message is its exporter group, so an exporter's rows go to one partition). At DOWN_AT broker 2
goes down (nm_mock_broker "down 2": its connections are closed and refused, the partitions it led
get broker 3 as leader; the data stays, as on the other replicas of a real cluster); at UP_AT it
is back and leads its partitions again. Then SIGTERM, each engine drains and exits.

Asserted, exactly: each engine decoded its captures' TRUTH packets/bytes x ROUNDS, exit 0, no
record lost or dropped, the spool empty, every row acknowledged; the topic, read per partition
with kcat's partition/offset/size header, holds exactly the two engines' rows with the TRUTH
sums (nothing lost, nothing twice); every exporter's rows are in one partition and, along the
offsets, their seconds never go back (in order); the exporters use more than
one partition, and broker 2 led partitions when it went down (so the outage hit live traffic).
Bounded: about 60 s.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
import kafkaoutage as ko  # noqa: E402
import nmtest  # noqa: E402

BROKERS, PARTITIONS = 3, 6
SEND_S, ROUNDS = 30.0, 8
DOWN_AT, UP_AT, VICTIM = 8.0, 20.0, 2


def main():
    ko.require()
    c1, c2 = cluster.require_cases()
    tmp = ko.tmpdir()
    sets = ["kafka.exporter_groups=16", "kafka.linger_ms=100",
            "kafka.property.reconnect.backoff.max.ms=1000"]
    problems, apps, broker = [], [], None
    try:
        broker = cluster.ClusterBroker(BROKERS, PARTITIONS)
        before = broker.leaders()
        nmtest.log("mock cluster %s, leaders %r" % (broker.bootstrap, before))
        cluster.start_appliances(apps, (c1, c2), broker.bootstrap, tmp, sets=sets)
        for a in apps:
            nmtest.log("appliance %d: %d captures (%s), exporters %s, engine on %s port %d" % (
                a.k, len(a.captures), ",".join(sorted({t["protocols"] for t in a.captures})),
                " ".join(a.exporters()), a.b, a.port))
        moved = {}

        def down():
            moved["down"] = broker.down(VICTIM)

        def peek():
            for a in apps:
                k = a.engine.telemetry() or {}
                nmtest.log("appliance %d during the outage: broker %s, queue %s msgs, spool %s, "
                           "acked %s, last error %s" % (a.k, k.get("broker_state"),
                                                         k.get("queue_messages"),
                                                         k.get("spool_records"),
                                                         k.get("records_acked"),
                                                         k.get("last_error")))
        cluster.send_all(apps, ROUNDS, SEND_S, [(DOWN_AT, down), (UP_AT - 1, peek),
                                                (UP_AT, lambda: broker.up(VICTIM))])
        p, rows = cluster.stop_and_check(apps, ROUNDS)
        problems += p
        if VICTIM not in before.values() or "moved -" in moved.get("down", "moved -"):
            problems.append("broker %d led no partition when it went down: %r" % (VICTIM, moved))

        t = time.time()
        by_part = cluster.topic_by_partition(broker.bootstrap, PARTITIONS)
        p, where, per_part = cluster.check_topic(by_part, "protobuf",
                                                 *cluster.truth_totals(apps, rows, ROUNDS))
        problems += p
        nmtest.log("topic read in %.1f s: rows per partition %r" % (time.time() - t, per_part))
        for a in apps:
            parts = sorted({where.get(e) for e in a.exporters()}, key=str)
            nmtest.log("appliance %d: exporter -> partition %s" % (a.k, ", ".join(
                "%s:%s" % (e, where.get(e)) for e in a.exporters())))
            if None in parts:
                problems.append("appliance %d: an exporter has no row in the topic" % a.k)
        if len(set(where.values())) < 2:
            problems.append("every exporter in one partition: %r" % where)
        if problems:
            for a in apps:
                nmtest.log("--- appliance %d engine output (tail) ---\n%s" % (a.k, a.engine.tail(30)))
            nmtest.log("--- broker log ---\n" + broker.log()[-2000:])
    finally:
        cluster.teardown(tmp, problems, apps, broker)
    return ko.report(problems, "two appliances, 3 brokers, broker %d down %.0f s mid-run: "
                     "nothing lost or twice, one partition per exporter, in order"
                     % (VICTIM, UP_AT - DOWN_AT))


if __name__ == "__main__":
    sys.exit(main())
