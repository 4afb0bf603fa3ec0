"""The KINDS table: every kind's runner follows the Runner protocol, its report and cost modules exist,
a runner never imports its report module, and a kind the table does not name is a user error."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from repro.errors import UserError
from repro.experiments import KINDS, cost_module, kind_files, report_module, runner_module

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ("GRID_KEYS", "METRICS", "Fixed", "prepare", "run_cell")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_runner_has_every_required_member_of_the_protocol(kind):
    module = runner_module(kind)
    assert all(hasattr(module, name) for name in REQUIRED), kind
    assert kind in cost_module(kind).ESTIMATORS
    report = report_module(kind)
    assert callable(getattr(report, "report_figures", None)) or not hasattr(report, "report_figures")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_runner_does_not_import_its_report_module(kind):
    files = kind_files(kind)
    if files["report"] == files["runner"]:
        pytest.skip("report lives in the runner module")
    report = KINDS[kind].report
    tree = ast.parse((REPO / files["runner"]).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                 for a in n.names}
    assert report not in imported, f"{files['runner']} imports {report}"


@pytest.mark.parametrize("kind", ["problems", "no_such_kind", "cost"])
def test_a_kind_the_table_does_not_name_is_one_user_error(kind):
    for lookup in (runner_module, report_module, cost_module):
        with pytest.raises(UserError, match=f"unknown experiment kind {kind!r}"):
            lookup(kind)
