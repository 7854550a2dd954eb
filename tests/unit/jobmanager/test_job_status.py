"""The job and execution transition tables."""

from __future__ import annotations

import pytest

from streamlet.runtime.jobmanager.job_status import (
    EXECUTION_TRANSITIONS, JOB_TRANSITIONS, ExecutionState, IllegalTransitionError, JobStatus, transition,
)


def test_every_state_has_a_row() -> None:
    assert set(JOB_TRANSITIONS) == set(JobStatus)
    assert set(EXECUTION_TRANSITIONS) == set(ExecutionState)


def test_terminal_states_have_no_way_out() -> None:
    for s in JobStatus:
        assert (not JOB_TRANSITIONS[s]) == s.is_terminal
    for e in ExecutionState:
        assert (not EXECUTION_TRANSITIONS[e]) == e.is_terminal


@pytest.mark.parametrize("path", [
    ["INITIALIZING", "CREATED", "RUNNING", "FINISHED"],
    ["INITIALIZING", "CREATED", "RUNNING", "FAILING", "FAILED"],
    ["INITIALIZING", "CREATED", "RUNNING", "CANCELLING", "CANCELED"],
    ["INITIALIZING", "CREATED", "FAILED"],
    ["INITIALIZING", "CREATED", "CANCELED"],
])
def test_job_paths(path: list[str]) -> None:
    s = JobStatus(path[0])
    for nxt in path[1:]:
        s = transition(s, JobStatus(nxt))
    assert s.value == path[-1]


def test_execution_happy_path_and_cancel_race() -> None:
    s = ExecutionState.CREATED
    for nxt in ("SCHEDULED", "DEPLOYING", "INITIALIZING", "RUNNING", "CANCELING", "FINISHED"):
        s = transition(s, ExecutionState(nxt))
    assert s is ExecutionState.FINISHED


def test_illegal_moves_raise_with_the_allowed_states() -> None:
    with pytest.raises(IllegalTransitionError, match="FINISHED -> RUNNING.*none"):
        transition(JobStatus.FINISHED, JobStatus.RUNNING)
    with pytest.raises(IllegalTransitionError, match="CREATED -> FINISHED"):
        transition(ExecutionState.CREATED, ExecutionState.FINISHED, "subtask x")
