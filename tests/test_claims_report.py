"""The claims reach the reader: each report's claims table (the document's words beside the engine's
verdict), reports/claims.csv through `repro compare --claims`, and the verdict counts per document."""
from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from repro import results
from repro.cli import app, main
from repro.experiments import resolve_spec
from repro.reporting import claims as claim_table
from repro.reporting import render
from repro.specs import cell_key, repo_root

CLAIMS = [
    {"id": "miou_rises", "quote": "quoted words of the thesis", "claim": "miou rises with s0 over the guided cells",
     "place": {"document": "000_6e84dfabea47f45d.txt", "section": "5.4.4", "table": "5.3", "lines": [10, 12]},
     "kind": "trend", "metric": "miou", "direction": "increasing", "unit": "maps", "over": "s0",
     "cells": {"where": {"s0": [0.001, 0.002]}}},
    {"id": "fd_lower_at_small_s0", "quote": "other quoted words", "claim": "fd_evalnet at s0 0.001 below 0.002",
     "place": {"document": "000_6e84dfabea47f45d.txt", "section": "5.4.4", "lines": [20, 20]},
     "kind": "better", "metric": "fd_evalnet", "direction": "lower", "unit": "maps",
     "a": {"where": {"s0": 0.001}}, "b": {"where": {"s0": 0.002}}},
]


def _setup(tmp_path, monkeypatch):
    exp = tmp_path / "experiments"
    shutil.copytree(repo_root() / "experiments", exp)
    doc = yaml.safe_load((exp / "table5_3.yaml").read_text())
    doc["grid"] = {"s0": [0.001, 0.002]}
    doc["claims"] = CLAIMS
    (exp / "table5_3.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("REPRO_EXPERIMENTS", str(exp))
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("REPRO_REPORTS", str(tmp_path / "reports"))
    resolved = resolve_spec("table5_3", "test")
    g = np.random.default_rng(0)
    base = g.uniform(0.2, 0.4, size=30)
    for s0, lift in ((0.001, 0.0), (0.002, 0.1)):   # miou clearly higher at 0.002 on every map
        cell = {"s0": s0}
        miou = base + lift + g.normal(scale=0.01, size=30)
        results.write_cell("table5_3", "test", cell_key(cell), {
            "cell": cell, "spec_hash": resolved.hash, "values": {"miou": float(miou.mean()), "fd_evalnet": 5.0},
            "extra": {"miou_per_sample": miou.tolist(), "resample_unit": "maps", "resample_n": 30}})


def test_report_shows_claims_table_and_csv_lists_them(tmp_path, monkeypatch):
    _setup(tmp_path, monkeypatch)
    text = render.render_report("table5_3").read_text()
    assert "### Claims" in text
    row = next(line for line in text.splitlines() if line.startswith("| `miou_rises`"))
    assert "“quoted words of the thesis” (Küchler (2021), Sec. 5.4.4, Tab. 5.3, lines 10-12)" in row
    assert "**held**" in row and "100%" in row
    # fd_evalnet stored without per-map values: no spread, so no verdict beyond inconclusive
    row = next(line for line in text.splitlines() if line.startswith("| `fd_lower_at_small_s0`"))
    assert "**inconclusive**" in row and "no spread measured" in text

    out = CliRunner().invoke(app, ["compare", "table5_3", "--claims"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    test_rows = {r["claim_id"]: r for r in rows if r["profile"] == "test"}
    assert test_rows["miou_rises"]["verdict"] == "held" and float(test_rows["miou_rises"]["share"]) == 1.0
    assert test_rows["miou_rises"]["reference"].startswith("Tim Küchler, *Semantic Image Synthesis")
    assert test_rows["miou_rises"]["unit"] == "maps" and test_rows["miou_rises"]["n_units"] == "30"
    assert test_rows["fd_lower_at_small_s0"]["verdict"] == "inconclusive"
    assert {r["verdict"] for r in rows if r["profile"] != "test"} == {"not run"}

    index = render.render_index().read_text()
    assert "## Claims per document" in index and "## The documents" in index
    line = next(x for x in index.splitlines() if x.startswith("| Tim Küchler") and "| test |" in x)
    # held, did not hold, inconclusive, not judged (then not run: the thesis's other specs' test claims)
    assert line.rsplit("|", 6)[1:5] == [" 1 ", " 0 ", " 1 ", " 0 "], line
    assert claim_table.VERDICTS == ("held", "did not hold", "inconclusive", "not judged", "not run")


def test_compare_claims_bad_format_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    _setup(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as e:
        main(["compare", "table5_3", "--claims", "--format", "xml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--format 'xml'" in err[0]
