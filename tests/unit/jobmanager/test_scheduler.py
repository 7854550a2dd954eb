"""Slot sharing and deployment building."""

from __future__ import annotations

import base64

from streamlet.runtime.jobmanager.resource_manager import SlotAssignment
from streamlet.runtime.jobmanager.scheduler import assign_slots, build_deployments, create_executions, slots_needed
from tests.unit.jobmanager.helpers import graph


def test_slot_sharing_puts_subtask_i_of_every_vertex_in_slot_i() -> None:
    g = graph(source_p=3, sink_p=1)
    assert slots_needed(g) == 3
    exs = create_executions(g, "j" * 32, {})
    assert len(exs) == 4 and len({ex.attempt_id for ex in exs}) == 4
    slots = [SlotAssignment("t1", 0, "h1:1"), SlotAssignment("t2", 0, "h2:1"), SlotAssignment("t1", 1, "h1:1")]
    assign_slots(exs, slots)
    deps = build_deployments("j" * 32, "job", exs, {"pkg/m.py": b"x = 1"})
    assert sorted(deps) == ["t1", "t2"]
    t1 = deps["t1"]
    assert sorted((t["tdd"]["vertex_id"][0], t["tdd"]["subtask_index"], t["slot"]) for t in t1.tasks) == [
        ("a", 0, 0), ("a", 2, 1), ("b", 0, 0)]
    assert t1.locations == {"a" * 32: ["t1", "t2", "t1"], "b" * 32: ["t1"]}
    assert t1.addresses == {"t1": "h1:1", "t2": "h2:1"}
    assert base64.b64decode(t1.files["pkg/m.py"]) == b"x = 1"
    assert [t["tdd"]["vertex_id"][0] for t in deps["t2"].tasks] == ["a"]
