"""Job and subtask (execution) state machines, as transition tables.

State names are Flink's, since REST clients written for Flink read them.  A move that is not in
the table raises :class:`IllegalTransitionError`; every state change of the JobManager goes
through :func:`transition`.

Job::

    INITIALIZING -> CREATED -> RUNNING -> FINISHED
         |            |   \\        |  \\-> FAILING -> FAILED
         |            |    \\       \\---> CANCELLING -> CANCELED
         +-> FAILED   +-> FAILED / CANCELLING / CANCELED     (RESTARTING: with restart strategies)

Execution (one subtask attempt)::

    CREATED -> SCHEDULED -> DEPLOYING -> INITIALIZING -> RUNNING -> FINISHED
       any non-terminal state -> CANCELING -> CANCELED;  any non-terminal state -> FAILED
"""

from __future__ import annotations

from enum import Enum
from typing import Mapping, TypeVar

from streamlet.errors import FatalError


class JobStatus(str, Enum):
    """State of a whole job (Flink's ``JobStatus``)."""

    INITIALIZING = "INITIALIZING"
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    FAILING = "FAILING"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELED = "CANCELED"
    FINISHED = "FINISHED"
    RESTARTING = "RESTARTING"
    SUSPENDED = "SUSPENDED"

    @property
    def is_terminal(self) -> bool:
        """No transition leaves this state (SUSPENDED is only locally terminal in Flink)."""
        return self in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.FINISHED, JobStatus.SUSPENDED)


class ExecutionState(str, Enum):
    """State of one subtask attempt (Flink's ``ExecutionState``)."""

    CREATED = "CREATED"
    SCHEDULED = "SCHEDULED"
    DEPLOYING = "DEPLOYING"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (ExecutionState.FINISHED, ExecutionState.CANCELED, ExecutionState.FAILED)


J = JobStatus
E = ExecutionState

JOB_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    J.INITIALIZING: frozenset({J.CREATED, J.FAILED, J.CANCELLING, J.CANCELED}),
    J.CREATED: frozenset({J.RUNNING, J.FAILING, J.FAILED, J.CANCELLING, J.CANCELED, J.SUSPENDED}),
    J.RUNNING: frozenset({J.FINISHED, J.FAILING, J.CANCELLING, J.RESTARTING, J.SUSPENDED}),
    J.FAILING: frozenset({J.FAILED, J.RESTARTING, J.CANCELLING}),
    # FINISHED: stop-with-savepoint (the subtasks are cancelled once the savepoint completed)
    J.CANCELLING: frozenset({J.CANCELED, J.FINISHED}),
    J.RESTARTING: frozenset({J.CREATED, J.RUNNING, J.FAILED, J.CANCELLING, J.CANCELED, J.SUSPENDED}),
    J.FAILED: frozenset(),
    J.CANCELED: frozenset(),
    J.FINISHED: frozenset(),
    J.SUSPENDED: frozenset(),
}

_ANY_LIVE = frozenset({E.CANCELING, E.CANCELED, E.FAILED})
EXECUTION_TRANSITIONS: Mapping[ExecutionState, frozenset[ExecutionState]] = {
    E.CREATED: frozenset({E.SCHEDULED}) | _ANY_LIVE,
    E.SCHEDULED: frozenset({E.DEPLOYING}) | _ANY_LIVE,
    E.DEPLOYING: frozenset({E.INITIALIZING, E.RUNNING}) | _ANY_LIVE,
    E.INITIALIZING: frozenset({E.RUNNING, E.FINISHED}) | _ANY_LIVE,
    E.RUNNING: frozenset({E.FINISHED}) | _ANY_LIVE,
    # a subtask may finish (or fail) while the cancel request is on its way
    E.CANCELING: frozenset({E.CANCELED, E.FAILED, E.FINISHED}),
    E.FINISHED: frozenset(),
    E.CANCELED: frozenset(),
    E.FAILED: frozenset(),
}

S = TypeVar("S", JobStatus, ExecutionState)


class IllegalTransitionError(FatalError):
    """A state change that the transition table does not allow (a bug, or a stale report)."""


def transition(current: S, target: S, what: str = "") -> S:
    """``target`` when the table allows ``current -> target``; raises otherwise.

    Example::

        status = transition(JobStatus.CREATED, JobStatus.RUNNING, "job 'wordcount'")
    """
    table: Mapping[S, frozenset[S]] = (JOB_TRANSITIONS if isinstance(current, JobStatus)  # type: ignore[assignment]
                                       else EXECUTION_TRANSITIONS)
    if target not in table[current]:
        allowed = ", ".join(sorted(s.value for s in table[current])) or "none (terminal)"
        raise IllegalTransitionError(
            f"{what + ': ' if what else ''}illegal transition {current.value} -> {target.value}; "
            f"allowed from {current.value}: {allowed}")
    return target
