"""`repro report`: reports/<id>.md, figures, reports/README.md; a sweep's report."""
from __future__ import annotations

from typing import Callable

from repro.atomic import check_writable
from repro.commands.specs import spec_ids
from repro.reporting.render import attach_to_mlflow, report, reports_root
from repro.sweeps.report import render_sweep_report, sweep_name


def report_command(spec_arg: str, storage: str | None, echo: Callable[..., None]) -> None:
    check_writable(reports_root(), "the reports folder ($REPRO_REPORTS)")   # one line before any rendering
    if sweep_name(spec_arg) is not None:   # reports/sweep-NAME.md from the sweep's studies
        for path in render_sweep_report(sweep_name(spec_arg), storage):
            echo(f"wrote {path}")
        return
    ids = spec_ids(spec_arg)
    for path in report(ids):
        echo(f"wrote {path}")
    for i in ids:
        files = [reports_root() / f"{i}.md", *sorted(reports_root().glob(f"{i}_*.png"))]
        runs = attach_to_mlflow(i, files)
        if runs:
            echo(f"{i}: report logged to MLflow run(s) {', '.join(r[:8] for r in runs)}")
