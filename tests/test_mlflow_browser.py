"""The MLflow UI as a person sees it, in a real browser (Debian's chromium, headless).

A finished `test`-profile run of fig5_9 (two cells), `repro report`, then `repro ui` on a free
loopback port: the experiment's link opens its Runs page (not MLflow 3's GenAI overview), shows
the description, the parent run, and, expanded, each cell's run by name with its metrics. The
screenshots are kept in test-artifacts/ (git-ignored). `make chromium` (part of `make setup`)
installs chromium where apt-get can; elsewhere this test skips and says so.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTIFACTS = REPO / "test-artifacts"
REPRO = [sys.executable, "-m", "repro.cli"]
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
          "--hide-scrollbars", "--window-size=1600,1000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_health(base: str, proc: subprocess.Popen, deadline_s: float = 300) -> None:
    """Poll /health until the server answers (a fresh store takes tens of seconds to migrate)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"repro ui exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"MLflow UI at {base} did not answer /health within {deadline_s} s")


def _chromium(args: list[str], profile: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=timeout)


# --- a few DevTools-protocol calls, to click the rows' expand buttons as a person would ----------

_ROWS_JS = """(() => { const rows = {};
  document.querySelectorAll('.ag-row').forEach(r => { const k = r.getAttribute('row-index');
    rows[k] = (rows[k] || '') + ' | ' + r.innerText.replace(/\\s+/g, ' '); });
  return Object.values(rows); })()"""
_EXPAND_JS = """(() => { const b = [...document.querySelectorAll('button[data-component-id*="runnamecellrenderer"]')];
  b.forEach(x => x.click()); return b.length; })()"""


_LINKS_JS = """Object.fromEntries([...document.querySelectorAll('a')].map(a => [a.innerText.trim(), a.href]))"""


async def _browse(url: str, profile: Path, parent: str, children: list[str], timeout: float = 180) -> dict:
    """Open the experiment's link, expand the parent run's row (its button, as a person clicks it),
    then follow each child's link to its run page: the texts and screenshots of what was shown."""
    import aiohttp

    proc = subprocess.Popen([CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json(content_type=None) if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = itertools.count(1)

                async def call(method: str, **params):
                    i = next(ids)
                    await ws.send_json({"id": i, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json()
                        if msg.get("id") == i:
                            if "error" in msg:
                                raise AssertionError(f"{method}: {msg['error']}")
                            return msg.get("result", {})

                async def evaluate(js: str):
                    return (await call("Runtime.evaluate", expression=js, returnByValue=True))["result"].get("value")

                async def until(*texts: str) -> str:
                    end = time.monotonic() + timeout
                    while time.monotonic() < end:
                        text = await evaluate("document.body ? document.body.innerText : ''") or ""
                        if all(t in text for t in texts):
                            return text
                        await asyncio.sleep(0.5)
                    raise AssertionError(f"{texts} did not appear within {timeout} s; page text: {text[:2000]}")

                async def screenshot() -> bytes:
                    await asyncio.sleep(1.0)   # let the last rows paint
                    return base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])

                await call("Page.enable")
                await call("Page.navigate", url=url)
                await until(parent)
                expanded = await evaluate(_EXPAND_JS)
                listing = await until(*children)
                out = {"listing": listing, "rows": await evaluate(_ROWS_JS), "expanded": expanded,
                       "listing_png": await screenshot(), "runs": {}}
                links = await evaluate(_LINKS_JS)
                for name in children:
                    await call("Page.navigate", url=links[name])
                    out["runs"][name] = {"url": links[name], "text": await until(name, "Metrics (", parent)}
                    out["runs"][name]["png"] = await screenshot()
                return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _shows(value: float, text: str) -> bool:
    """Whether some number in `text` is `value` as the UI rounds it (to that number's own digits)."""
    for tok in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text):
        decimals = len(tok.split(".")[1].split("e")[0]) if "." in tok else 0
        if "e" not in tok and decimals >= 2 and abs(float(tok) - value) <= 0.5 * 10 ** -decimals + 1e-12:
            return True
    return False


def test_experiment_page_shows_runs_by_name_with_metrics(workdir, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: `make chromium` installs Debian's package (needs root and "
                    "apt-get); without it the MLflow browser test cannot run")
    from mlflow.tracking import MlflowClient

    from repro import results
    from repro.engine.run import run_spec

    summary = run_spec("fig5_9", "test", device="cpu", progress=False, overrides={"grid.t": [0.0, 0.8]})
    assert sorted(summary.ran) == ["t=0", "t=0.8"]
    env = cli_env(workdir)
    rep = subprocess.run(REPRO + ["report", "fig5_9"], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=300)
    assert rep.returncode == 0, rep.stderr

    # What the store says (the UI shows it): kind, description, names, nesting, artifacts.
    client = MlflowClient()
    exp = client.get_experiment_by_name("fig5_9")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    note = exp.tags["mlflow.note.content"]
    assert "Figure 5.9" in note and "Section 5.4.3" in note and "Bachelor thesis, Heidelberg 2021" in note
    assert "No table of values is published" in note and "http" not in note
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.info.run_id == summary.mlflow_run_id)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "fig5_9-test"
    assert sorted(c.info.run_name for c in children) == ["fig5_9 t=0 [test]", "fig5_9 t=0.8 [test]"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {"report/fig5_9.md"}
    for c in children:
        assert any(a.path.endswith(".json") for a in client.list_artifacts(c.info.run_id))
    report = (workdir / "reports/fig5_9.md").read_text()
    assert f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning" in report

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen(REPRO + ["ui", "--port", str(port)], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        _wait_for_health(base, ui)
        printed = []
        while not any("fig5_9:" in ln for ln in printed):
            printed.append(ui.stdout.readline())
        assert printed[0].strip() == f"MLflow UI at {base}/#/experiments?workflowType=machine_learning"
        assert printed[1].strip() == f"store: sqlite:///{workdir / 'mlflow.db'}"
        url = next(ln.split(": ", 1)[1].strip() for ln in printed if ln.strip().startswith("fig5_9:"))
        assert url == f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"

        # 1. The page as loaded: chromium --dump-dom and --screenshot after a virtual-time budget.
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "mlflow_fig5_9_landing.png"
        profiles = tmp_path_factory.mktemp("chromium")
        dom = _chromium(["--virtual-time-budget=30000", "--dump-dom", url], profiles / "a").stdout
        _chromium(["--virtual-time-budget=30000", f"--screenshot={shot}", url], profiles / "b")
        assert "fig5_9-test" in dom, "the parent run is not on the experiment's landing page"
        assert "Model training" in dom and "No table of values is published" in dom
        assert shot.stat().st_size > 10_000

        # 2. Each cell's run, by name, after expanding the parent as a person would; its metrics on
        # the run page that its link opens.
        names = sorted(c.info.run_name for c in children)
        seen = asyncio.run(_browse(url, profiles / "c", "fig5_9-test", names))
        (ARTIFACTS / "mlflow_fig5_9_runs.png").write_bytes(seen["listing_png"])
        assert seen["expanded"] >= 1 and all(any(n in r for r in seen["rows"]) for n in names), seen["rows"]
        for child in children:
            page = seen["runs"][child.info.run_name]
            assert page["url"].startswith(f"{base}/#/experiments/{exp.experiment_id}/runs/{child.info.run_id}")
            metrics_part = page["text"].split("Metrics (", 1)[1]
            for metric in ("miou", "pixel_acc"):
                assert metric in metrics_part
                assert _shows(child.data.metrics[metric], metrics_part), (metric, child.data.metrics[metric])
        first = seen["runs"][names[0]]["png"]
        (ARTIFACTS / "mlflow_fig5_9_cell_run.png").write_bytes(first)
        cells = {rec["key"]: rec for rec in results.read_cells("fig5_9", "test")}
        assert {c.data.metrics["miou"] for c in children} == {cells[k]["values"]["miou"] for k in cells}
    finally:
        _stop_group(ui)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to `repro ui`'s process group (it and the MLflow server it started), SIGKILL after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        proc.poll()
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
