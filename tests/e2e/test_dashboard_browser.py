"""The web dashboard in a real browser: Debian's headless Chromium (``/usr/bin/chromium``) driven by
playwright, against a real ``streamlet jobmanager`` and ``streamlet taskmanager``.

Chromium is installed with ``apt-get install -y chromium`` when it is missing (as root); the tests
are skipped, saying why, only when that is impossible.  Screenshots of every page are kept in
``$STREAMLET_SCREENSHOTS`` when it is set (CI keeps that directory as an artifact), else in the
test's temporary directory (the path is printed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.e2e.conftest import Cluster

CHROMIUM = "/usr/bin/chromium"
# fast flame graphs, and checkpoints the page can trigger
OPTIONS = ["-D", "rest.flamegraph.num-samples=20", "-D", "rest.flamegraph.delay-between-samples=20ms"]

PIPELINE = """name: browser-test
parallelism: 2
checkpointing: {interval: 1h}
sources:
  numbers: {type: datagen, rate: 400, fields: {n: {kind: sequence}, v: {kind: random, max: 100}}}
transforms:
  doubled: {input: numbers, map: "dict(r, v=r['v'] * 2)"}
  per_key: {input: doubled, key_by: "r['n'] % 10", aggregate: {count: count, total: {sum: v}}}
sinks:
  out: {input: per_key, type: blackhole}
"""
BROKEN = PIPELINE.replace("aggregate: {count: count, total: {sum: v}}", "aggregate: {count: count}, colour: red")


def _install_chromium() -> str | None:
    """None when /usr/bin/chromium is there (installed now if needed), else why it cannot be."""
    if os.path.exists(CHROMIUM):
        return None
    if shutil.which("apt-get") is None:
        return "no /usr/bin/chromium and no apt-get to install Debian's chromium package"
    if os.geteuid() != 0:
        return "no /usr/bin/chromium, and installing Debian's chromium package needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # another apt-get (a parallel test run, unattended upgrades) may hold dpkg's lock: wait for it
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    for cmd in (["apt-get", *wait, "update", "-q"], ["apt-get", *wait, "install", "-y", "-q", "chromium"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"could not install chromium ({' '.join(cmd)}): {exc}"
        if done.returncode != 0:
            return f"could not install chromium ({' '.join(cmd)}): {done.stderr.strip()[-400:]}"
    return None if os.path.exists(CHROMIUM) else "apt-get installed chromium but /usr/bin/chromium is missing"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: pip install -e .[dev]")
    why = _install_chromium()
    if why is not None:
        pytest.skip(why)
    with sync_api.sync_playwright() as p:
        # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    root = os.environ.get("STREAMLET_SCREENSHOTS")
    d = Path(root) if root else tmp_path / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots in {d}")
    return d


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def test_submit_watch_sample_checkpoint_and_cancel_in_a_browser(cluster: Cluster, browser: Any, shots: Path) -> None:
    cluster.jobmanager(*OPTIONS, "-D", f"execution.checkpointing.dir=file://{cluster.tmp}/checkpoints")
    cluster.taskmanager(2)
    base = f"http://127.0.0.1:{cluster.rest_port}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)

    # overview: the TaskManager with its slots, RSS and CPU load
    page.goto(base + "/")
    row = page.locator("#taskmanagers tr[data-tm]")
    row.wait_for()
    cells = row.locator("td")
    assert cells.nth(2).inner_text() == "0 / 2"
    page.wait_for_function("() => { const c = document.querySelectorAll('#taskmanagers tr[data-tm] td');"
                           " return c.length && c[4].innerText.endsWith('MiB') && c[5].innerText.endsWith('%'); }")
    page.screenshot(path=str(shots / "1-overview.png"), full_page=True)

    # submit page: errors inline (file, node, key), the plan drawn, then submitted
    page.goto(base + "/#/submit")
    page.locator("#valid").wait_for()
    page.fill("#filename", "browser.yaml")
    page.fill("#yaml", BROKEN)
    page.locator("#invalid").wait_for()
    problem = page.locator("#invalid .error").first
    assert problem.locator(".where").first.inner_text() == "browser.yaml"
    assert "node per_key" in problem.inner_text() and "colour" in problem.inner_text()
    assert page.locator("#btn-submit").is_disabled()
    page.screenshot(path=str(shots / "2-submit-invalid.png"), full_page=True)
    page.fill("#yaml", PIPELINE)
    page.locator("#valid").wait_for()
    page.locator("#plan svg .vertex").nth(1).wait_for()
    assert page.locator("#plan svg .vertex").count() == 2  # numbers+doubled chained, then per_key+out
    assert page.locator("#plan svg .edge-label").first.text_content() == "HASH"
    page.screenshot(path=str(shots / "3-submit-plan.png"), full_page=True)
    page.click("#btn-submit")
    page.wait_for_url(re.compile(r".*#/jobs/[0-9a-f]{32}$"))
    jid = page.url.rsplit("/", 1)[1]

    # job page: the graph, live numbers that change, back pressure colours
    vertices = page.locator("#graph svg .vertex")
    vertices.nth(1).wait_for()
    assert vertices.count() == 2
    page.wait_for_function("() => document.querySelector('#job-header h1 .badge')?.dataset.state === 'RUNNING'")
    first = vertices.nth(0)
    assert re.search(r"bp-(ok|low|high)", first.get_attribute("class") or "")
    assert "p=2" in (first.text_content() or "")
    # records out of the source vertex grow between two polls
    page.wait_for_function("() => /out [1-9]/.test(document.querySelector('#graph .vertex .vstat').textContent)")
    before = first.locator(".vstat").first.text_content() or ""
    page.wait_for_function(
        "(b) => document.querySelector('#graph .vertex .vstat').textContent !== b", arg=before, timeout=15000)
    after = first.locator(".vstat").first.text_content() or ""
    assert _numbers(after) != _numbers(before), (before, after)
    assert "watermark" in (page.locator("#graph .vertex").nth(1).text_content() or "")

    # a vertex's subtasks and its flame graph
    first.click()
    page.locator("#subtask-table tr[data-subtask]").nth(1).wait_for()
    assert page.locator("#subtask-table tr[data-subtask]").count() == 2
    page.click("#btn-flame")
    page.locator("#flame-graph svg.flamegraph").wait_for(timeout=30000)
    assert page.locator("#flame-graph svg .frame").count() > 3
    assert "sample(s)" in page.locator("#flame-status").inner_text()
    page.screenshot(path=str(shots / "4-job-running.png"), full_page=True)

    # trigger a checkpoint (confirmed), see it completed in the checkpoints section
    page.click("#btn-checkpoint")
    page.wait_for_function("() => /checkpoint completed/.test(document.querySelector('#action-message').textContent)",
                           timeout=30000)
    page.wait_for_function("() => document.querySelector('#checkpoints .cards .value')?.textContent === '1'",
                           timeout=15000)
    page.locator("#checkpoint-timeline tr").nth(1).wait_for()
    page.screenshot(path=str(shots / "5-job-checkpoint.png"), full_page=True)

    # cancel (confirmed): the job ends CANCELED, on the page and in the REST API
    page.click("#btn-cancel")
    page.wait_for_function("() => document.querySelector('#job-header h1 .badge')?.dataset.state === 'CANCELED'",
                           timeout=30000)
    assert cluster.job(jid)["state"] == "CANCELED"
    assert dialogs == ["Trigger a checkpoint now?", "Cancel this job?"]
    assert page.locator("#btn-cancel").is_disabled()
    page.screenshot(path=str(shots / "6-job-canceled.png"), full_page=True)
    assert errors == [], errors


def test_stop_with_savepoint_from_the_job_page(cluster: Cluster, browser: Any, shots: Path) -> None:
    cluster.jobmanager(*OPTIONS, "-D", f"execution.checkpointing.dir=file://{cluster.tmp}/checkpoints")
    cluster.taskmanager(2)
    jid = cluster.submit(PIPELINE)
    cluster.wait_state(jid, "RUNNING")
    target = cluster.tmp / "savepoints"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    prompts: list[str] = []

    def answer(dialog: Any) -> None:
        prompts.append(dialog.type)
        dialog.accept(str(target))  # the prompt asks for the savepoint directory

    page.on("dialog", answer)
    page.goto(f"http://127.0.0.1:{cluster.rest_port}/#/jobs/{jid}")
    page.locator("#graph svg .vertex").first.wait_for()
    page.click("#btn-stop")
    page.wait_for_function("() => /savepoint completed: /.test(document.querySelector('#action-message').textContent)",
                           timeout=30000)
    location = page.locator("#action-message").inner_text().split("completed: ", 1)[1]
    page.wait_for_function("() => document.querySelector('#job-header h1 .badge')?.dataset.state === 'FINISHED'",
                           timeout=30000)
    assert prompts == ["prompt"]
    assert cluster.job(jid)["state"] == "FINISHED"
    assert location.startswith(str(target)) or location.startswith("file://" + str(target)), location
    assert any(target.iterdir())
    page.screenshot(path=str(shots / "7-job-stopped-with-savepoint.png"), full_page=True)
