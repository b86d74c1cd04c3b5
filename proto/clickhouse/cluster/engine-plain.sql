MergeTree()
