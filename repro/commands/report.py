"""`repro report` (reports/<id>.md, figures, reports/README.md; a sweep's report) and `repro compare`
(the paper-vs-reproduced table)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from repro.atomic import atomic_write_text
from repro.commands.specs import spec_ids
from repro.errors import UserError
from repro.reporting import comparison
from repro.reporting.render import attach_to_mlflow, report, reports_root
from repro.specs import PROFILES
from repro.sweeps.report import render_sweep_report, sweep_name


def report_command(spec_arg: str, storage: str | None, echo: Callable[..., None]) -> None:
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


def compare_command(spec_arg: str, fmt: str, out: str | None, metrics_dir: str | None, profile: str,
                    echo: Callable[..., None]) -> None:
    ids = spec_ids(spec_arg)
    if metrics_dir is not None:
        if profile not in PROFILES:
            raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        for i in ids:
            for path in comparison.write_metrics(i, profile, Path(metrics_dir)):
                echo(str(path))
        return
    if fmt not in comparison.FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(comparison.FORMATS)}")
    text = comparison.FORMATS[fmt](comparison.comparison_rows(ids))
    if out is None:
        echo(text, nl=False)
    else:
        atomic_write_text(Path(out), text)
