"""RocksDBOptions: the rocksdb backend's settings, declared once, turned into rocksdict options."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, fields
from typing import Any, Mapping

from streamlet.state.errors import StateBackendConfigError


@dataclass(frozen=True)
class RocksDBOptions:
    """Settings of one rocksdb backend (the ``options`` of ``create_backend("rocksdb", ...)``).

    The TaskExecutor maps configuration keys to these fields (``state.backend.rocksdb.*``).
    """

    #: where the backend's database and local checkpoint directories live (removed on close)
    local_dir: str = ""
    #: write-cache bound in entries over all states; hot keys within it run at dict speed
    cache_entries: int = 100_000
    #: incremental checkpoints: upload only SST files the last completed checkpoint lacks
    incremental: bool = True
    #: memtable size per column family (MiB)
    write_buffer_mb: int = 32
    #: block cache shared by the column families (MiB)
    block_cache_mb: int = 64
    #: RocksDB background threads (flush, compaction)
    background_jobs: int = 2

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> RocksDBOptions:
        """Options from a plain mapping (unknown keys and bad values are errors naming the fix)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            msg = f"unknown rocksdb state backend option(s) {unknown!r}; allowed: {sorted(known)!r}"
            raise StateBackendConfigError(msg)
        values = dict(options)
        for name in ("cache_entries", "write_buffer_mb", "block_cache_mb", "background_jobs"):
            if name in values and (not isinstance(values[name], int) or isinstance(values[name], bool)
                                   or values[name] < 1):
                msg = f"rocksdb option {name} must be a positive integer, got {values[name]!r}"
                raise StateBackendConfigError(msg)
        if "incremental" in values and not isinstance(values["incremental"], bool):
            msg = f"rocksdb option incremental must be true or false, got {values['incremental']!r}"
            raise StateBackendConfigError(msg)
        if not values.get("local_dir"):
            values["local_dir"] = tempfile.gettempdir()
        return cls(**values)

    def to_options(self) -> Any:
        """The rocksdict ``Options`` for the database and each column family (raw bytes mode)."""
        import rocksdict

        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.set_write_buffer_size(self.write_buffer_mb * 1024 * 1024)
        opts.set_max_write_buffer_number(2)
        opts.set_max_background_jobs(self.background_jobs)
        opts.set_keep_log_file_num(2)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(self.block_cache_mb * 1024 * 1024))
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        return opts
