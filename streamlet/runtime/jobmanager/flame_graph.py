"""Flame graphs of a vertex, sampled on demand on the TaskManagers running it (Flink's
``JobVertexThreadInfoTracker`` and ``VertexFlameGraphFactory``, for Python stacks).

``GET /jobs/:id/vertices/:vid/flamegraph`` calls :meth:`FlameGraphTracker.flame_graph`:

1. a vertex that is no longer running answers ``endTimestamp`` -1 (Flink's ``terminated``),
   ``rest.flamegraph.enabled: false`` answers -2 (``disabled``);
2. with no samples of the vertex younger than ``rest.flamegraph.refresh-interval``, a sampling
   round is started (at most one per vertex at a time): one ``SampleStacks`` RPC per TaskManager
   running subtasks of the vertex, all at once, each taking ``rest.flamegraph.num-samples``
   samples ``rest.flamegraph.delay-between-samples`` apart (see
   :mod:`streamlet.runtime.taskmanager.stack_sampler`);
3. the answer is the last samples' graph, or ``endTimestamp`` -3 (``waiting``) while the first
   round runs: clients poll (the dashboard every second) until it has data.

The graph is Flink's: ``{"endTimestamp": ms, "data": {"name": "root", "value": n, "children":
[...]}}``, every node a frame with ``value`` = the samples that passed through it.  ``type``
``FULL`` counts every sample, ``ON_CPU`` those of a subtask running on its event loop,
``OFF_CPU`` those of a suspended one; ``subtask`` keeps one subtask's samples.  A TaskManager
that fails to answer only leaves its subtasks out (logged).  Samples are kept per vertex until
the job is forgotten by the Dispatcher or ten minutes (at least ten refresh intervals) passed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Mapping

from streamlet.clock import Clock
from streamlet.rpc.messages import SampleStacks

if TYPE_CHECKING:
    from streamlet.runtime.jobmanager.job_master import JobMaster

logger = logging.getLogger(__name__)

TERMINATED, DISABLED, WAITING = -1, -2, -3
#: seconds after which the samples of a vertex nobody asked about again are dropped (at least)
_CLEANUP = 600.0
TYPES = ("FULL", "ON_CPU", "OFF_CPU")

Spawn = Callable[[Coroutine[Any, Any, None]], Any]


@dataclass(frozen=True)
class FlameGraphConfig:
    """``rest.flamegraph.*``."""

    enabled: bool = True
    num_samples: int = 100
    delay: float = 0.05
    max_depth: int = 100
    refresh_interval: float = 60.0
    #: added to the sampling time for the RPC's timeout (``rpc.ask-timeout``)
    ask_timeout: float = 10.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FlameGraphConfig:
        return cls(config["rest.flamegraph.enabled"], config["rest.flamegraph.num-samples"],
                   config["rest.flamegraph.delay-between-samples"], config["rest.flamegraph.stack-depth"],
                   config["rest.flamegraph.refresh-interval"], config["rpc.ask-timeout"])


@dataclass(frozen=True)
class VertexStackSamples:
    """One sampling round of a vertex: when it ended and the samples of every TaskManager."""

    end_timestamp: int
    samples: list[dict[str, Any]]


def build_flame_graph(samples: list[dict[str, Any]], kind: str = "FULL", subtask: int | None = None) -> dict[str, Any]:
    """Flink's flame graph node tree of ``samples`` (``[{subtask, on_cpu, stack, count}]``)."""
    root: dict[str, Any] = {"name": "root", "value": 0, "children": []}
    index: dict[int, dict[str, dict[str, Any]]] = {}
    for s in samples:
        if subtask is not None and s["subtask"] != subtask:
            continue
        if (kind == "ON_CPU" and not s["on_cpu"]) or (kind == "OFF_CPU" and s["on_cpu"]):
            continue
        n = int(s["count"])
        node = root
        node["value"] += n
        for frame in s["stack"]:
            children = index.setdefault(id(node), {})
            child = children.get(frame)
            if child is None:
                child = children[frame] = {"name": frame, "value": 0, "children": []}
                node["children"].append(child)
            child["value"] += n
            node = child
    return root


class FlameGraphTracker:
    """See the module docstring.  ``spawn`` runs a sampling round as a task owned by the caller
    (the Dispatcher's TaskGroup)."""

    def __init__(self, config: FlameGraphConfig, clock: Clock, spawn: Spawn) -> None:
        self.config = config
        self.clock = clock
        self.spawn = spawn
        self._stats: dict[tuple[str, str], VertexStackSamples] = {}
        self._running: set[tuple[str, str]] = set()

    def flame_graph(self, jm: JobMaster, vertex_id: str, kind: str = "FULL",
                    subtask: int | None = None) -> dict[str, Any]:
        """The answer to ``GET .../flamegraph`` (steps 1-3 of the module docstring); ``vertex_id``
        must be a vertex of the job."""
        if not self.config.enabled:
            return {"endTimestamp": DISABLED}
        self._forget_old()
        key = (jm.job_id, vertex_id)
        running = [ex for ex in jm.executions if ex.tdd.vertex_id == vertex_id and not ex.state.is_terminal]
        if jm.is_terminal or not running:
            return {"endTimestamp": TERMINATED}
        stats = self._stats.get(key)
        now = self.clock.time_ms()
        if (stats is None or now - stats.end_timestamp >= self.config.refresh_interval * 1000) \
                and key not in self._running:
            self._running.add(key)
            self.spawn(self._sample(jm, vertex_id, key))
        if stats is None:
            return {"endTimestamp": WAITING}
        return {"endTimestamp": stats.end_timestamp, "data": build_flame_graph(stats.samples, kind, subtask)}

    def forget_job(self, job_id: str) -> None:
        """Drop the samples of a job the Dispatcher no longer keeps."""
        for key in [k for k in self._stats if k[0] == job_id]:
            del self._stats[key]

    def _forget_old(self) -> None:
        # Flink's rest.flamegraph.cleanup-interval (10 min), or ten refresh intervals if longer
        limit = self.clock.time_ms() - max(10 * self.config.refresh_interval, _CLEANUP) * 1000
        for key in [k for k, s in self._stats.items() if s.end_timestamp < limit]:
            del self._stats[key]

    async def _sample(self, jm: JobMaster, vertex_id: str, key: tuple[str, str]) -> None:
        """One sampling round over every TaskManager running subtasks of the vertex."""
        c = self.config
        try:
            by_tm: dict[str, list[int]] = {}
            for ex in jm.executions:
                if ex.tdd.vertex_id == vertex_id and ex.slot is not None and not ex.state.is_terminal:
                    by_tm.setdefault(ex.slot.task_manager_id, []).append(ex.tdd.subtask_index)
            timeout = c.num_samples * c.delay + c.ask_timeout
            samples: list[dict[str, Any]] = []

            async def ask(tm: str, subtasks: list[int]) -> None:
                gateway = jm.resources.gateway(tm)
                if gateway is None:
                    return
                request = SampleStacks(jm.job_id, vertex_id, sorted(subtasks), c.num_samples, c.delay, c.max_depth)
                try:
                    samples.extend(await gateway.sample_stacks(request, timeout))
                except Exception as exc:  # noqa: BLE001 - the graph is drawn from the TaskManagers that answered
                    logger.warning("job %s: taskmanager %s gave no stack samples of vertex %s: %s",
                                   jm.job_id, tm, vertex_id, exc)

            async with asyncio.TaskGroup() as tg:
                for tm, subtasks in sorted(by_tm.items()):
                    tg.create_task(ask(tm, subtasks))
            self._stats[key] = VertexStackSamples(self.clock.time_ms(), samples)
        except Exception:  # noqa: BLE001 - a bug here must not take the Dispatcher's TaskGroup down
            logger.exception("job %s: sampling the stacks of vertex %s failed", jm.job_id, vertex_id)
        finally:
            self._running.discard(key)
