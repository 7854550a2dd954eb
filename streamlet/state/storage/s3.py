"""Checkpoint storage on S3 or any S3-compatible store (``s3://bucket/prefix``), with obstore.

Why obstore (scripts/bench_s3.py against moto, see the state report): the lowest client CPU per
megabyte of every client measured (boto3, s3fs, aiobotocore) and the highest put rate for small
objects; its Rust core releases the GIL while it waits, which matters because uploads run in a
thread beside the task's record processing.  It is an optional dependency (the ``[s3]`` extra).

Options (from configuration, see :func:`streamlet.state.storage.storage_options`): ``endpoint``
(unset = AWS), ``access_key`` / ``secret_key`` (unset = the environment's AWS credentials),
``region``, ``path_style`` (path-style requests, needed by most S3-compatible servers).  Every
request has a connect timeout and a total timeout, and is retried with backoff by obstore.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from streamlet.errors import ConfigError
from streamlet.state.errors import CheckpointNotFoundError, CheckpointStorageError
from streamlet.state.storage.filesystem import _check_relative

_OPTION_NAMES = ("endpoint", "access_key", "secret_key", "region", "path_style")
_DELETE_CHUNK = 1000  # S3's DeleteObjects limit


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix`` (prefix without surrounding slashes)."""
    rest = uri[len("s3://"):] if uri.lower().startswith("s3://") else ""
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        msg = f"checkpoint storage uri {uri!r} names no bucket; use s3://bucket/prefix"
        raise ConfigError(msg)
    return bucket, prefix.strip("/")


def _store(bucket: str, options: Mapping[str, Any]) -> Any:
    try:
        from obstore.store import S3Store
    except ImportError as exc:
        msg = "s3 checkpoint storage needs obstore; install streamlet with the [s3] extra (pip install 'streamlet[s3]')"
        raise ConfigError(msg) from exc
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        msg = f"unknown s3 storage option(s) {unknown!r}; allowed: {list(_OPTION_NAMES)!r}"
        raise ConfigError(msg)
    endpoint = options.get("endpoint")
    kwargs: dict[str, Any] = {"region": options.get("region") or "us-east-1"}
    if endpoint:
        kwargs["endpoint"] = endpoint
    if options.get("access_key"):
        kwargs["access_key_id"] = options["access_key"]
    if options.get("secret_key"):
        kwargs["secret_access_key"] = options["secret_key"]
    path_style = options.get("path_style")
    if path_style is None:
        path_style = bool(endpoint)  # S3-compatible servers (MinIO, moto, Ceph) address buckets by path
    kwargs["virtual_hosted_style_request"] = not path_style
    client = {"timeout": timedelta(seconds=120), "connect_timeout": timedelta(seconds=10)}
    if endpoint and str(endpoint).startswith("http://"):
        client["allow_http"] = True  # type: ignore[assignment]
    retry = {"max_retries": 5, "retry_timeout": timedelta(seconds=60)}
    return S3Store(bucket, client_options=client, retry_config=retry, **kwargs)


class S3CheckpointStorage:
    """A :class:`~streamlet.state.storage.base.CheckpointStorage` in an S3 bucket below a prefix.

    S3 puts are atomic (a reader sees the old object or the whole new one), so ``put_atomic`` is
    ``put``.  Large files are uploaded in parts (multipart) by ``put_file``.  Not guaranteed:
    listing consistency beyond what the store offers (AWS S3 is strongly consistent).
    """

    def __init__(self, bucket: str, prefix: str = "", options: Mapping[str, Any] | None = None,
                 store: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._options = dict(options or {})
        self._store = store if store is not None else _store(bucket, self._options)
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def __repr__(self) -> str:
        return f"S3CheckpointStorage({self.uri!r})"

    def _key(self, path: str) -> str:
        _check_relative(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def _error(self, op: str, path: str, exc: BaseException) -> CheckpointStorageError:
        msg = (f"s3 {op} of {self.uri}/{path} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
               "check s3.endpoint, the credentials and that the bucket exists")
        return CheckpointStorageError(msg)

    def _missing(self, path: str) -> CheckpointNotFoundError:
        msg = (f"checkpoint object {self.uri}/{path} does not exist; the checkpoint was deleted or the storage uri "
               "differs from the one it was written to")
        return CheckpointNotFoundError(msg)

    def scoped(self, prefix: str) -> S3CheckpointStorage:
        sub = prefix.strip("/")
        _check_relative(sub)
        return S3CheckpointStorage(self.bucket, self._key(sub), self._options, store=self._store)

    def put(self, path: str, data: bytes) -> None:
        import obstore

        key = self._key(path)
        try:
            obstore.put(self._store, key, data, use_multipart=False)
        except Exception as exc:  # noqa: BLE001 - obstore raises several exception types for I/O
            raise self._error("put", path, exc) from exc

    put_atomic = put

    def put_file(self, path: str, local_file: str) -> None:
        import obstore

        key = self._key(path)
        try:
            obstore.put(self._store, key, Path(local_file))
        except Exception as exc:  # noqa: BLE001
            raise self._error("upload", path, exc) from exc

    def get(self, path: str) -> bytes:
        import obstore

        key = self._key(path)
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError as exc:
            raise self._missing(path) from exc
        except Exception as exc:  # noqa: BLE001
            raise self._error("get", path, exc) from exc

    def get_range(self, path: str, offset: int, length: int) -> bytes:
        import obstore

        key = self._key(path)
        if length <= 0:
            return b""
        try:
            return bytes(obstore.get_range(self._store, key, start=offset, length=length))
        except FileNotFoundError as exc:
            raise self._missing(path) from exc
        except Exception as exc:  # noqa: BLE001
            if "416" in str(exc):  # the range starts at or past the end: nothing there
                return b""
            raise self._error("ranged get", path, exc) from exc

    def get_file(self, path: str, local_file: str) -> None:
        import obstore

        key = self._key(path)
        tmp = f"{local_file}.{uuid.uuid4().hex}.tmp"
        try:
            result = obstore.get(self._store, key)
            with open(tmp, "wb") as f:
                for chunk in result.stream(min_chunk_size=8 * 1024 * 1024):
                    f.write(chunk)
            os.replace(tmp, local_file)
        except FileNotFoundError as exc:
            raise self._missing(path) from exc
        except Exception as exc:  # noqa: BLE001
            raise self._error("download", path, exc) from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _head(self, path: str) -> dict[str, Any] | None:
        import obstore

        try:
            return obstore.head(self._store, self._key(path))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise self._error("head", path, exc) from exc

    def exists(self, path: str) -> bool:
        return self._head(path) is not None

    def size(self, path: str) -> int:
        meta = self._head(path)
        if meta is None:
            raise self._missing(path)
        return int(meta["size"])

    def _list_keys(self, prefix: str) -> list[str]:
        import obstore

        sub = prefix.strip("/")
        base = self._key(sub) + "/" if sub else (self.prefix + "/" if self.prefix else "")
        try:
            metas = obstore.list(self._store, prefix=base or None).collect()
        except Exception as exc:  # noqa: BLE001
            raise self._error("list", prefix or ".", exc) from exc
        return [m["path"] for m in metas]

    def list(self, prefix: str = "") -> list[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[cut:] for k in self._list_keys(prefix))

    def delete(self, path: str) -> None:
        import obstore

        try:
            obstore.delete(self._store, self._key(path))
        except FileNotFoundError:
            return
        except Exception as exc:  # noqa: BLE001
            raise self._error("delete", path, exc) from exc

    def delete_prefix(self, prefix: str) -> None:
        import obstore

        keys = self._list_keys(prefix)
        for i in range(0, len(keys), _DELETE_CHUNK):
            try:
                obstore.delete(self._store, keys[i:i + _DELETE_CHUNK])
            except Exception as exc:  # noqa: BLE001
                raise self._error("delete", prefix, exc) from exc
