"""Reports: the same results render to the same bytes, name no absolute path, and show the
commit, spec hash and environment (package versions, threads, BLAS) of the results they show."""
from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest

from repro import environment, results

from repro.reporting import render as reporting
@pytest.mark.slow
def test_rendering_is_byte_identical_and_path_free(workdir, tmp_path_factory, monkeypatch):
    from repro.engine.run import run_spec

    elsewhere = tmp_path_factory.mktemp("results_elsewhere")   # an absolute root outside the cwd
    monkeypatch.setenv("REPRO_RESULTS", str(elsewhere / "results"))
    monkeypatch.setenv("REPRO_REPORTS", str(workdir / "reports"))
    summary = run_spec("fig5_9", "test", device="cpu", progress=False)
    assert summary.ran

    first = reporting.render_report("fig5_9").read_bytes()
    time.sleep(1.1)   # a render timestamp (seconds) would show up now
    second = reporting.render_report("fig5_9").read_bytes()
    assert first == second

    # the same results under another absolute root: the same bytes
    moved = tmp_path_factory.mktemp("moved") / "results"
    shutil.copytree(elsewhere / "results", moved)
    monkeypatch.setenv("REPRO_RESULTS", str(moved))
    assert reporting.render_report("fig5_9").read_bytes() == first

    text = first.decode()
    for path in (str(workdir), str(elsewhere), str(moved), "/tmp/"):
        assert path not in text
    cells = results.read_cells("fig5_9", "test")
    assert results.git_commit()[:12] in text
    assert cells[0]["spec_hash"] in text
    env = cells[0]["environment"]
    assert env["packages"]["torch"] == environment.package_version("torch")
    assert f"torch {env['packages']['torch']}" in text and f"numpy {env['packages']['numpy']}" in text
    assert f"pytorch-fid {environment.package_version('pytorch-fid')}" in text
    assert f"{env['threads']} thread(s)" in text and env["threads"] == 1   # tests run with REPRO_THREADS=1
    assert "_Rendered from `$REPRO_RESULTS/fig5_9/`" in text


def _env(torch_v: str, threads: int) -> dict:
    return {"python": "3.11.7", "machine": "x86_64", "threads": threads,
            "packages": {"torch": torch_v, "numpy": "2.4.6"},
            "torch_build": {"blas": "mkl", "mkl": "2024.2", "cpu_capability": "AVX512"}}


def test_environment_line_of_one_environment():
    key = reporting._environment_key(_env("2.14.1", 2))
    df = pd.DataFrame({"_environment": [key, key]})
    assert reporting._environment_lines(df) == [
        "Environment: torch 2.14.1, numpy 2.4.6, 2 thread(s), BLAS mkl 2024.2, CPU kernels AVX512, "
        "Python 3.11.7.", ""]


def test_environment_lines_of_mixed_cells_say_which_is_which():
    a, b = reporting._environment_key(_env("2.14.1", 1)), reporting._environment_key(_env("2.14.1", 2))
    df = pd.DataFrame({"_environment": [a, b, b, None]})
    line = reporting._environment_lines(df)[0]
    assert "Environment (1 of 4 cells): torch 2.14.1, numpy 2.4.6, 1 thread(s)" in line
    assert "Environment (2 of 4 cells): torch 2.14.1, numpy 2.4.6, 2 thread(s)" in line
    assert line.endswith("Environment not recorded for 1 of 4 cells (computed before results recorded it).")


def test_results_root_is_named_relative(workdir, monkeypatch):
    monkeypatch.setenv("REPRO_RESULTS", str(workdir / "out" / "results"))
    assert reporting._display_root() == "out/results"
    monkeypatch.setenv("REPRO_RESULTS", "results")
    assert reporting._display_root() == "results"
    monkeypatch.setenv("REPRO_RESULTS", "/somewhere/else/results")
    assert reporting._display_root() == "$REPRO_RESULTS"
