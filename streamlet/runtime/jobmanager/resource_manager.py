"""ResourceManager: the TaskManager registry, the slot pool and heartbeat monitoring.

* **Registration**: a TaskManager registers its id, slot count and data address and gets a
  registration id that fences its later messages.  A TaskManager that registers again under the
  same id (it restarted, or its connection broke) first counts as lost: its old slots and the
  subtasks in them are gone.
* **Slots**: a job asks for ``n`` slots (slot sharing: its largest parallelism) with
  :meth:`ResourceManager.request_slots`.  Requests are served in arrival order, first fit: a
  request that cannot be served yet waits while later, smaller ones may be served.  With
  ``cluster.evenly-spread-out-slots`` (default) each slot comes from the TaskManager with the
  most free slots, so a job uses as many processes (cores) as it can.
* **Heartbeats**: every ``heartbeat.interval`` the monitor (on the injected clock) looks for
  TaskManagers silent for more than ``heartbeat.timeout``; such a TaskManager is removed, its
  slots with it, and ``on_task_manager_lost`` tells the Dispatcher, which fails its jobs.  A
  closed RPC connection counts as a loss at once (the TaskManager cancels its subtasks then).

All state changes happen in synchronous methods on the event loop (each runs alone); only
:meth:`run` awaits, on the clock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

from streamlet.clock import Clock
from streamlet.ids import new_id
from streamlet.rest.schemas import TaskManagerInfo
from streamlet.rpc.messages import RegisterTaskManager, RegistrationAck, RegistrationRefused
from streamlet.rpc.gateways import TaskManagerGateway

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotAssignment:
    """One slot given to a job: where it is and how its TaskManager's data endpoint is reached."""

    task_manager_id: str
    slot_index: int
    data_address: str


@dataclass
class TaskManagerRecord:
    """A registered TaskManager."""

    id: str
    registration_id: str
    data_address: str
    slots: int
    resources: dict[str, Any]
    gateway: TaskManagerGateway
    last_heartbeat: float
    #: slot index -> job id
    allocations: dict[int, str] = field(default_factory=dict)
    #: slot index -> job id, as the TaskManager holds them: from its last heartbeat, plus slots
    #: whose release it did not confirm since (they are not offered until it reports them free)
    reported: dict[int, str] = field(default_factory=dict)
    #: jobs whose ReleaseJob the ResourceManager sent and that did not answer yet
    releasing: set[str] = field(default_factory=set)
    #: what the process uses, from its last heartbeat (``{rss_bytes, cpu_load}``)
    stats: dict[str, Any] = field(default_factory=dict)

    def busy(self) -> set[int]:
        """Slot indexes not to offer: allocated here or still held on the TaskManager."""
        return set(self.allocations) | set(self.reported)

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.busy())


@dataclass
class _SlotRequest:
    job_id: str
    slots: int
    future: asyncio.Future[list[SlotAssignment]]


LostListener = Callable[[str, str], None]


class ResourceManager:
    """See the module docstring.  ``on_task_manager_lost(task_manager_id, reason)`` is set by the Dispatcher."""

    def __init__(self, clock: Clock, heartbeat_interval: float, heartbeat_timeout: float,
                 spread_out: bool = True) -> None:
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.spread_out = spread_out
        self.id = new_id()
        self.on_task_manager_lost: LostListener | None = None
        self._task_managers: dict[str, TaskManagerRecord] = {}
        self._requests: list[_SlotRequest] = []
        self._tg: asyncio.TaskGroup | None = None

    # -- registry ---------------------------------------------------------------------------

    def register(self, msg: RegisterTaskManager, gateway: TaskManagerGateway) -> RegistrationAck | RegistrationRefused:
        """Admit a TaskManager (or refuse it with a reason); serves waiting slot requests."""
        if msg.slots < 1:
            return RegistrationRefused(f"a taskmanager needs at least one slot, got {msg.slots}; "
                                       "set --slots or taskmanager.numberOfTaskSlots")
        if not msg.data_address:
            return RegistrationRefused("a taskmanager must report its data address")
        if msg.task_manager_id in self._task_managers:
            self._lose(msg.task_manager_id, f"taskmanager {msg.task_manager_id} registered again "
                                            "(it restarted or lost its jobmanager connection)")
        record = TaskManagerRecord(msg.task_manager_id, new_id(), msg.data_address, msg.slots, dict(msg.resources),
                                   gateway, self.clock.monotonic())
        self._task_managers[record.id] = record
        logger.info("taskmanager %s registered: %d slot(s), data address %s", record.id, record.slots,
                    record.data_address)
        self._serve_requests()
        return RegistrationAck(record.registration_id, self.id, self.heartbeat_interval, self.heartbeat_timeout)

    def is_registered(self, task_manager_id: str, registration_id: str) -> bool:
        rec = self._task_managers.get(task_manager_id)
        return rec is not None and rec.registration_id == registration_id

    def heartbeat(self, task_manager_id: str, registration_id: str,
                  slots: list[dict[str, Any]] | None = None, stats: dict[str, Any] | None = None) -> bool:
        """Record a heartbeat; False when the registration is unknown (the TaskManager must re-register).

        ``stats`` (RSS, CPU load) is kept for the REST API.  ``slots`` is the TaskManager's slot report (``[{index, state, job_id}]``); it reconciles the pool:

        1. a slot the TaskManager reports held is not offered, whatever this side believes;
        2. a job it holds slots for but that has no allocation here any more (its release was
           lost or failed) is sent ``ReleaseJob`` again;
        3. slots it reports free become offerable again (waiting requests are served).
        """
        rec = self._task_managers.get(task_manager_id)
        if rec is None or rec.registration_id != registration_id:
            return False
        rec.last_heartbeat = self.clock.monotonic()
        if stats:
            rec.stats = dict(stats)
        if slots is not None:
            rec.reported = {int(s["index"]): str(s["job_id"]) for s in slots
                            if s.get("job_id") and 0 <= int(s.get("index", -1)) < rec.slots}
            known = set(rec.allocations.values())
            for job_id in sorted(set(rec.reported.values()) - known - rec.releasing):
                self._send_release(rec, job_id)
            self._serve_requests()
        return True

    def _send_release(self, rec: TaskManagerRecord, job_id: str) -> None:
        if self._tg is None:  # the monitor is not running (unit tests drive the registry directly)
            return
        rec.releasing.add(job_id)
        self._tg.create_task(self._release_unknown(rec, job_id), name=f"release {job_id} on {rec.id}")

    async def _release_unknown(self, rec: TaskManagerRecord, job_id: str) -> None:
        logger.info("taskmanager %s still holds slots of job %s, which has none here; releasing it", rec.id, job_id)
        try:
            await rec.gateway.release_job(job_id)
        except Exception as exc:  # noqa: BLE001 - retried at a later heartbeat
            logger.warning("taskmanager %s did not release job %s: %s", rec.id, job_id, exc)
        else:
            for idx in [i for i, j in rec.reported.items() if j == job_id]:
                del rec.reported[idx]
            self._serve_requests()
        finally:
            rec.releasing.discard(job_id)

    def disconnected(self, task_manager_id: str, registration_id: str) -> None:
        """The RPC connection of a registration closed: the TaskManager is lost.

        A TaskManager cancels every subtask when it loses its connection, so waiting for the
        heartbeat timeout would only show dead subtasks as RUNNING.  A connection of an older
        registration (the TaskManager registered again since) changes nothing.
        """
        rec = self._task_managers.get(task_manager_id)
        if rec is not None and rec.registration_id == registration_id:
            self._lose(task_manager_id, f"taskmanager {task_manager_id} ({rec.data_address}) lost: "
                                        "its rpc connection closed")

    def unregister(self, task_manager_id: str, registration_id: str) -> None:
        """A TaskManager leaves on purpose (it stops): the same as a loss for its jobs, logged quietly."""
        rec = self._task_managers.get(task_manager_id)
        if rec is not None and rec.registration_id == registration_id:
            logger.info("taskmanager %s stopped; releasing its %d slot(s)", task_manager_id, rec.slots)
            self._task_managers.pop(task_manager_id)
            if self.on_task_manager_lost is not None:
                self.on_task_manager_lost(task_manager_id, f"taskmanager {task_manager_id} stopped")

    def gateway(self, task_manager_id: str) -> TaskManagerGateway | None:
        """The gateway of a registered TaskManager, or None once it is gone."""
        rec = self._task_managers.get(task_manager_id)
        return rec.gateway if rec is not None else None

    def _lose(self, task_manager_id: str, reason: str) -> None:
        rec = self._task_managers.pop(task_manager_id, None)
        if rec is None:
            return
        logger.warning("%s; releasing its %d slot(s)", reason, rec.slots)
        if self.on_task_manager_lost is not None:
            self.on_task_manager_lost(task_manager_id, reason)

    def check_heartbeats(self) -> list[str]:
        """Remove every TaskManager silent for longer than the timeout; returns their ids."""
        now = self.clock.monotonic()
        lost = [r for r in self._task_managers.values() if now - r.last_heartbeat > self.heartbeat_timeout]
        for r in lost:
            self._lose(r.id, f"taskmanager {r.id} ({r.data_address}) lost: no heartbeat for "
                             f"{now - r.last_heartbeat:.1f}s (heartbeat.timeout {self.heartbeat_timeout:g}s)")
        return [r.id for r in lost]

    async def run(self) -> None:
        """The heartbeat monitor; runs until cancelled.  It owns the ReleaseJob calls of reconciliation."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                while True:
                    await self.clock.sleep(self.heartbeat_interval)
                    self.check_heartbeats()
        finally:
            self._tg = None

    # -- slots ------------------------------------------------------------------------------

    @property
    def slots_total(self) -> int:
        return sum(r.slots for r in self._task_managers.values())

    @property
    def slots_free(self) -> int:
        return sum(r.free_slots for r in self._task_managers.values())

    def request_slots(self, job_id: str, slots: int) -> asyncio.Future[list[SlotAssignment]]:
        """A future of ``slots`` slots for ``job_id``: done now when they are free, else when they become free.

        Cancel the future (or call :meth:`cancel_request`) to withdraw the request.
        """
        fut: asyncio.Future[list[SlotAssignment]] = asyncio.get_running_loop().create_future()
        self._requests.append(_SlotRequest(job_id, slots, fut))
        self._serve_requests()
        return fut

    def cancel_request(self, job_id: str) -> None:
        """Withdraw the job's waiting request (slots already given stay given)."""
        for r in [r for r in self._requests if r.job_id == job_id]:
            self._requests.remove(r)
            if not r.future.done():
                r.future.cancel()

    def pending_reason(self, job_id: str) -> str | None:
        """Why the job's slot request waits, or None when it does not wait."""
        for r in self._requests:
            if r.job_id == job_id:
                n = len(self._task_managers)
                return (f"waiting for {r.slots} free slot(s): the cluster has {self.slots_free} free of "
                        f"{self.slots_total} on {n} taskmanager(s); start more taskmanagers or lower the parallelism")
        return None

    def release_slots(self, job_id: str, unconfirmed: Collection[str] = ()) -> int:
        """Free every slot of ``job_id``; returns how many were freed.  Serves waiting requests.

        On the TaskManagers in ``unconfirmed`` (their ReleaseJob failed) the slots stay held
        until a heartbeat reports them free; meanwhile each heartbeat sends ReleaseJob again.
        """
        freed = 0
        for rec in self._task_managers.values():
            for idx in [i for i, j in rec.allocations.items() if j == job_id]:
                del rec.allocations[idx]
                if rec.id in unconfirmed:
                    rec.reported[idx] = job_id
                else:
                    rec.reported.pop(idx, None)
                freed += 1
        self.cancel_request(job_id)
        if freed:
            self._serve_requests()
        return freed

    def allocations(self, job_id: str) -> list[SlotAssignment]:
        """The slots ``job_id`` holds now."""
        return [SlotAssignment(r.id, i, r.data_address) for r in self._task_managers.values()
                for i, j in sorted(r.allocations.items()) if j == job_id]

    def _serve_requests(self) -> None:
        for req in list(self._requests):
            if req.future.done():
                self._requests.remove(req)
                continue
            if req.slots <= self.slots_free:
                self._requests.remove(req)
                req.future.set_result(self._allocate(req.job_id, req.slots))

    def _allocate(self, job_id: str, n: int) -> list[SlotAssignment]:
        records = list(self._task_managers.values())
        out: list[SlotAssignment] = []
        for _ in range(n):
            candidates = [r for r in records if r.free_slots > 0]
            # spread: most free slots first; fill: registration order (max() keeps the first of equals)
            rec = (max(candidates, key=lambda r: r.free_slots) if self.spread_out else candidates[0])
            busy = rec.busy()
            idx = next(i for i in range(rec.slots) if i not in busy)
            rec.allocations[idx] = job_id
            out.append(SlotAssignment(rec.id, idx, rec.data_address))
        return out

    # -- views ------------------------------------------------------------------------------

    def task_manager_infos(self) -> list[TaskManagerInfo]:
        """Every registered TaskManager, for the REST API."""
        now = self.clock.monotonic()
        return [TaskManagerInfo(r.id, r.data_address, r.slots, r.free_slots, int((now - r.last_heartbeat) * 1000),
                                dict(r.resources),
                                [{"index": i, "jobId": j} for i, j in sorted(r.allocations.items())],
                                dict(r.stats))
                for r in self._task_managers.values()]

    def task_manager_ids(self) -> list[str]:
        return list(self._task_managers)
