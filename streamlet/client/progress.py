"""Progress display of ``streamlet run``.

On a terminal: a live block (records in/out and records/s per vertex, elapsed time, the fraction
read of bounded file sources) redrawn in place on stderr; lines printed by a ``print`` sink go
through :class:`LiveConsole` so they scroll above the block.  Off a terminal: a plain log line
every few seconds.  Both end with the same summary.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from streamlet.client.results import JobResult, Progress


def _num(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}G"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def _bar(fraction: float | None, width: int = 12) -> str:
    if fraction is None:
        return ""
    full = int(fraction * width)
    return f" [{'#' * full}{'.' * (width - full)}] {fraction * 100:5.1f}%"


def render_lines(p: Progress) -> list[str]:
    """The live block's lines."""
    head = f"{p.job_name}: {'finished' if p.final else 'running'} {p.elapsed:7.1f}s"
    lines = [head]
    width = max((len(v.name) for v in p.vertices), default=10)
    width = min(width, 48)
    for v in p.vertices:
        name = v.name if len(v.name) <= width else v.name[: width - 3] + "..."
        lines.append(
            f"  {name:<{width}} x{v.parallelism:<2} in {_num(v.records_in):>8} ({_num(v.rate_in):>7}/s)  "
            f"out {_num(v.records_out):>8} ({_num(v.rate_out):>7}/s)  busy {v.busy * 100:3.0f}% "
            f"bp {v.backpressured * 100:3.0f}%{_bar(v.fraction)}")
    return lines


class LiveConsole:
    """Redraws the progress block in place; ``write`` prints text above it."""

    def __init__(self, stream: IO[str] | None = None, out: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self._drawn = 0
        self._last: list[str] = []

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        for line in self._last:
            self.stream.write(line + "\n")
        self._drawn = len(self._last)
        self.stream.flush()

    def update(self, p: Progress) -> None:
        self._clear()
        self._last = render_lines(p)
        self._draw()

    def write(self, text: str) -> None:
        self._clear()
        self.stream.flush()
        self.out.write(text)
        self.out.flush()
        self._draw()


class PlainReporter:
    """One log line per report, for pipes and CI logs."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def update(self, p: Progress) -> None:
        if p.final:
            return
        parts = [f"{v.name}: in={v.records_in} out={v.records_out} ({v.rate_out:.0f}/s)"
                 + (f" read={v.fraction * 100:.1f}%" if v.fraction is not None else "") for v in p.vertices]
        self.stream.write(f"[{p.elapsed:.1f}s] " + "; ".join(parts) + "\n")
        self.stream.flush()


def _secs(s: float) -> str:
    return f"{s:.2f}s" if s >= 1 else f"{s * 1000:.1f}ms"


def summary(result: JobResult) -> str:
    """The final summary printed after a run."""
    lines = [f"job {result.job_name!r} {result.state} in {_secs(result.run_seconds)} "
             f"(start-up {_secs(result.startup_seconds)}), job id {result.job_id}"]
    for v in result.vertices:
        lines.append(f"  {v.name} (x{v.parallelism}): {v.records_in} in, {v.records_out} out, "
                     f"{_num(v.records_out / max(result.run_seconds, 1e-9))} records/s")
    return "\n".join(lines)


def make_reporter(is_tty: bool) -> Any:
    return LiveConsole() if is_tty else PlainReporter()
