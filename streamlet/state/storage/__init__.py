"""Checkpoint storage: the protocol (:mod:`.base`) and :func:`open_storage` for a URI."""

from __future__ import annotations

from typing import Any, Mapping

from streamlet.errors import ConfigError
from streamlet.state.storage.base import CheckpointStorage


def open_storage(uri: str, options: Mapping[str, Any] | None = None) -> CheckpointStorage:
    """The checkpoint storage rooted at ``uri``.

    Who calls it: the JobMaster (metadata, cleanup) and each task (snapshots), with the value of
    ``execution.checkpointing.dir``.  ``uri`` is ``file:///dir`` or a plain path (local or shared
    file system), or ``s3://bucket/prefix`` (S3 or an S3-compatible store; needs the ``[s3]``
    extra).  ``options`` are the store's options (:func:`storage_options` builds them from the
    configuration; empty for files).  Creates nothing until the first write.  Example::

        storage = open_storage("file:///tmp/chk").scoped(job_id)
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    if scheme == "s3":
        from streamlet.state.storage.s3 import S3CheckpointStorage, parse_s3_uri

        bucket, prefix = parse_s3_uri(uri)
        return S3CheckpointStorage(bucket, prefix, options)
    if options:
        msg = f"file checkpoint storage takes no options, got {sorted(options)!r}; s3 options apply to s3:// uris only"
        raise ConfigError(msg)
    if scheme == "file":
        from streamlet.state.storage.filesystem import FileSystemCheckpointStorage, path_from_uri

        return FileSystemCheckpointStorage(path_from_uri(uri))
    msg = f"checkpoint storage uri {uri!r} has an unknown scheme {scheme!r}; use file:///path, a plain path or s3://bucket/prefix"
    raise ConfigError(msg)


#: configuration key -> s3 storage option (declared in streamlet/config.py)
_S3_KEYS = {"s3.endpoint": "endpoint", "s3.access-key": "access_key", "s3.secret-key": "secret_key",
            "s3.region": "region", "s3.path.style.access": "path_style"}


def storage_options(uri: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``options`` of :func:`open_storage` for ``uri`` from the effective configuration.

    Who calls it: the JobMaster and the TaskExecutor, beside ``open_storage``.  Unset keys are
    left out (the store's defaults apply: AWS endpoint, the environment's credentials).
    """
    if not uri.lower().startswith("s3://"):
        return {}
    return {opt: config[key] for key, opt in _S3_KEYS.items() if config.get(key) is not None}


__all__ = ["CheckpointStorage", "open_storage", "storage_options"]
