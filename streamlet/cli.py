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
DefineOpt = typer.Option(None, "-D", help="config override key=value (repeatable)")


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


def _config(config: Optional[Path], define: Optional[List[str]]) -> Any:
    from streamlet import config as cfg

    return cfg.load(config, cfg.parse_overrides(define or []))


def _plan(pipeline: Path, conf: Any, parallelism: Optional[int]) -> Any:
    from streamlet.api.planner import plan
    from streamlet.api.yaml.loader import load

    pdef = load(pipeline)
    for key in pdef.unimplemented:
        typer.echo(f"warning: {pipeline.name}: {key}: not implemented in this version; ignored", err=True)
    return plan(pdef, default_parallelism=conf["parallelism.default"],
                max_parallelism=conf["pipeline.max-parallelism"], batch_size=conf["pipeline.batch-size"],
                parallelism_override=parallelism)


@app.command()
def validate(pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
             parallelism: Optional[int] = typer.Option(None, "--parallelism", "-p", min=1),
             config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt) -> None:
    """Parse and plan a pipeline; print the JobGraph (vertices, parallelism, partitioners)."""
    from streamlet.graph.render import render_text

    def go() -> None:
        graph = _plan(pipeline, _config(config, define), parallelism)
        typer.echo(render_text(graph))

    _guard(go)


@app.command()
def run(pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
        parallelism: Optional[int] = typer.Option(None, "--parallelism", "-p", min=1,
                                                  help="default parallelism of nodes that set none"),
        taskmanagers: Optional[int] = typer.Option(None, "--taskmanagers", min=1,
                                                   help="run on N TaskManager processes instead of in-process"),
        config: Optional[Path] = ConfigOpt, define: Optional[List[str]] = DefineOpt) -> None:
    """Run a pipeline on an embedded mini-cluster until it ends (Ctrl-C cancels)."""
    from streamlet.client.progress import LiveConsole, make_reporter, summary

    def go() -> None:
        conf = _config(config, define)
        graph = _plan(pipeline, conf, parallelism)
        is_tty = sys.stderr.isatty()
        reporter = make_reporter(is_tty)
        console = reporter if isinstance(reporter, LiveConsole) else None
        if taskmanagers:
            from streamlet.runtime.minicluster import run_cluster

            result = run_cluster(graph, conf, taskmanagers, on_progress=reporter.update)
        else:
            from streamlet.runtime.minicluster import run_local

            result = run_local(graph, conf, on_progress=reporter.update, console=console,
                               progress_interval=0.5 if is_tty else None)
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

    _guard(lambda: typer.echo(cfg.render_yaml(None if defaults else _config(config, define))))
