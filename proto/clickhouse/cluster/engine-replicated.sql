ReplicatedMergeTree('{{ZK_PATH}}/{{DATABASE}}/flows_raw_local/shard{{SHARD}}', '{{REPLICA}}')
