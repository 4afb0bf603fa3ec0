"""The paper-vs-reproduced table (`repro compare`, reports/comparison.csv) from a hand-built results tree."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from repro import results
from repro.specs import cell_key
from repro.experiments import resolve_spec
from tests.conftest import cli_env

REPRO = [sys.executable, "-m", "repro.cli"]


def _write_cell(spec_id: str, profile: str, cell: dict, values: dict, spec_hash: str | None = None) -> None:
    resolved = resolve_spec(spec_id, profile)
    key = cell_key(cell)
    results.write_cell(spec_id, profile, key, {
        "spec": spec_id, "profile": profile, "key": key, "cell": cell, "values": values, "extra": {},
        "spec_hash": spec_hash or resolved.hash, "seconds": 1.0, "finished_at": "2026-12-01T00:00:00+00:00"})


@pytest.fixture
def tree(workdir):
    """table5_3 (published: 7 cells of s0 with fid, miou, pixel_acc): two smoke cells, one paper cell,
    and one smoke cell of an older spec hash (must be ignored)."""
    _write_cell("table5_3", "smoke", {"s0": 0.001}, {"fd_evalnet": 0.27, "miou": 0.25, "pixel_acc": 0.61})
    _write_cell("table5_3", "smoke", {"s0": 0.002}, {"fd_evalnet": 0.24, "miou": 0.28, "pixel_acc": 0.65})
    _write_cell("table5_3", "smoke", {"s0": 0.0035}, {"miou": 0.99}, spec_hash="stale0000000")
    _write_cell("table5_3", "paper", {"s0": 0.0005}, {"fid": 100.0, "miou": 0.5, "pixel_acc": 0.7046})
    return workdir


def _rows():
    from repro.reporting.comparison import spec_rows

    return {(r["cell"], r["metric"]): r for r in spec_rows("table5_3")}


def test_one_row_per_published_value_with_reproduced_values_per_profile(tree):
    rows = _rows()
    # 7 published cells x 3 published metrics (the spec's YAML lists them; counted by hand).
    assert len(rows) == 21
    r = rows[("s0=0.0005", "fid")]
    assert r["document"] == "000_6e84dfabea47f45d.txt" and r["table"] == "5.3" and r["section"] == "5.4.4"
    assert r["published"] == 98.78 and r["reproduced_paper"] == 100.0 and r["reproduced_smoke"] is None
    # (100 - 98.78) / 98.78 = +1.235 %: within the 10 % tolerance.
    assert r["verdict"] == "agrees at paper (+1.2%; tolerance 10%)"
    # (0.5 - 0.2422) / 0.2422 = +106.4 %.
    assert rows[("s0=0.0005", "miou")]["verdict"] == "differs at paper (+106.4%; tolerance 10%)"
    assert rows[("s0=0.0005", "pixel_acc")]["verdict"].startswith("agrees at paper (+0.0%")


def test_smoke_values_are_trends_and_other_metrics_are_never_shown_as_fid(tree):
    rows = _rows()
    miou = rows[("s0=0.002", "miou")]
    assert miou["reproduced_smoke"] == 0.28 and miou["published"] == 0.3076
    assert miou["verdict"].startswith("not comparable: measured at smoke only")
    fid = rows[("s0=0.002", "fid")]
    assert fid["reproduced_smoke"] is None   # smoke measured fd_evalnet, not the paper's FID
    assert "smoke: fid not measured" in fid["verdict"] and "paper: no finished cell" in fid["verdict"]
    assert "not measured: fid (measured instead: fd_evalnet)" in fid["protocol_differences"]
    assert "smoke: dataset street_scenes (paper: cityscapes)" in fid["protocol_differences"]
    # The stale-hash cell (miou 0.99 at s0 = 0.0035) is not a result of this spec.
    assert rows[("s0=0.0035", "miou")]["reproduced_smoke"] is None


def test_spec_without_published_numbers_gets_one_note_row(workdir):
    from repro.reporting.comparison import spec_rows

    (row,) = spec_rows("fig5_9")   # Fig. 5.9 is published as a plot only
    assert row["metric"] == "" and row["published"] is None and row["verdict"].startswith("no published values")
    assert row["figure"] == "5.9"


def test_metrics_files_for_dvc(tree):
    from repro.reporting.comparison import write_metrics

    jpath, cpath = write_metrics("table5_3", "smoke", tree / "metrics")
    assert json.loads(jpath.read_text()) == {"smoke": {
        "s0=0.001": {"fd_evalnet": 0.27, "miou": 0.25, "pixel_acc": 0.61},
        "s0=0.002": {"fd_evalnet": 0.24, "miou": 0.28, "pixel_acc": 0.65}}}
    table = list(csv.DictReader(io.StringIO(cpath.read_text())))
    assert [r["s0"] for r in table] == ["0.001", "0.002"]
    assert list(table[0]) == ["s0", "fd_evalnet", "miou", "pixel_acc"] and table[1]["miou"] == "0.28"


def test_cli_formats_and_errors(tree):
    env = cli_env(tree) | {"REPRO_RESULTS": str(tree / "results")}
    out = subprocess.run(REPRO + ["compare", "table5_3", "--format", "json"], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 21 and {r["spec"] for r in rows} == {"table5_3"}
    md = subprocess.run(REPRO + ["compare", "table5_3", "-f", "md"], cwd=tree, env=env, capture_output=True,
                        text=True, timeout=120)
    assert md.returncode == 0 and md.stdout.startswith("| spec | document |") and "| 98.78 |" in md.stdout
    written = subprocess.run(REPRO + ["compare", "all", "-o", "reports/comparison.csv"], cwd=tree, env=env,
                             capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr
    table = list(csv.DictReader((tree / "reports/comparison.csv").open()))
    assert {"table5_3", "fig5_9", "table12_1"} <= {r["spec"] for r in table}
    assert next(r for r in table if r["spec"] == "table5_3" and r["cell"] == "s0=0.0005"
                and r["metric"] == "fid")["reproduced_paper"] == "100.0"
    for args, message in ((["compare", "table5_3", "--format", "xml"], "--format 'xml'"),
                          (["compare", "nope"], "unknown spec 'nope'")):
        bad = subprocess.run(REPRO + args, cwd=tree, env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
