"""User code that exits or never returns, in ``streamlet run``'s MiniCluster (one process, one loop):
the job fails with a message naming what happened, and the process (the test's) goes on."""

from __future__ import annotations

from pathlib import Path

from tests.support.pipelines import plan_file, run_graph, write_jsonl, write_pipeline


def _graph(tmp_path: Path, fn: str):  # type: ignore[no-untyped-def]
    write_jsonl(tmp_path / "in.jsonl", [{"v": i} for i in range(20)])
    return plan_file(write_pipeline(tmp_path, f"""
        sources: {{src: {{type: file, path: in.jsonl}}}}
        transforms: {{f: {{input: src, map: "{fn}"}}}}
        sinks: {{out: {{input: f, type: blackhole}}}}
    """))


def test_sys_exit_in_a_map_fails_the_job_naming_the_node(tmp_path: Path, udf_module) -> None:  # type: ignore[no-untyped-def]
    mod = udf_module("import sys\n\ndef leave(r):\n    sys.exit(3)\n")
    result = run_graph(_graph(tmp_path, f"{mod}:leave"))
    assert result.state == "FAILED"
    assert "node 'f': user function raised SystemExit: 3 on record {'v': 0}" in str(result.error)


def test_sys_exit_in_a_process_function_fails_the_job(tmp_path: Path, udf_module) -> None:  # type: ignore[no-untyped-def]
    mod = udf_module("import sys\n\nclass Quit:\n    def process_element(self, r, ctx):\n        sys.exit('bye')\n")
    write_jsonl(tmp_path / "in.jsonl", [{"k": i % 3} for i in range(20)])
    graph = plan_file(write_pipeline(tmp_path, f"""
        sources: {{src: {{type: file, path: in.jsonl}}}}
        transforms: {{f: {{input: src, key_by: k, process: "{mod}:Quit"}}}}
        sinks: {{out: {{input: f, type: blackhole}}}}
    """))
    result = run_graph(graph)
    assert result.state == "FAILED"
    # a process function is called by its operator, not by generated code: the executor names it
    assert "user code called sys.exit('bye') (SystemExit)" in str(result.error)


def test_an_endless_map_is_interrupted_by_the_watchdog(tmp_path: Path, udf_module) -> None:  # type: ignore[no-untyped-def]
    mod = udf_module("def spin(r):\n    while True:\n        pass\n")
    result = run_graph(_graph(tmp_path, f"{mod}:spin"), **{"task.watchdog.timeout": "300ms"})
    assert result.state == "FAILED"
    assert "held the taskmanager's event loop" in str(result.error)
    assert "in spin at" in str(result.error)
