"""The real ``streamlet`` console script, run as a subprocess: validate, run, config, and clear
errors (a message naming the file, the node id and the key; a non-zero exit; no traceback)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from tests.support.pipelines import canonical, read_output, read_parts, write_jsonl

_NEXT_TO_PYTHON = Path(sys.executable).parent / "streamlet"
STREAMLET = str(_NEXT_TO_PYTHON) if _NEXT_TO_PYTHON.exists() else shutil.which("streamlet")

RECORDS = [{"id": i, "user": f"u{i % 7}", "value": i % 10} for i in range(300)]


def streamlet(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert STREAMLET, "the streamlet console script is not installed (pip install -e .)"
    full = {**os.environ, **(env or {})}
    return subprocess.run([STREAMLET, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in full.items() if v is not None})  # None: unset


def failed_cleanly(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The ``error: ...`` message (the last thing on stderr) of a run that failed without a traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    head, sep, message = ("\n" + proc.stderr).rpartition("\nerror: ")
    assert sep, proc.stderr
    return "error: " + message


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "records.jsonl", RECORDS)
    return tmp_path


def pipeline(workdir: Path, text: str, name: str = "job.yaml") -> Path:
    path = workdir / name
    path.write_text(textwrap.dedent(text))
    return path


KEYED = """
    name: totals
    mode: batch
    sources: {src: {type: file, path: records.jsonl}}
    transforms:
      doubled: {input: src, map: "dict(r, value=r['value'] * 2)"}
      totals: {input: doubled, key_by: user, aggregate: {n: count, total: {sum: value}}}
    sinks: {out: {input: totals, type: file, path: out}}
"""


def expected_totals() -> list[dict[str, object]]:
    users = sorted({r["user"] for r in RECORDS})
    return [{"user": u, "n": sum(1 for r in RECORDS if r["user"] == u),
             "total": sum(r["value"] * 2 for r in RECORDS if r["user"] == u)} for u in users]


def test_validate_prints_the_plan(workdir: Path) -> None:
    pipeline(workdir, KEYED)
    proc = streamlet("validate", "job.yaml", "--parallelism", "2", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "job 'totals': mode batch, max_parallelism 128, 2 vertices, needs 2 slot(s)"
    assert "[1] src -> doubled  parallelism=2" in proc.stdout
    assert "[2] totals -> out  parallelism=2" in proc.stdout
    assert "--hash(user)--> [2] totals -> out" in proc.stdout
    assert not (workdir / "out").exists(), "validate must not run the job"


def test_validate_shows_rebalance_and_forward(workdir: Path) -> None:
    pipeline(workdir, """
        sources: {src: {type: file, path: records.jsonl, parallelism: 1}}
        transforms:
          m: {input: src, map: "r", parallelism: 3}
          b: {input: m, filter: "True", partition: broadcast}
        sinks: {out: {input: b, type: blackhole}}
    """)
    proc = streamlet("validate", "job.yaml", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "--rebalance--> [2] m" in proc.stdout
    assert "--broadcast--> [3] b -> out" in proc.stdout
    assert "[2] m  parallelism=3" in proc.stdout


def test_run_writes_the_right_output(workdir: Path) -> None:
    pipeline(workdir, KEYED)
    proc = streamlet("run", "job.yaml", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "job 'totals' FINISHED" in proc.stderr
    assert sorted(read_output(workdir / "out"), key=lambda r: r["user"]) == expected_totals()


def test_run_with_parallelism_2(workdir: Path) -> None:
    pipeline(workdir, KEYED)
    proc = streamlet("run", str(workdir / "job.yaml"), "--parallelism", "2", cwd=workdir.parent)
    assert proc.returncode == 0, proc.stderr
    assert "(x2)" in proc.stderr
    assert sorted(read_parts(workdir / "out")) == [0, 1]
    assert canonical(read_output(workdir / "out")) == canonical(expected_totals())


def test_run_print_sink_writes_json_lines_to_stdout(workdir: Path) -> None:
    pipeline(workdir, """
        sources: {src: {type: file, path: records.jsonl}}
        transforms: {small: {input: src, filter: "r['id'] < 5"}}
        sinks: {out: {input: small, type: print}}
    """)
    proc = streamlet("run", "job.yaml", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert [orjson.loads(line) for line in proc.stdout.splitlines()] == RECORDS[:5]


def test_config_prints_the_effective_configuration(workdir: Path) -> None:
    proc = streamlet("config", "-D", "rest.port=9999", cwd=workdir, env={"STREAMLET__PARALLELISM__DEFAULT": "3"})
    assert proc.returncode == 0, proc.stderr
    assert "\nrest.port: 9999\n" in proc.stdout
    assert "\nparallelism.default: 3\n" in proc.stdout
    assert "# port of the REST API and dashboard\n" in proc.stdout
    proc = streamlet("config", "--defaults", cwd=workdir)
    assert proc.returncode == 0 and "\nrest.port: 8081\n" in proc.stdout
    msg = failed_cleanly(streamlet("config", "-D", "rest.prot=1", cwd=workdir))
    assert "did you mean 'rest.port'" in msg


def test_config_file_and_overrides_apply_to_run(workdir: Path) -> None:
    pipeline(workdir, KEYED.replace("name: totals", "name: totals"))
    (workdir / "conf.yaml").write_text("parallelism.default: 2\n")
    proc = streamlet("validate", "job.yaml", "--config", "conf.yaml", cwd=workdir)
    assert "parallelism=2" in proc.stdout and "parallelism=1" not in proc.stdout
    proc = streamlet("validate", "job.yaml", "--config", "conf.yaml", "-D", "parallelism.default=3", cwd=workdir)
    assert "parallelism=3" in proc.stdout


def test_variables_from_the_environment_and_set(workdir: Path) -> None:
    pipeline(workdir, KEYED.replace("path: out}", 'path: "${OUT_DIR:-out}"}').replace(
        "mode: batch", "mode: batch\n    parallelism: ${PAR}"))
    msg = failed_cleanly(streamlet("validate", "job.yaml", cwd=workdir, env={"PAR": ""}))
    assert msg.startswith("error: job.yaml: parallelism: expected a positive integer, got ''"), msg
    proc = streamlet("validate", "job.yaml", cwd=workdir, env={"PAR": "2"})
    assert proc.returncode == 0 and "parallelism=2" in proc.stdout, proc.stderr
    proc = streamlet("validate", "job.yaml", "--set", "PAR=3", cwd=workdir, env={"PAR": "2"})  # --set wins
    assert proc.returncode == 0 and "parallelism=3" in proc.stdout, proc.stderr
    proc = streamlet("run", "job.yaml", "--set", "PAR=1", "--set", "OUT_DIR=elsewhere", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert sorted(read_output(workdir / "elsewhere"), key=lambda r: r["user"]) == expected_totals()
    assert not (workdir / "out").exists()
    msg = failed_cleanly(streamlet("run", "job.yaml", cwd=workdir, env={"PAR": None}))  # type: ignore[dict-item]
    assert "job.yaml: parallelism: variable 'PAR' is not set" in msg and "--set PAR=VALUE" in msg
    msg = failed_cleanly(streamlet("run", "job.yaml", "--set", "PAR", cwd=workdir))
    assert "--set 'PAR': expected NAME=VALUE" in msg


BAD_PIPELINES = {
    "malformed YAML": ("sources:\n  src: {type: file, path: records.jsonl\nsinks: {}\n",
                       ["bad.yaml", "malformed YAML at line 3"]),
    "unknown key": ("sources: {src: {type: file, path: records.jsonl}}\n"
                    "transforms: {m: {input: src, mapp: 'r'}}\nsinks: {out: {input: m, type: blackhole}}\n",
                    ["bad.yaml: transforms.m.mapp:", "did you mean 'map'?"]),
    "unknown connector key": ("sources: {src: {type: file, paht: records.jsonl}}\n"
                              "sinks: {out: {input: src, type: blackhole}}\n",
                              ["bad.yaml: sources.src.paht:", "did you mean 'path'?"]),
    "missing input id": ("sources: {src: {type: file, path: records.jsonl}}\n"
                         "transforms: {m: {input: srcs, map: 'r'}}\nsinks: {out: {input: m, type: blackhole}}\n",
                         ["bad.yaml: transforms.m.input:", "unknown input 'srcs'", "did you mean 'src'?"]),
    "cycle": ("sources: {src: {type: file, path: records.jsonl}}\n"
              "transforms:\n  a: {union: [src, b]}\n  b: {input: a, map: 'r'}\n"
              "sinks: {out: {input: b, type: blackhole}}\n",
              ["bad.yaml: transforms.b.input:", "cycle a -> b -> a"]),
    "duplicate id": ("sources: {src: {type: file, path: records.jsonl}}\n"
                     "transforms: {src: {input: src, map: 'r'}}\nsinks: {out: {input: src, type: blackhole}}\n",
                     ["bad.yaml: transforms.src:", "duplicate id 'src'"]),
    "duplicate id in one section": ("sources: {src: {type: file, path: records.jsonl}}\n"
                                    "transforms:\n  m: {input: src, map: 'r'}\n  m: {input: src, map: 'r'}\n"
                                    "sinks: {out: {input: m, type: blackhole}}\n",
                                    ["bad.yaml:", "duplicate key 'm' (line 4)"]),
    "expression does not compile": ("sources: {src: {type: file, path: records.jsonl}}\n"
                                    "transforms: {m: {input: src, map: \"dict(r, x=)\"}}\n"
                                    "sinks: {out: {input: m, type: blackhole}}\n",
                                    ["bad.yaml: transforms.m.map:", "does not compile"]),
    "import path does not resolve": ("sources: {src: {type: file, path: records.jsonl}}\n"
                                     "transforms: {m: {input: src, map: 'no_such_module_zz:fn'}}\n"
                                     "sinks: {out: {input: m, type: blackhole}}\n",
                                     ["bad.yaml: transforms.m.map:", "cannot import 'no_such_module_zz:fn'"]),
    "missing input file": ("sources: {src: {type: file, path: nowhere.jsonl}}\n"
                           "sinks: {out: {input: src, type: blackhole}}\n",
                           ["bad.yaml: sources.src.path:", "'nowhere.jsonl' does not exist"]),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", list(BAD_PIPELINES))
def test_bad_pipelines_fail_cleanly(workdir: Path, command: str, case: str) -> None:
    text, words = BAD_PIPELINES[case]
    (workdir / "bad.yaml").write_text(text)
    proc = streamlet(command, "bad.yaml", cwd=workdir)
    msg = failed_cleanly(proc)
    for w in words:
        assert w in msg, msg
    assert proc.stderr == msg and len(msg.splitlines()) == 1, proc.stderr


def test_missing_pipeline_file(workdir: Path) -> None:
    msg = failed_cleanly(streamlet("run", "nothing-here.yaml", cwd=workdir))
    assert "pipeline file 'nothing-here.yaml' does not exist" in msg


def test_a_raising_user_function_fails_the_job(workdir: Path) -> None:
    pipeline(workdir, """
        sources: {src: {type: file, path: records.jsonl}}
        transforms:
          ratio: {input: src, map: "dict(r, ratio=100 / (r['id'] - 42))"}
        sinks: {out: {input: ratio, type: file, path: out}}
    """)
    proc = streamlet("run", "job.yaml", cwd=workdir)
    msg = failed_cleanly(proc, code=1)
    assert "job 'job' FAILED" in proc.stderr
    assert "node 'ratio'" in msg
    assert "ZeroDivisionError: division by zero" in msg
    assert repr(RECORDS[42]) in msg


def test_a_raising_import_path_function_fails_the_job(workdir: Path) -> None:
    (workdir / "cli_udfs.py").write_text("def parse(r):\n    return int(r['user'])\n")
    pipeline(workdir, """
        sources: {src: {type: file, path: records.jsonl}}
        transforms: {parsed: {input: src, map: "cli_udfs:parse"}}
        sinks: {out: {input: parsed, type: blackhole}}
    """)
    msg = failed_cleanly(streamlet("run", "job.yaml", "-p", "2", cwd=workdir), code=1)
    assert "node 'parsed'" in msg and "ValueError" in msg and "'user': 'u" in msg


def test_ctrl_c_cancels_without_a_traceback(workdir: Path) -> None:
    pipeline(workdir, """
        sources: {numbers: {type: datagen, rate: 2000, fields: {id: {kind: sequence}}}}
        sinks: {out: {input: numbers, type: blackhole}}
    """)
    proc = subprocess.Popen([STREAMLET, "run", "job.yaml", "-D", "execution.progress-interval=50ms"], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # the first progress line says the job is running
        deadline = time.monotonic() + 30
        line = proc.stderr.readline()
        while not line.startswith("[") and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        assert line.startswith("["), line
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.rstrip().endswith("error: cancelled")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, method: str = "GET") -> tuple[int, object]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback test server
            return resp.status, orjson.loads(resp.read() or b"null")
    except urllib.error.URLError as exc:
        return -1, str(exc)


ENDLESS = """
    name: endless
    sources: {numbers: {type: datagen, rate: 500, fields: {id: {kind: sequence}}}}
    sinks: {out: {input: numbers, type: blackhole}}
"""


@pytest.mark.parametrize("how", ["--rest-port", "-D"])
def test_run_serves_the_rest_api_and_a_cancel_through_it_ends_the_run(workdir: Path, how: str) -> None:
    pipeline(workdir, ENDLESS)
    port = _free_port()
    flag = ["--rest-port", str(port)] if how == "--rest-port" else ["-D", f"rest.port={port}"]
    proc = subprocess.Popen([STREAMLET, "run", "job.yaml", *flag], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        jobs: list = []
        while time.monotonic() < deadline and proc.poll() is None:
            status, body = _get(f"{base}/jobs/overview")
            if status == 200 and body["jobs"] and body["jobs"][0]["state"] == "RUNNING":  # type: ignore[index]
                jobs = body["jobs"]  # type: ignore[index]
                break
            time.sleep(0.05)  # polling a server in another process: nothing here can signal us
        assert jobs and jobs[0]["name"] == "endless", (jobs, proc.poll())
        assert _get(f"{base}/overview")[1]["taskmanagers"] == 1  # type: ignore[index]
        status, body = _get(f"{base}/jobs/{jobs[0]['jid']}?mode=cancel", "PATCH")
        assert (status, body) == (202, {})
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert f"REST API and dashboard: http://127.0.0.1:{port}/" in err
    assert err.rstrip().splitlines()[-1].startswith("error: job 'endless' CANCELED")


def test_run_without_a_rest_port_listens_on_nothing(workdir: Path) -> None:
    psutil = pytest.importorskip("psutil")
    pipeline(workdir, ENDLESS)
    proc = subprocess.Popen([STREAMLET, "run", "job.yaml", "-D", "execution.progress-interval=50ms"], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stderr.readline()
        while not line.startswith("[") and proc.poll() is None:
            line = proc.stderr.readline()
        assert line.startswith("["), line  # running
        listening = [c for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == "LISTEN"]
        assert listening == []
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)


def test_run_on_taskmanagers_prints_an_error_once_on_its_own_line(workdir: Path) -> None:
    pipeline(workdir, """
        sources: {src: {type: file, path: records.jsonl}}
        transforms: {bad: {input: src, map: "r['missing']"}}
        sinks: {out: {input: bad, type: blackhole}}
    """)
    proc = streamlet("run", "job.yaml", "--taskmanagers", "2", "-p", "2", cwd=workdir)
    message = failed_cleanly(proc, 1)
    assert message.count("KeyError") == 1, proc.stderr
    assert proc.stderr.count("error: ") == 1, proc.stderr
    assert "node 'bad': user function raised KeyError: 'missing'" in message
    # and a pipeline that does not validate says so once, before any process starts
    pipeline(workdir, "sources: {src: {type: nope}}\nsinks: {o: {input: src, type: blackhole}}\n", "bad.yaml")
    proc = streamlet("run", "bad.yaml", "--taskmanagers", "2", cwd=workdir)
    message = failed_cleanly(proc, 2)
    assert proc.stderr.count("error: ") == 1 and "unknown source type 'nope'" in message, proc.stderr
