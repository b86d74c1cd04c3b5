-- SPDX-License-Identifier: BSD-3-Clause
-- The table the README's queries and the dashboards read on a cluster: flows_raw, a Distributed
-- table over every shard's flows_raw_local. It has the columns of flows_raw_local (AS), so the
-- queries written for one server run unchanged. A query goes to one replica of each shard
-- (load_balancing picks which) and the shards' partial results are merged here: every row is
-- counted once however many replicas hold it.
--
-- Rows reach the shards through each shard's own Kafka table (flows_queue, one consumer group for
-- the whole cluster), never through this table; rand() only decides where an INSERT INTO flows_raw
-- would go (a back-fill by hand, say).
-- {{CLUSTER}}: a <remote_servers> entry of every server; {{DATABASE}}: where flows_raw_local is.
CREATE TABLE IF NOT EXISTS flows_raw AS flows_raw_local
ENGINE = Distributed('{{CLUSTER}}', '{{DATABASE}}', 'flows_raw_local', rand());
