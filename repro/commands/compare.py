"""`repro compare`: the paper-vs-reproduced table (csv | md | json), or each spec's metrics files for
DVC (`--metrics-dir`). Apart from `repro report`, so that a spec stage, which runs it, does not
depend on the sweeps' report code."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from repro.atomic import atomic_write_text, check_output_file, check_writable
from repro.commands.specs import spec_ids
from repro.errors import UserError
from repro.reporting import claims as claim_table
from repro.reporting import comparison
from repro.specs import PROFILES


def compare_command(spec_arg: str, fmt: str, out: str | None, metrics_dir: str | None, profile: str,
                    echo: Callable[..., None], claims: bool = False) -> None:
    ids = spec_ids(spec_arg)
    if out is not None:   # said before any table is computed, and nothing made on the way
        check_output_file(out, "--out")
    if metrics_dir is not None:
        check_writable(metrics_dir, "--metrics-dir")
    if claims:   # the documents' claims judged by repro.claims (reports/claims.csv)
        if fmt not in claim_table.FORMATS:
            raise UserError(f"--format {fmt!r}: choose one of {', '.join(claim_table.FORMATS)}")
        return _emit(claim_table.FORMATS[fmt](claim_table.claim_rows(ids)), out, echo)
    if metrics_dir is not None:
        if profile not in PROFILES:
            raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        for i in ids:
            for path in comparison.write_metrics(i, profile, Path(metrics_dir)):
                echo(str(path))
        return
    if fmt not in comparison.FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(comparison.FORMATS)}")
    _emit(comparison.FORMATS[fmt](comparison.comparison_rows(ids)), out, echo)


def _emit(text: str, out: str | None, echo: Callable[..., None]) -> None:
    """To the terminal, or to the file `out` (written whole or not at all)."""
    if out is None:
        echo(text, nl=False)
    else:
        atomic_write_text(Path(out), text)
