"""Errors of the state package (backends, snapshots, checkpoint storage)."""

from __future__ import annotations

from streamlet.errors import ConfigError, FatalError, RetryableError


class StateBackendConfigError(ConfigError):
    """An unknown backend kind or a bad backend option (names the allowed values)."""


class StateDescriptorError(FatalError):
    """A state name used twice with different kinds, or a descriptor that does not fit its use."""


class StateRestoreError(FatalError):
    """A snapshot handle cannot be restored by this backend (other backend, max parallelism, format)."""


class CheckpointStorageError(RetryableError):
    """Checkpoint storage could not read or write a blob (I/O error, unreachable store)."""


class CheckpointNotFoundError(FatalError):
    """A blob a handle references does not exist (deleted, or the wrong storage URI)."""
