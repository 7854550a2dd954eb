"""CheckpointCoordinator: triggers, collects and completes the checkpoints of one job (Flink's
CheckpointCoordinator), owned by its JobMaster.

Checkpoint ``n``:

1. trigger (periodically every ``interval``, at least ``min_pause`` after the previous one ended,
   one at a time; or on request: ``POST /jobs/:id/checkpoints``, savepoints): the coordinator
   notes every subtask that has not finished as one it waits for, and sends ``TriggerCheckpoint``
   to every TaskManager running the job; source subtasks inject barrier ``n``;
2. each subtask acknowledges with its state handles once its snapshot is persisted (or declines);
   a subtask that finishes before it acknowledged is no longer waited for;
3. all acknowledged: ``_metadata`` is written atomically (off the loop), the checkpoint is
   complete, every TaskManager is told (``NotifyCheckpointComplete``: sinks commit), and completed
   checkpoints beyond ``retained`` are subsumed: their directories are deleted, and shared files
   no retained checkpoint references any more (reference counting of incremental state);
4. a decline, a timeout, or a failed metadata write aborts ``n``: it is counted, its directory is
   deleted, the job goes on.  Nothing of a completed checkpoint is deleted on an abort.

Statistics for ``GET /jobs/:id/checkpoints`` (Flink's shape) are kept here (:meth:`stats`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from streamlet.clock import Clock
from streamlet.graph.settings import CheckpointSettings
from streamlet.metrics.registry import perf
from streamlet.rpc.messages import AcknowledgeCheckpoint, DeclineCheckpoint
from streamlet.runtime.jobmanager.checkpoint.metadata import FORMAT, CompletedCheckpoint, encode, shared_files
from streamlet.state.storage import open_storage
from streamlet.state.storage.base import METADATA_FILE, SHARED_DIR, checkpoint_dir

logger = logging.getLogger(__name__)

#: checkpoints kept in the statistics' history
HISTORY = 10
#: completed checkpoints the summary's percentiles are computed over
SUMMARY_WINDOW = 1000


class CheckpointAbortedError(Exception):
    """A checkpoint or savepoint did not complete (the message says why)."""


@dataclass
class _Pending:
    checkpoint_id: int
    timestamp: int
    started: float
    savepoint: bool
    #: where the state goes: the storage URI the handles are relative to, and the exclusive dir
    storage_uri: str
    directory: str
    #: URI of the directory that gets ``_metadata``
    location: str
    waiting: dict[tuple[str, int], str]
    acks: dict[tuple[str, int], AcknowledgeCheckpoint] = field(default_factory=dict)
    future: asyncio.Future[CompletedCheckpoint] | None = None
    timeout: asyncio.Task[None] | None = None


@dataclass
class JobView:
    """What the coordinator needs of its JobMaster (plain callables, so tests can drive it)."""

    job_id: str
    job_name: str
    max_parallelism: int
    #: (vertex id, subtask index) -> attempt id of every subtask that has not finished
    running_subtasks: Callable[[], dict[tuple[str, int], str]]
    #: vertex id -> (name, parallelism, operator ids)
    vertices: Callable[[], dict[str, tuple[str, int, list[str]]]]
    #: True while checkpoints may be triggered (the job is RUNNING with every subtask deployed)
    can_checkpoint: Callable[[], bool]
    #: send TriggerCheckpoint / NotifyCheckpointComplete to every TaskManager of the job
    send_trigger: Callable[[int, int, str, str, bool, bool], Awaitable[None]]
    send_complete: Callable[[int], Awaitable[None]]
    #: called with every completed checkpoint (not savepoint) before the TaskManagers are told:
    #: the JobManager's recovery metadata points at it
    on_completed: Callable[[CompletedCheckpoint], Awaitable[None]] | None = None


class CheckpointCoordinator:
    """See the module docstring.  :meth:`run` is the periodic trigger loop (a task of the JobMaster)."""

    def __init__(self, settings: CheckpointSettings, view: JobView, clock: Clock,
                 storage_options: Callable[[str], dict[str, Any]] = lambda uri: {}) -> None:
        self.settings = settings
        self.view = view
        self.clock = clock
        self.storage_options = storage_options
        #: the job-scoped checkpoint storage URI (``<dir>/<job id>``)
        self.storage_uri = f"{settings.dir.rstrip('/')}/{view.job_id}"
        self._storage: Any = None
        self.next_id = 1
        self.pending: _Pending | None = None
        self.completed: list[CompletedCheckpoint] = []
        #: the checkpoint the job was restored from (kept out of subsumption when external)
        self.restored: CompletedCheckpoint | None = None
        self.restored_at: int | None = None
        self.counts = {"restored": 0, "total": 0, "in_progress": 0, "completed": 0, "failed": 0}
        self.history: list[dict[str, Any]] = []
        #: (duration ms, state size, checkpointed size, alignment ms) of the latest completed ones
        self._summary: deque[tuple[int, int, int, int]] = deque(maxlen=SUMMARY_WINDOW)
        self.latest_failed: dict[str, Any] | None = None
        self.latest_savepoint: dict[str, Any] | None = None
        self._last_end = -float("inf")
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cleanups: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- storage ------------------------------------------------------------------------------

    def storage(self) -> Any:
        if self._storage is None:
            self._storage = open_storage(self.storage_uri, self.storage_options(self.storage_uri))
        return self._storage

    def check_storage(self) -> None:
        """Write and delete a probe file (blocking): a location that cannot be written fails the job
        at its start, not at the first checkpoint."""
        probe = f"_probe-{secrets.token_hex(4)}"
        storage = self.storage()
        storage.put(probe, b"")
        storage.delete(probe)

    # -- triggering -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Trigger periodic checkpoints until cancelled (only when checkpointing is enabled)."""
        s = self.settings
        if not s.enabled:
            return
        next_due = self.clock.monotonic() + s.interval
        while True:
            now = self.clock.monotonic()
            due = max(next_due, self._last_end + s.min_pause)
            if now < due:
                await self.clock.sleep(due - now)
                continue
            if self.pending is not None:
                self._wake.clear()
                await self._wake.wait()  # one checkpoint at a time: wait for it to end
                continue
            next_due = self.clock.monotonic() + s.interval
            if self.view.can_checkpoint():
                fut = self.trigger()
                fut.add_done_callback(_consume)

    def trigger(self, savepoint: bool = False, target: str | None = None,
                drain: bool = False) -> asyncio.Future[CompletedCheckpoint]:
        """Start a checkpoint (or savepoint into ``target``, a directory URI); the future completes
        with it or fails with :class:`CheckpointAbortedError`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[CompletedCheckpoint] = loop.create_future()
        if self.pending is not None:
            fut.set_exception(CheckpointAbortedError(
                f"checkpoint {self.pending.checkpoint_id} is still in progress; try again when it ends"))
            return fut
        if not self.view.can_checkpoint():
            fut.set_exception(CheckpointAbortedError("the job is not running with all of its subtasks"))
            return fut
        waiting = self.view.running_subtasks()
        if not waiting:
            fut.set_exception(CheckpointAbortedError("every subtask of the job has finished"))
            return fut
        n = self.next_id
        self.next_id += 1
        if savepoint:
            assert target is not None
            location = f"{target.rstrip('/')}/savepoint-{self.view.job_id[:6]}-{secrets.token_hex(6)}"
            storage_uri, directory = location, "state"
        else:
            storage_uri, directory = self.storage_uri, checkpoint_dir(n)
            location = f"{self.storage_uri}/{directory}"
        p = _Pending(n, self.clock.time_ms(), perf(), savepoint, storage_uri, directory, location, dict(waiting),
                     future=fut)
        self.pending = p
        self.counts["total"] += 1
        self.counts["in_progress"] += 1
        p.timeout = self._spawn(self._expire(n))
        self._spawn(self.view.send_trigger(n, p.timestamp, storage_uri, directory, savepoint, drain))
        logger.info("job %s: triggered %s %d", self.view.job_id, "savepoint" if savepoint else "checkpoint", n)
        return fut

    async def _expire(self, n: int) -> None:
        await self.clock.sleep(self.settings.timeout)
        if self.pending is not None and self.pending.checkpoint_id == n:
            self.abort(f"checkpoint {n} expired before completing (timeout {self.settings.timeout:g}s, "
                       "execution.checkpointing.timeout)")

    # -- acknowledgements -----------------------------------------------------------------------

    def on_report(self, msg: AcknowledgeCheckpoint | DeclineCheckpoint) -> None:
        p = self.pending
        key = (msg.vertex_id, msg.subtask_index)
        if self._closed:
            return
        if p is None or msg.checkpoint_id != p.checkpoint_id:
            # late report of an aborted checkpoint: what it uploaded to shared/ nobody references
            if isinstance(msg, AcknowledgeCheckpoint) and not any(c.checkpoint_id == msg.checkpoint_id
                                                                   for c in self.completed):
                self._spawn(asyncio.to_thread(self._discard_shared, self._shared_of([msg])), cleanup=True)
            return
        if p.waiting.get(key) != msg.attempt_id and key not in p.waiting:
            return
        if isinstance(msg, DeclineCheckpoint):
            if p.waiting.get(key) == msg.attempt_id:
                self.abort(f"checkpoint {p.checkpoint_id} declined: {msg.reason}")
            return
        if p.waiting.get(key) != msg.attempt_id:
            # not waited for (it finished first): its uploads will not be referenced
            self._spawn(asyncio.to_thread(self._discard_shared, self._shared_of([msg])), cleanup=True)
            return
        p.acks[key] = msg
        self._check_complete()

    def on_subtask_finished(self, vertex_id: str, subtask_index: int) -> None:
        """A subtask finished: a pending checkpoint no longer waits for it."""
        p = self.pending
        if p is not None and (vertex_id, subtask_index) in p.waiting and (vertex_id, subtask_index) not in p.acks:
            del p.waiting[(vertex_id, subtask_index)]
            self._check_complete()

    def _check_complete(self) -> None:
        p = self.pending
        if p is None or len(p.acks) < len(p.waiting) or any(k not in p.acks for k in p.waiting):
            return
        if p.timeout is not None:
            p.timeout.cancel()
        # awaited at close: its metadata may already be on disk when the job ends
        self._spawn(self._complete(p), cleanup=True)

    async def _complete(self, p: _Pending) -> None:
        vertices: dict[str, Any] = {}
        for vid, (name, parallelism, ops) in self.view.vertices().items():
            vertices[vid] = {"name": name, "parallelism": parallelism, "operators": ops, "subtasks": {}}
        state_size = checkpointed = 0
        alignment = 0.0
        for (vid, idx), ack in p.acks.items():
            if vid in vertices:
                vertices[vid]["subtasks"][str(idx)] = ack.state
            state_size += int(ack.metrics.get("state_size", 0))
            checkpointed += int(ack.metrics.get("checkpointed_size", 0))
            alignment = max(alignment, float(ack.metrics.get("alignment_ms", 0.0)))
        metadata = {"format": FORMAT, "kind": "savepoint" if p.savepoint else "checkpoint",
                    "checkpoint_id": p.checkpoint_id, "job_id": self.view.job_id, "job_name": self.view.job_name,
                    "timestamp": p.timestamp, "max_parallelism": self.view.max_parallelism,
                    "storage": p.storage_uri, "vertices": vertices}
        try:
            await asyncio.to_thread(self._write_metadata, p, encode(metadata))
        except Exception as exc:  # noqa: BLE001 - the checkpoint fails; the job goes on
            if self.pending is p:
                self.abort(f"checkpoint {p.checkpoint_id}: could not write its metadata to {p.location}: "
                           f"{type(exc).__name__}: {exc}")
            return
        if self.pending is not p:  # aborted (timeout) while the metadata was written
            return
        self.pending = None
        self.counts["in_progress"] -= 1
        self.counts["completed"] += 1
        self._last_end = self.clock.monotonic()
        done = CompletedCheckpoint(p.checkpoint_id, metadata, p.location, shared_files(metadata))
        duration = round((perf() - p.started) * 1000)
        entry = {"id": p.checkpoint_id, "status": "COMPLETED", "is_savepoint": p.savepoint,
                 "trigger_timestamp": p.timestamp, "latest_ack_timestamp": self.clock.time_ms(),
                 "end_to_end_duration": duration, "state_size": state_size, "checkpointed_size": checkpointed,
                 "alignment_buffered": 0, "alignment_duration": round(alignment), "external_path": p.location,
                 "num_subtasks": len(p.waiting), "num_acknowledged_subtasks": len(p.acks),
                 "checkpoint_type": "SAVEPOINT" if p.savepoint else "CHECKPOINT", "discarded": False,
                 "tasks": self._task_stats(p)}
        self._add_history(entry)
        self._summary.append((duration, state_size, checkpointed, round(alignment)))
        if p.savepoint:
            self.latest_savepoint = entry
        else:
            self.completed.append(done)
            subsumed = self.completed[:-self.settings.retained]
            self.completed = self.completed[-self.settings.retained:]
            if subsumed:
                self._spawn(asyncio.to_thread(self._subsume, subsumed, list(self.completed)), cleanup=True)
        if not p.savepoint and self.view.on_completed is not None:
            try:
                await self.view.on_completed(done)
            except Exception as exc:  # noqa: BLE001 - the job goes on; a recovery would use an older one
                logger.warning("job %s: could not record checkpoint %d in the recovery metadata: %s",
                               self.view.job_id, p.checkpoint_id, exc)
        logger.info("job %s: completed %s %d in %d ms (%d bytes)", self.view.job_id,
                    "savepoint" if p.savepoint else "checkpoint", p.checkpoint_id, duration, state_size)
        await self.view.send_complete(p.checkpoint_id)
        if p.future is not None and not p.future.done():
            p.future.set_result(done)
        self._wake.set()

    def _task_stats(self, p: _Pending) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (vid, idx), ack in sorted(p.acks.items()):
            out.setdefault(vid, []).append({"index": idx, **ack.metrics})
        return out

    def _write_metadata(self, p: _Pending, data: bytes) -> None:
        if p.savepoint:
            storage = open_storage(p.location, self.storage_options(p.location))
            storage.put_atomic(METADATA_FILE, data)
        else:
            self.storage().put_atomic(f"{p.directory}/{METADATA_FILE}", data)

    def _subsume(self, subsumed: list[CompletedCheckpoint], retained: list[CompletedCheckpoint]) -> None:
        """Delete subsumed checkpoints and the shared files no retained one references (blocking)."""
        keep: set[str] = set()
        for c in retained:
            keep |= c.shared
        if self.restored is not None:
            keep |= self.restored.shared
        storage = self.storage()
        for c in subsumed:
            if self.restored is not None and c.checkpoint_id == self.restored.checkpoint_id:
                continue
            try:
                storage.delete_prefix(checkpoint_dir(c.checkpoint_id) + "/")
                for path in c.shared - keep:
                    if path.startswith(SHARED_DIR + "/"):
                        storage.delete(path)
            except Exception as exc:  # noqa: BLE001 - left-over files waste space; nothing breaks
                logger.warning("job %s: could not delete subsumed checkpoint %d: %s", self.view.job_id,
                               c.checkpoint_id, exc)

    # -- aborts ---------------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Abort the pending checkpoint (counted as failed; its directory is deleted)."""
        p = self.pending
        if p is None:
            return
        self.pending = None
        if p.timeout is not None:
            p.timeout.cancel()
        self.counts["in_progress"] -= 1
        self.counts["failed"] += 1
        self._last_end = self.clock.monotonic()
        logger.warning("job %s: %s", self.view.job_id, reason)
        entry = {"id": p.checkpoint_id, "status": "FAILED", "is_savepoint": p.savepoint,
                 "trigger_timestamp": p.timestamp, "failure_timestamp": self.clock.time_ms(),
                 "failure_message": reason, "end_to_end_duration": round((perf() - p.started) * 1000),
                 "state_size": 0, "checkpointed_size": 0, "alignment_buffered": 0, "alignment_duration": 0,
                 "num_subtasks": len(p.waiting), "num_acknowledged_subtasks": len(p.acks),
                 "checkpoint_type": "SAVEPOINT" if p.savepoint else "CHECKPOINT", "tasks": {}}
        self.latest_failed = entry
        self._add_history(entry)
        if not p.savepoint:
            self._spawn(asyncio.to_thread(self._drop_dir, p.directory, self._shared_of(p.acks.values())), cleanup=True)
        if p.future is not None and not p.future.done():
            p.future.set_exception(CheckpointAbortedError(reason))
        self._wake.set()

    def _drop_dir(self, directory: str, shared: set[str] | None = None) -> None:
        """Delete an aborted checkpoint's directory and the shared files only it uploaded (blocking)."""
        try:
            self.storage().delete_prefix(directory + "/")
        except Exception as exc:  # noqa: BLE001 - left-over files of an aborted checkpoint
            logger.debug("job %s: could not delete %s: %s", self.view.job_id, directory, exc)
        if shared:
            self._discard_shared(shared)

    @staticmethod
    def _shared_of(acks: Any) -> set[str]:
        out: set[str] = set()
        for ack in acks:
            handle = ack.state.get("keyed") if isinstance(ack.state, dict) else None
            if isinstance(handle, dict):
                out.update(handle.get("shared") or ())
        return out

    def _discard_shared(self, shared: set[str]) -> None:
        """Delete the shared files of ``shared`` that no retained checkpoint references (blocking).

        Safe: a backend reuses only files of a *completed* checkpoint in later checkpoints."""
        keep: set[str] = set()
        for c in list(self.completed):
            keep |= c.shared
        if self.restored is not None:
            keep |= self.restored.shared
        storage = self.storage()
        for path in shared - keep:
            if path.startswith(SHARED_DIR + "/"):
                try:
                    storage.delete(path)
                except Exception as exc:  # noqa: BLE001 - a left-over file wastes space; nothing breaks
                    logger.debug("job %s: could not delete %s: %s", self.view.job_id, path, exc)

    # -- restore and statistics -----------------------------------------------------------------

    def restored_from(self, checkpoint: CompletedCheckpoint, external: bool) -> None:
        """The job (re)starts from ``checkpoint``; new checkpoints get higher ids."""
        if not external and checkpoint not in self.completed:
            self.completed.append(checkpoint)  # a checkpoint of this job (a recovered JobManager)
        self.counts["restored"] += 1
        self.restored = checkpoint if not external else None
        self.restored_at = self.clock.time_ms()
        self.restored_info = {"id": checkpoint.checkpoint_id, "restore_timestamp": self.restored_at,
                              "is_savepoint": checkpoint.savepoint, "external_path": checkpoint.location}
        self.next_id = max(self.next_id, checkpoint.checkpoint_id + 1)

    @property
    def latest(self) -> CompletedCheckpoint | None:
        return self.completed[-1] if self.completed else None

    def _add_history(self, entry: dict[str, Any]) -> None:
        self.history = ([entry] + [h for h in self.history if h["id"] != entry["id"]])[:HISTORY]

    def history_latest_completed(self) -> dict[str, Any] | None:
        """The history entry of the latest completed checkpoint (not savepoint), or None."""
        return next((h for h in self.history if h["status"] == "COMPLETED" and not h["is_savepoint"]), None)

    def stats(self) -> dict[str, Any]:
        """``GET /jobs/:id/checkpoints`` in Flink's shape."""
        latest_completed = next((h for h in self.history if h["status"] == "COMPLETED" and not h["is_savepoint"]),
                                None)
        history = list(self.history)
        if self.pending is not None:
            p = self.pending
            history.insert(0, {"id": p.checkpoint_id, "status": "IN_PROGRESS", "is_savepoint": p.savepoint,
                               "trigger_timestamp": p.timestamp,
                               "end_to_end_duration": round((perf() - p.started) * 1000),
                               "num_subtasks": len(p.waiting), "num_acknowledged_subtasks": len(p.acks),
                               "checkpoint_type": "SAVEPOINT" if p.savepoint else "CHECKPOINT"})

        def summary(i: int) -> dict[str, Any]:
            values = sorted(v[i] for v in self._summary)
            if not values:
                return {"min": 0, "max": 0, "avg": 0, "p50": 0, "p90": 0, "p95": 0, "p99": 0, "p999": 0}

            def q(f: float) -> int:
                return values[min(len(values) - 1, int(f * len(values)))]

            return {"min": values[0], "max": values[-1], "avg": round(sum(values) / len(values)),
                    "p50": q(0.5), "p90": q(0.9), "p95": q(0.95), "p99": q(0.99), "p999": q(0.999)}

        return {
            "counts": dict(self.counts),
            "summary": {"end_to_end_duration": summary(0), "state_size": summary(1),
                        "checkpointed_size": summary(2), "alignment_duration": summary(3)},
            "latest": {"completed": latest_completed, "savepoint": self.latest_savepoint,
                       "failed": self.latest_failed, "restored": getattr(self, "restored_info", None)},
            "history": history,
        }

    def config(self) -> dict[str, Any]:
        """``GET /jobs/:id/checkpoints/config`` in Flink's shape (durations in ms)."""
        s = self.settings
        return {"mode": s.mode, "interval": round(s.interval * 1000) if s.enabled else 0x7FFFFFFFFFFFFFFF,
                "timeout": round(s.timeout * 1000), "min_pause": round(s.min_pause * 1000),
                "max_concurrent": 1, "externalization": {"enabled": True, "delete_on_cancellation": False},
                "state_backend": None, "checkpoint_storage": self.storage_uri, "incremental": s.incremental,
                "retained": s.retained, "enabled": s.enabled}

    # -- tasks ----------------------------------------------------------------------------------

    def _spawn(self, aw: Awaitable[Any], cleanup: bool = False) -> asyncio.Task[Any]:
        """A task of this coordinator; ``cleanup`` tasks (deleting files) are awaited at close, the
        others cancelled."""
        task = asyncio.ensure_future(aw)
        (self._cleanups if cleanup else self._tasks).add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._cleanups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("job %s: checkpoint work failed: %s", self.view.job_id, task.exception())

    async def close(self) -> None:
        """Abort a pending checkpoint, finish the work in flight, and delete shared files no
        retained checkpoint references (uploads of checkpoints that never completed)."""
        self._closed = True
        if self._cleanups:
            # a checkpoint whose acknowledgements are all in completes (or fails) first
            await asyncio.wait(set(self._cleanups), timeout=60)
        if self.pending is not None:
            p = self.pending
            self.pending = None
            if p.timeout is not None:
                p.timeout.cancel()
            self.counts["in_progress"] -= 1
            if p.future is not None and not p.future.done():
                p.future.set_exception(CheckpointAbortedError("the job stopped running"))
            if not p.savepoint:
                try:
                    async with asyncio.timeout(30):
                        await asyncio.to_thread(self._drop_dir, p.directory, self._shared_of(p.acks.values()))
                except (TimeoutError, OSError) as exc:
                    logger.warning("job %s: could not clean up checkpoint %d: %s", self.view.job_id,
                                   p.checkpoint_id, exc)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._cleanups:
            # deletions of subsumed and aborted checkpoints: bounded file I/O, finished rather than dropped
            await asyncio.wait(set(self._cleanups), timeout=60)
        if self._storage is not None:
            try:
                async with asyncio.timeout(60):
                    await asyncio.to_thread(self._sweep_shared)
            except (TimeoutError, OSError) as exc:
                logger.warning("job %s: could not clean up shared checkpoint files: %s", self.view.job_id, exc)

    def _sweep_shared(self) -> None:
        """Delete every file below ``shared/`` that no retained checkpoint references (blocking)."""
        try:
            files = self.storage().list(SHARED_DIR + "/")
        except Exception as exc:  # noqa: BLE001 - nothing to sweep
            logger.debug("job %s: cannot list shared files: %s", self.view.job_id, exc)
            return
        self._discard_shared({f if f.startswith(SHARED_DIR + "/") else f"{SHARED_DIR}/{f}" for f in files})


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
