"""create_backend and the configuration keys that feed it."""

from __future__ import annotations

import pytest

from streamlet.config import load
from streamlet.keys import KeyGroupRange
from streamlet.state import create_backend
from streamlet.state.errors import StateBackendConfigError
from streamlet.state.factory import backend_options


def test_configuration_keys_reach_the_rocksdb_backend(tmp_path) -> None:
    cfg = load(overrides={"state.backend.rocksdb.localdir": str(tmp_path), "state.backend.rocksdb.write-cache.entries": "5",
                          "execution.checkpointing.incremental": "false"}, env={})
    opts = backend_options("rocksdb", cfg)
    assert opts["local_dir"] == str(tmp_path) and opts["cache_entries"] == 5 and opts["incremental"] is False
    b = create_backend("rocksdb", KeyGroupRange(0, 127), 128, options=opts)
    assert b.options.cache_entries == 5 and not b.options.incremental and str(b.root).startswith(str(tmp_path))
    assert backend_options("heap", cfg) == {}


def test_bad_backend_options_name_the_fix() -> None:
    with pytest.raises(StateBackendConfigError, match=r"unknown rocksdb state backend option\(s\) \['cache'\]; allowed"):
        create_backend("rocksdb", KeyGroupRange(0, 127), 128, options={"cache": 1})
    with pytest.raises(StateBackendConfigError, match="cache_entries must be a positive integer, got 0"):
        create_backend("rocksdb", KeyGroupRange(0, 127), 128, options={"cache_entries": 0})
    with pytest.raises(StateBackendConfigError, match="heap state backend takes no options"):
        create_backend("heap", KeyGroupRange(0, 127), 128, options={"cache_entries": 1})
