"""The ``streamlet`` command (typer): thin wrappers that parse, load config and call one function.

Every error streamlet raises on purpose is printed as ``error: <message>`` with a non-zero exit
code, never as a traceback: 2 for bad input (pipeline, config), 1 for a job that failed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from streamlet.errors import FatalError, PipelineDefinitionError, StreamletError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="streamlet: a distributed stream processor (Flink's architecture, in Python).")

ConfigOpt = typer.Option(None, "--config", "-c", help="configuration file (YAML)")
FromSavepointOpt = typer.Option(None, "--from-savepoint", "-s",
                                help="restore from this savepoint or retained checkpoint (its directory or _metadata "
                                     "file; with submit, a path the JobManager can read)")
AllowNonRestoredOpt = typer.Option(False, "--allow-non-restored-state", "-n",
                                   help="drop savepoint state of operators the pipeline does not have")
DefineOpt = typer.Option(None, "-D", help="config override key=value (repeatable)")
LogFormatOpt = typer.Option(None, "--log-format", help="log lines as text or json (one object per line); "
                                                        "as -D log.format=...")
SetOpt = typer.Option(None, "--set", help="pipeline variable NAME=VALUE for ${NAME} in the YAML (repeatable; "
                                          "overrides the environment)")


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (PipelineDefinitionError, FatalError) as exc:
        code = 1 if type(exc).__name__ in ("JobFailedError", "UserFunctionError") else 2
        _fail(str(exc), code)
    except StreamletError as exc:
        _fail(str(exc), 1)


def _config(config: Optional[Path], define: Optional[List[str]], log_format: Optional[str] = None) -> Any:
    from streamlet import config as cfg

    overrides = cfg.parse_overrides(define or [])
    if log_format is not None:
        overrides["log.format"] = log_format
    return cfg.load(config, overrides)


def _variables(sets: Optional[List[str]]) -> dict[str, str]:
    """Pipeline variables: the environment, overridden by ``--set NAME=VALUE``."""
    import os

    from streamlet.api.yaml.variables import parse_sets

    return {**os.environ, **parse_sets(sets)}


def _plan(pipeline: Path, conf: Any, parallelism: Optional[int], sets: Optional[List[str]] = None) -> Any:
    from streamlet.api.limits import PipelineLimits
    from streamlet.api.planner import plan
    from streamlet.api.yaml.loader import load

    limits = PipelineLimits.from_config(conf)
    pdef = load(pipeline, limits, variables=_variables(sets))
    return plan(pdef, default_parallelism=conf["parallelism.default"],
                max_parallelism=conf["pipeline.max-parallelism"], batch_size=conf["pipeline.batch-size"],
                parallelism_override=parallelism, limits=limits)


@app.command()
def validate(pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
             parallelism: Optional[int] = typer.Option(None, "--parallelism", "-p", min=1),
             config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt,
             sets: Optional[List[str]] = SetOpt) -> None:
    """Parse and plan a pipeline; print the JobGraph (vertices, parallelism, partitioners)."""
    from streamlet.graph.render import render_text

    def go() -> None:
        graph = _plan(pipeline, _config(config, define), parallelism, sets)
        typer.echo(render_text(graph))

    _guard(go)


@app.command()
def run(pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
        parallelism: Optional[int] = typer.Option(None, "--parallelism", "-p", min=1,
                                                  help="default parallelism of nodes that set none"),
        taskmanagers: Optional[int] = typer.Option(None, "--taskmanagers", min=1,
                                                   help="run on N TaskManager processes instead of in-process"),
        rest_port: Optional[int] = typer.Option(None, "--rest-port", min=0, max=65535,
                                                help="serve the REST API and dashboard on this port while the job "
                                                     "runs (as -D rest.port=P; 0 picks a free port)"),
        config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt,
        sets: Optional[List[str]] = SetOpt, log_format: Optional[str] = LogFormatOpt,
        from_savepoint: Optional[str] = FromSavepointOpt,
        allow_non_restored_state: bool = AllowNonRestoredOpt) -> None:
    """Run a pipeline on an embedded mini-cluster until it ends (Ctrl-C cancels)."""
    from streamlet.client.progress import LiveConsole, make_reporter, summary

    def go() -> None:
        conf = _config(config, define, log_format)
        if "log.format" in conf.explicit or "log.level" in conf.explicit:
            from streamlet.logging import configure_logging

            configure_logging(conf["log.level"], conf["log.format"])
        if rest_port is not None:
            conf = conf.with_overrides({"rest.port": rest_port})
        graph = _plan(pipeline, conf, parallelism, sets)
        is_tty = sys.stderr.isatty()
        reporter = make_reporter(is_tty)
        console = reporter if isinstance(reporter, LiveConsole) else None
        from streamlet.runtime.minicluster import execute

        def started(cluster: Any, job_id: str) -> None:
            if cluster.rest_port is not None:
                typer.echo(f"REST API and dashboard: http://{conf['rest.address']}:{cluster.rest_port}/ "
                           f"(job {job_id})", err=True)

        result = execute(graph, conf, taskmanagers=taskmanagers or 0, on_progress=reporter.update,
                         progress_interval=0.5 if is_tty else None, console=console,
                         rest="rest.port" in conf.explicit, on_started=started, savepoint_path=from_savepoint,
                         allow_non_restored_state=allow_non_restored_state)
        typer.echo(summary(result), err=True)
        if result.state != "FINISHED":
            _fail(f"job {result.job_name!r} {result.state}: {result.error}", 1)

    try:
        _guard(go)
    except KeyboardInterrupt:
        _fail("cancelled", 130)


@app.command("config")
def show_config(config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt,
                defaults: bool = typer.Option(False, "--defaults", help="print the defaults (configs/streamlet.yaml)")) -> None:
    """Print the effective configuration (every key, with its doc)."""
    from streamlet import config as cfg

    _guard(lambda: typer.echo(cfg.render_yaml(None if defaults else _config(config, define), hide_secrets=True)))


# -- cluster verbs: daemons and the REST client --------------------------------------------------

JobManagerOpt = typer.Option(None, "--jobmanager", "-m",
                             help="REST address of the jobmanager (URL or host:port; default: rest.address:rest.port)")


def _client(conf: Any, jobmanager: Optional[str]) -> Any:
    from streamlet.client.rest import RestClient
    from streamlet.rpc.tls import rest_client_context

    address = jobmanager or f"{conf['rest.address']}:{conf['rest.port']}"
    return RestClient(address, conf["security.auth.token"], ssl_context=rest_client_context(conf))


def _rest_guard(fn: Callable[[], Any]) -> Any:
    from streamlet.client.rest import RestError

    def go() -> Any:
        try:
            return fn()
        except RestError as exc:
            # 4xx: the request was wrong (unknown job id, invalid pipeline): exit 2 like bad input
            _fail(f"the jobmanager answered {exc.status}: {exc}", 2 if exc.status < 500 else 1)

    return _guard(go)


@app.command()
def jobmanager(config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt,
               log_format: Optional[str] = LogFormatOpt) -> None:
    """Start the JobManager: REST API on rest.port, RPC for TaskManagers on jobmanager.rpc.port."""
    from streamlet.runtime.jobmanager.process import run_jobmanager

    code = _guard(lambda: run_jobmanager(_config(config, define, log_format)))
    raise typer.Exit(code or 0)


@app.command()
def taskmanager(jobmanager: Optional[str] = typer.Option(
                    None, "--jobmanager", "-m",
                    help="RPC address HOST:PORT of the jobmanager "
                         "(default: jobmanager.rpc.address:jobmanager.rpc.port)"),
                slots: Optional[int] = typer.Option(None, "--slots", "-s", min=1,
                                                    help="slots offered (default: taskmanager.numberOfTaskSlots)"),
                config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt,
                log_format: Optional[str] = LogFormatOpt) -> None:
    """Start a TaskManager that registers with the JobManager (retrying until it is up) and runs subtasks."""
    from streamlet.runtime.taskmanager.process import run_taskmanager

    def go() -> int:
        conf = _config(config, define, log_format)
        address = jobmanager or f"{conf['jobmanager.rpc.address']}:{conf['jobmanager.rpc.port']}"
        return run_taskmanager(conf, address, slots)

    raise typer.Exit(_guard(go) or 0)


@app.command()
def submit(pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
           jobmanager: Optional[str] = JobManagerOpt,
           file: Optional[List[Path]] = typer.Option(None, "--file", "-f",
                                                     help="Python file the pipeline's import paths need (repeatable)"),
           parallelism: Optional[int] = typer.Option(None, "--parallelism", "-p", min=1),
           config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt,
           sets: Optional[List[str]] = SetOpt,
           from_savepoint: Optional[str] = FromSavepointOpt,
           allow_non_restored_state: bool = AllowNonRestoredOpt) -> None:
    """Submit a pipeline to a running JobManager; prints the job id.

    ``${NAME}`` variables are resolved here, from this shell's environment and ``--set``.
    """
    from streamlet.api.yaml.loader import read_pipeline_text
    from streamlet.api.yaml.variables import resolve_text

    def go() -> None:
        conf = _config(config, define)
        for p in [pipeline, *(file or [])]:
            if not p.is_file():
                raise PipelineDefinitionError(f"file {str(p)!r} does not exist; check the path")
        from streamlet.api.limits import PipelineLimits

        limits = PipelineLimits.from_config(conf)
        text = resolve_text(read_pipeline_text(pipeline, limits), _variables(sets), pipeline.name, limits)
        job_id = _client(conf, jobmanager).submit_yaml(pipeline, list(file or []), parallelism, text=text,
                                                       savepoint_path=from_savepoint,
                                                       allow_non_restored_state=allow_non_restored_state)
        typer.echo(f"Job has been submitted with JobID {job_id}")

    _rest_guard(go)


OutputOpt = typer.Option("table", "--output", "-o", help="table (for people) or json (for scripts)")


def _output(value: str) -> str:
    if value not in ("table", "json"):
        _fail(f"--output {value!r} is not supported; use table or json", 2)
    return value


@app.command("list")
def list_jobs(jobmanager: Optional[str] = JobManagerOpt, output: str = OutputOpt,
              config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt) -> None:
    """List the jobs of a JobManager: id, state, name, start time."""
    import datetime
    import json

    fmt = _output(output)

    def go() -> None:
        jobs = _client(_config(config, define), jobmanager).jobs_overview()
        if fmt == "json":
            typer.echo(json.dumps(sorted(jobs, key=lambda j: j["start-time"]), indent=2))
            return
        if not jobs:
            typer.echo("No jobs.")
            return
        typer.echo(f"{'JOB ID':<32}  {'STATE':<12}  {'START TIME':<19}  NAME")
        for j in sorted(jobs, key=lambda j: j["start-time"]):
            start = datetime.datetime.fromtimestamp(j["start-time"] / 1000).strftime("%Y-%m-%d %H:%M:%S")
            typer.echo(f"{j['jid']:<32}  {j['state']:<12}  {start:<19}  {j['name']}")

    _rest_guard(go)


@app.command()
def status(job: str = typer.Argument(..., help="job id"), jobmanager: Optional[str] = JobManagerOpt,
           output: str = OutputOpt,
           as_json: bool = typer.Option(False, "--json", help="the same as --output json"),
           watch: bool = typer.Option(False, "--watch", "-w", help="redraw every --interval until the job ends"),
           interval: float = typer.Option(2.0, "--interval", min=0.1, help="seconds between redraws with --watch"),
           config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt) -> None:
    """Show a job: state, and per vertex records in/out, rates, busy/back pressure, watermark; its failure cause."""
    import json
    import time

    from streamlet.client.status import job_status, render_status

    fmt = "json" if as_json else _output(output)

    def go() -> None:
        client = _client(_config(config, define), jobmanager)
        while True:
            st = job_status(client, job)
            if fmt == "json":
                typer.echo(json.dumps(st, indent=2))
            else:
                if watch and sys.stdout.isatty():
                    typer.echo("\x1b[H\x1b[2J", nl=False)  # home + clear: redraw in place
                typer.echo(render_status(st))
            if not watch or st["state"] in ("FINISHED", "FAILED", "CANCELED", "SUSPENDED"):
                return
            time.sleep(interval)

    try:
        _rest_guard(go)
    except KeyboardInterrupt:
        raise typer.Exit(0)


@app.command()
def state(job: str = typer.Argument(..., help="job id"), node: str = typer.Argument(..., help="keyed node id"),
          key: str = typer.Argument(..., help="the key: JSON (42, '\"42\"', '[1, \"a\"]') or plain text"),
          jobmanager: Optional[str] = JobManagerOpt, output: str = OutputOpt,
          config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt) -> None:
    """Print the live (not yet checkpointed) state of a keyed node for one key (queryable state)."""
    import json

    fmt = _output(output)

    def go() -> None:
        answer = _client(_config(config, define), jobmanager).state(job, node, key)
        if fmt == "json":
            typer.echo(json.dumps(answer, indent=2))
            return
        entries = answer["states"]
        if not entries:
            typer.echo(f"no state for key {key} in node {node} ({answer['subtask']}, key group {answer['key-group']})")
            raise typer.Exit(1)
        for e in entries:
            ns = "" if e["namespace"] is None else f" {json.dumps(e['namespace'])}"
            typer.echo(f"{e['name']}{ns}: {json.dumps(e['value'])}")

    _rest_guard(go)


@app.command()
def cancel(job: str = typer.Argument(..., help="job id"), jobmanager: Optional[str] = JobManagerOpt,
           config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt) -> None:
    """Cancel a job (every subtask is stopped and its slots freed)."""

    def go() -> None:
        _client(_config(config, define), jobmanager).cancel(job)
        typer.echo(f"Cancelled job {job}.")

    _rest_guard(go)


@app.command()
def savepoint(job: str = typer.Argument(..., help="job id"),
              target: Optional[str] = typer.Argument(None, help="target directory (default: "
                                                     "execution.checkpointing.savepoint-dir of the JobManager)"),
              jobmanager: Optional[str] = JobManagerOpt, config: Optional[Path] = ConfigOpt,
              define: Optional[List[str]] = DefineOpt) -> None:
    """Take a savepoint of a running job; prints its path (for run/submit --from-savepoint)."""

    def go() -> None:
        location = _client(_config(config, define), jobmanager).savepoint(job, target)
        typer.echo(f"Savepoint completed. Path: {location}")

    _rest_guard(go)


@app.command()
def stop(job: str = typer.Argument(..., help="job id"),
         savepoint_dir: Optional[str] = typer.Option(None, "--savepoint-dir", "-p",
                                                     help="target directory of the savepoint (default: "
                                                          "execution.checkpointing.savepoint-dir)"),
         drain: bool = typer.Option(False, "--drain", "-d",
                                    help="end the sources' input after the savepoint, so windows fire (for a "
                                         "job that will not be resumed)"),
         jobmanager: Optional[str] = JobManagerOpt, config: Optional[Path] = ConfigOpt,
         define: Optional[List[str]] = DefineOpt) -> None:
    """Stop a job with a savepoint; the job ends FINISHED; prints the savepoint's path."""

    def go() -> None:
        location = _client(_config(config, define), jobmanager).stop(job, savepoint_dir, drain)
        typer.echo(f"Savepoint completed. Path: {location}")

    _rest_guard(go)
