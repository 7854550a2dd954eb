"""RocksDB keyed state (rocksdict): write cache in front, column family per state, incremental checkpoints."""
