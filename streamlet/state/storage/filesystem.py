"""Checkpoint storage on a local or shared file system (``file:///dir`` or a plain path)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from streamlet.state.errors import CheckpointNotFoundError, CheckpointStorageError


def _check_relative(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        msg = f"checkpoint storage path {path!r} is not a relative path of plain names; use e.g. 'chk-3/state'"
        raise ValueError(msg)
    return path


def path_from_uri(uri: str) -> Path:
    """The directory a ``file:`` URI or plain path names (``file:///a/b`` -> ``/a/b``)."""
    if uri.startswith("file:"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            msg = f"checkpoint storage uri {uri!r} names host {parsed.netloc!r}; use file:///absolute/path"
            raise ValueError(msg)
        return Path(unquote(parsed.path))
    return Path(uri)


class FileSystemCheckpointStorage:
    """A :class:`~streamlet.state.storage.base.CheckpointStorage` in a directory.

    Every ``put`` writes a temporary file beside the target and renames it, so readers never see
    a partial blob (``put_atomic`` is the same operation).  Safe for several threads and
    processes writing different paths; for a shared file system (NFS) rename atomicity is the
    file system's.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"FileSystemCheckpointStorage({str(self.root)!r})"

    def _path(self, path: str) -> Path:
        return self.root / _check_relative(path)

    def scoped(self, prefix: str) -> FileSystemCheckpointStorage:
        return FileSystemCheckpointStorage(self._path(prefix.strip("/")))

    def _write(self, target: Path, write: object) -> None:
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)  # type: ignore[operator]
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            msg = f"cannot write checkpoint file {str(target)!r}: {exc}; check the directory's space and permissions"
            raise CheckpointStorageError(msg) from exc

    def put(self, path: str, data: bytes) -> None:
        self._write(self._path(path), lambda tmp: tmp.write_bytes(data))

    put_atomic = put

    def put_file(self, path: str, local_file: str) -> None:
        self._write(self._path(path), lambda tmp: shutil.copyfile(local_file, tmp))

    def _missing(self, path: str, exc: OSError) -> CheckpointNotFoundError:
        msg = (f"checkpoint file {str(self.root / path)!r} does not exist; the checkpoint was deleted "
               "or the storage uri differs from the one it was written to")
        return CheckpointNotFoundError(msg)

    def _read_error(self, path: str, exc: OSError) -> CheckpointStorageError:
        msg = f"cannot read checkpoint file {str(self.root / path)!r}: {exc}"
        return CheckpointStorageError(msg)

    def get(self, path: str) -> bytes:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError as exc:
            raise self._missing(path, exc) from exc
        except OSError as exc:
            raise self._read_error(path, exc) from exc

    def get_range(self, path: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(path), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError as exc:
            raise self._missing(path, exc) from exc
        except OSError as exc:
            raise self._read_error(path, exc) from exc

    def get_file(self, path: str, local_file: str) -> None:
        try:
            shutil.copyfile(self._path(path), local_file)
        except FileNotFoundError as exc:
            if not self._path(path).exists():
                raise self._missing(path, exc) from exc
            raise self._read_error(path, exc) from exc
        except OSError as exc:
            raise self._read_error(path, exc) from exc

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def size(self, path: str) -> int:
        try:
            return self._path(path).stat().st_size
        except FileNotFoundError as exc:
            raise self._missing(path, exc) from exc

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix.strip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        out = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if name.endswith(".tmp") and name.startswith("."):
                    continue  # a put in progress
                out.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(out)

    def delete(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix.strip("/")), ignore_errors=True)
