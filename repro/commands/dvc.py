"""`repro pipeline` (dvc.yaml / params.yaml derived from experiments/) and `repro dvc-repro`
(independent stages side by side)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from repro.atomic import atomic_write_text
from repro.commands.pipeline import params_profile, read_params, render_dvc_yaml, render_params
from repro.errors import UserError
from repro.launchers.dvc_stages import parallel_repro
from repro.specs import PROFILES, repo_root


def pipeline_command(profile: str | None, params: bool, echo: Callable[..., None]) -> None:
    if profile is not None and profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if params:   # the values already in params.yaml stay; new specs get their defaults
        path = repo_root() / "params.yaml"
        atomic_write_text(path, render_params(profile or params_profile(), keep=read_params()))
        echo(f"wrote {path}")
    else:
        echo(render_dvc_yaml(profile), nl=False)


def dvc_repro_command(targets: list[str], jobs: int, echo: Callable[..., None]) -> int:
    """The exit code: 1 when a stage failed."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    sched = parallel_repro(Path.cwd(), targets, jobs, echo=echo)
    return 1 if sched.failed else 0
