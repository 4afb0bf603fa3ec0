"""The `repro` command line: thin; parses, calls, prints.

Heavy libraries (torch, mlflow) are imported inside commands so that `repro --help` and
`repro list` answer at once. A user's mistake prints one line and exits 2; a crash inside a
run exits 1 after its MLflow run is marked FAILED and finished cells are kept.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

# OpenMP threads that spin while waiting steal the CPU from the working ones whenever the
# machine is shared (a training step measured 0.41 s spinning vs 0.22 s passive on a loaded
# 2-core box). Set before torch is imported; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from repro.errors import UserError, disk_full, is_disk_full

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproduce the tables and figures of the source documents: run specs, train models, "
                       "render reports, browse runs in MLflow.")

ProfileOpt = typer.Option("smoke", "--profile", "-p", help="test | smoke | paper")


def _check_set(values: Optional[List[str]]) -> Optional[List[str]]:
    # A malformed --set is a usage error (usage line + problem, before anything runs); the
    # values themselves are parsed and type-checked by repro.specs.parse_set.
    for item in values or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise typer.BadParameter(f"{item!r}: expected dotted.key=value, e.g. fixed.steps=10")
    return values


SetOpt = typer.Option(None, "--set", "-s", help="Override a setting: dotted.key=value (repeatable)",
                      callback=_check_set)
ThreadsOpt = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default $REPRO_THREADS or 2); "
                                                  "the same seed and thread count give the same numbers")


def _echo_err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


@app.command("list")
def list_cmd() -> None:
    """List every experiment spec: id, title, source, kind."""
    from repro.specs import list_spec_ids, load_spec

    rows = []
    for spec_id in list_spec_ids():
        spec = load_spec(spec_id)
        rows.append((spec.id, spec.title, spec.source.cite(), spec.kind))
    if not rows:
        typer.echo("no specs found")
        return
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    w[1] = min(w[1], 70)
    for r in rows:
        title = r[1] if len(r[1]) <= w[1] else r[1][: w[1] - 1] + "…"
        typer.echo(f"{r[0]:<{w[0]}}  {title:<{w[1]}}  {r[3]:<{w[3]}}  {r[2]}")


@app.command()
def show(spec_id: str = typer.Argument(..., help="spec id (see `repro list`)"),
         profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt) -> None:
    """Show a spec resolved at a profile, with the published values."""
    import yaml

    from repro.specs import parse_set
    from repro.experiments import resolve_spec

    resolved = resolve_spec(spec_id, profile, parse_set(set_))
    body = resolved.spec.model_dump(mode="json", exclude={"profiles", "paper"})
    typer.echo(f"# {spec_id} at profile {profile} (hash {resolved.hash})")
    typer.echo(yaml.safe_dump(body, sort_keys=False).rstrip())
    paper = resolved.spec.paper
    typer.echo("\n# published values" + (f" ({', '.join(f'{k}: {v}' for k, v in paper.protocol.items())})"
                                          if paper.protocol else ""))
    if paper.notes:
        typer.echo(paper.notes.strip())
    for cell in paper.cells:
        typer.echo("  " + ", ".join(f"{k}={v}" for k, v in cell.items()))
    from repro.experiments import runner_module   # a kind may add lines (e.g. the model's parameter count)

    for line in getattr(runner_module(resolved.spec.kind), "describe", lambda r: [])(resolved):
        typer.echo(line)


def _spec_ids(arg: str) -> list[str]:
    from repro.specs import list_spec_ids, load_spec

    if arg == "all":
        return list_spec_ids()
    load_spec(arg)  # unknown id / bad YAML -> UserError
    return [arg]


@app.command()
def run(spec_id: str = typer.Argument(..., help="spec id, or `all`"),
        profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
        device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
        jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="run cells in N processes at once (each "
                                           "with cores / N threads unless --threads says)"),
        devices: Optional[str] = typer.Option(None, "--devices", help="run cells in one process per device, "
                                              "e.g. cuda:0,cuda:1 (with --jobs: N processes over them)"),
        force: bool = typer.Option(False, "--force", help="recompute finished cells"),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
        threads: Optional[int] = ThreadsOpt,
        yes: bool = typer.Option(False, "--yes", "-y", help="start even when the plan's estimate is above the threshold"),
        max_hours: Optional[float] = typer.Option(None, "--max-hours", help="warn above this estimate (default "
                                                  "REPRO_PLAN_WARN_HOURS or 1)")) -> None:
    """Run every cell of a spec's grid (finished cells are skipped; an interrupted run resumes)."""
    from repro.environment import export_threads, threads_setting
    from repro.specs import parse_set
    from repro.experiments import resolve_spec

    export_threads(threads_setting(threads))   # the engine applies it before any work

    ids = _spec_ids(spec_id)
    overrides = parse_set(set_)
    from repro.engine.run import preflight, run_spec
    from repro.environment import resolve_device

    resolve_device(device)
    for i in ids:  # validate every spec and find its data before running any
        preflight(resolve_spec(i, profile, overrides))
    from repro.plan import run_guard

    run_guard(ids, profile, overrides, device, yes, typer.echo, max_hours)   # a long run needs --yes

    for i in ids:
        if jobs is not None or devices is not None:   # cells over processes (repro.launchers.cells)
            from repro.launchers.cells import run_spec_jobs

            summary = run_spec_jobs(i, profile, overrides, jobs=jobs, devices=devices, device=device,
                                    threads=threads, force=force, echo=typer.echo)
        else:
            summary = run_spec(i, profile, overrides, device=device, force=force, progress=progress)
        if os.environ.get("RANK", "0") != "0":   # under torchrun rank 0 speaks for all
            continue
        done = f"{len(summary.ran)} run, {len(summary.skipped)} already finished"
        where = f"results in {summary.work_dir}"
        mlf = f"; MLflow run {summary.mlflow_run_id}" if summary.mlflow_run_id else ""
        typer.echo(f"{i} [{profile}]: {summary.total} cells ({done}); {where}{mlf}")
        if summary.failed:   # a runner's reported failure (e.g. a diverged training arm): kept out of results
            typer.echo(f"{i} [{profile}]: {len(summary.failed)} cell(s) failed ({', '.join(summary.failed)}); "
                       f"see {summary.work_dir / 'failed'}; a rerun tries them again", err=True)


@app.command()
def plan(spec_id: str = typer.Argument(..., help="spec id, or `all`"),
         profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
         device: str = typer.Option("auto", help="the device to estimate for: auto | cpu | cuda | cuda:N"),
         calibrate: bool = typer.Option(False, "--calibrate", help="time the spec's networks on the device first "
                                        "(random weights, a few seconds each) and store the calibration"),
         cells: bool = typer.Option(True, "--cells/--no-cells", help="one line per cell")) -> None:
    """What a run will train and sample and what it costs, without running anything."""
    from repro.plan import plan_command
    from repro.specs import parse_set

    plan_command(_spec_ids(spec_id), profile, parse_set(set_), device, calibrate, typer.echo, cells=cells)


_STORAGE_HELP = ("the study storage: a journal file path (default results/sweeps/optuna.journal) or an RDB URL, "
                 "e.g. postgresql://user:pass@host/db to share one study between machines")


@app.command()
def sweep(name: str = typer.Argument(..., help="sweep name (experiments/sweeps/NAME.yaml)"),
          profile: Optional[str] = typer.Option(None, "--profile", "-p", help="test | smoke | paper (default: the sweep's)"),
          workers: int = typer.Option(1, "--workers", "-w", help="worker processes on this machine, on one study"),
          storage: Optional[str] = typer.Option(None, "--storage", help=_STORAGE_HELP),
          n_trials: Optional[int] = typer.Option(None, "--n-trials", help="at most this many trials in this invocation"),
          study: Optional[str] = typer.Option(None, "--study", help="study name (default NAME-PROFILE)"),
          refine: bool = typer.Option(False, "--refine", help="the sweep's refine stage, around the grid's best"),
          status: bool = typer.Option(False, "--status", help="print finished/running/failed/remaining and the best"),
          dashboard: bool = typer.Option(False, "--dashboard", help="serve optuna-dashboard over the storage"),
          port: int = typer.Option(8080, help="with --dashboard: port on 127.0.0.1"),
          device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
          threads: Optional[int] = ThreadsOpt) -> None:
    """Run an Optuna sweep: each trial is one cell of the base spec (reused when already computed)."""
    from repro.environment import apply_threads

    apply_threads(threads)   # with --workers N > 1 each worker process gets cores / N threads instead
    if status:
        from repro.sweeps.status import status_lines

        for line in status_lines(name, profile, storage, study, refine):
            typer.echo(line)
        return
    if dashboard:
        from repro.sweeps.dashboard import serve
        from repro.sweeps.spec import resolve_sweep

        resolve_sweep(name, profile)
        serve(storage, port, echo=typer.echo)
        return
    from repro.sweeps.runner import SweepCrashed, run_sweep

    try:
        s = run_sweep(name, profile, workers=workers, storage=storage, n_trials=n_trials, study=study,
                      refine=refine, device=device, echo=typer.echo)
    except SweepCrashed as e:
        _echo_err(f"sweep {name}: {e}")
        raise typer.Exit(1)
    p = s.progress
    typer.echo(f"{s.sweep} [{s.profile}]: study {s.study!r} in {s.storage}: {p['finished']}/{p['budget']} finished, "
               f"{p['remaining']} remaining, {p['failed']} failed")
    for b in s.best[:10]:
        vals = ", ".join(f"{m}={v:.4g}" for m, v in b["values"].items())
        typer.echo(f"  {'best' if len(b['values']) == 1 else 'Pareto front'}: trial {b['number']} ({', '.join(f'{k}={v!r}' for k, v in b['params'].items())}): {vals}")
    if s.artifacts_dir is not None:
        mlf = f"; MLflow run {s.mlflow_run_id}" if s.mlflow_run_id else ""
        typer.echo(f"  trials and best in {s.artifacts_dir}{mlf}")


@app.command()
def report(spec_id: str = typer.Argument("all", help="spec id, `all`, or sweep:NAME (a sweep's studies)"),
           storage: Optional[str] = typer.Option(None, "--storage", help="with sweep:NAME: " + _STORAGE_HELP)) -> None:
    """Render reports/<id>.md (and figures) from the results files, and reports/README.md."""
    from repro.reporting.render import attach_to_mlflow, reports_root
    from repro.reporting.render import report as render
    from repro.sweeps.report import render_sweep_report, sweep_name

    if sweep_name(spec_id) is not None:   # reports/sweep-NAME.md from the sweep's studies
        for path in render_sweep_report(sweep_name(spec_id), storage):
            typer.echo(f"wrote {path}")
        return
    ids = _spec_ids(spec_id)
    for path in render(ids):
        typer.echo(f"wrote {path}")
    for i in ids:
        files = [reports_root() / f"{i}.md", *sorted(reports_root().glob(f"{i}_*.png"))]
        runs = attach_to_mlflow(i, files)
        if runs:
            typer.echo(f"{i}: report logged to MLflow run(s) {', '.join(r[:8] for r in runs)}")


@app.command()
def train(name: str = typer.Argument(..., help="model name (experiments/models/NAME.yaml)"),
          profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
          device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
          force: bool = typer.Option(False, "--force", help="retrain even if the artifact exists"),
          progress: bool = typer.Option(True, "--progress/--no-progress"),
          threads: Optional[int] = ThreadsOpt) -> None:
    """Train a model once for a profile and store it under artifacts/ (reused by every spec)."""
    from repro.environment import apply_threads
    from repro.specs import parse_set, resolve_model

    apply_threads(threads)

    overrides = parse_set(set_)
    resolved = resolve_model(name, profile, overrides)
    from repro.data import load_dataset
    from repro.environment import resolve_device
    from repro.trainers.ensure import ensure_model

    dev = resolve_device(device)
    ds = resolved.config.dataset
    load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=1, seed=ds.seed)
    from repro.trainers.weights import validate_model_files

    validate_model_files(resolved)   # the weights files it names, before any training
    from repro.atomic import check_writable
    from repro.models import artifacts_root

    check_writable(artifacts_root(), "the artifacts folder ($REPRO_ARTIFACTS)")
    model = ensure_model(name, profile, overrides=overrides, device=dev, force=force, progress=progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
            typer.echo(f"{name} [{profile}]: {model.path} (sha256 {model.meta.get('sha256', '?')[:12]})")


@app.command()
def evaluate(images: str = typer.Option(..., "--images", help="folder of generated images"),
             maps: str = typer.Option(..., "--maps", help="folder of their label maps (class-id PNGs, same names)"),
             reference: Optional[str] = typer.Option(None, "--reference", help="real images (default: the dataset's)"),
             metrics: Optional[str] = typer.Option(None, "--metrics", help="e.g. fid,miou,pixel_acc (default: the profile's)"),
             name: Optional[str] = typer.Option(None, "--name", help="result name (default: the folder's)"),
             profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
             device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
             progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Score a folder of generated images against their maps as table5_4_5 scores its rows."""
    from repro.commands.evaluate import evaluate_folder
    from repro.specs import parse_set

    r = evaluate_folder(images, maps, reference=reference, metrics=metrics, name=name, profile=profile,
                        device=device, progress=progress, overrides=parse_set(set_))
    vals = ", ".join(f"{k}={v:.4g}" for k, v in r.values.items())
    mlf = f"; MLflow run {r.mlflow_run_id}" if r.mlflow_run_id else ""
    typer.echo(f"{r.record['name']} [{profile}]: {len(r.record['files'])} images: {vals} -> {r.path}{mlf}")


sample_app = typer.Typer(no_args_is_help=True, help="Generate images with the trained models of a profile.")
app.add_typer(sample_app, name="sample")


@sample_app.command("semantic")
def sample_semantic(map_path: str = typer.Option(..., "--map", "-m", help="colour map PNG (dataset palette; "
                                                                       "Cityscapes' official colours at paper)"),
                    n: int = typer.Option(4, "-n", help="images to sample for the map"),
                    s0: Optional[float] = typer.Option(None, "--s0", help="maximum guidance scale (Eq. 5.5) in the "
                                                                         "thesis's units (the profile's fixed.s0_scale "
                                                                         "applies); default 0.002"),
                    out: str = typer.Option("samples/semantic", "--out", "-o", help="output folder"),
                    profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
                    seed: int = typer.Option(0, help="seed of the prior draws and noise"),
                    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
                    progress: bool = typer.Option(True, "--progress/--no-progress"),
                    threads: Optional[int] = ThreadsOpt) -> None:
    """Images from a drawn semantic map: guided PC sampling with table5_3's models and settings."""
    from pathlib import Path

    from repro.environment import apply_threads
    from repro.commands.sample_semantic import sample_from_map
    from repro.specs import parse_set

    apply_threads(threads)

    result = sample_from_map(Path(map_path), profile=profile, n=n, s0=s0, out_dir=Path(out), device=device,
                             seed=seed, overrides=parse_set(set_), progress=progress)
    for note in result.notes:
        typer.echo(f"note: {note}")
    scores = ", ".join(f"{m:.3f}" for m in result.miou)
    typer.echo(f"{n} image(s) in {result.out_dir} (sheet.png, sample_*.png) in {result.seconds:.1f} s; "
               f"mIoU vs the map by the evaluator: {scores}"
               + (f"; MLflow run {result.mlflow_run_id}" if result.mlflow_run_id else ""))


@sample_app.command("ddpm")
def sample_ddpm(mask_path: str = typer.Option(..., "--mask", "-m", help="mask PNG in colour-book colours (a test "
                                                                        "mask, an edited one or a hand painting)"),
                guidance: Optional[float] = typer.Option(None, "--guidance", "-w", help="guidance weight in "
                                                         "--convention's units (default: bdd_metrics' lerp s = 3)"),
                convention: Optional[str] = typer.Option(None, "--convention", help="lerp (s; 1 = conditional) or "
                                                         "ho_salimans (w; 0 = conditional)"),
                n: int = typer.Option(4, "-n", help="images to sample for the mask"),
                out: str = typer.Option("samples/ddpm", "--out", "-o", help="output folder"),
                colorbook: Optional[str] = typer.Option(None, "--colorbook", help="colour book JSON (default: "
                                                        "BDD100K's 19 classes)"),
                loop: Optional[str] = typer.Option(None, "--loop", help="appendix (999 calls) or algorithm2 (1000)"),
                profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
                seed: int = typer.Option(0, help="seed of the prior draws and noise"),
                device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
                progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Images from a semantic mask: the BDD100K paper's mask-guided DDPM with classifier-free guidance."""
    from pathlib import Path

    from repro.commands.sample_ddpm import sample_from_mask
    from repro.specs import parse_set

    r = sample_from_mask(Path(mask_path), profile=profile, n=n, guidance=guidance, convention=convention,
                         out_dir=Path(out), device=device, seed=seed, colorbook=Path(colorbook) if colorbook else None,
                         loop=loop, overrides=parse_set(set_), progress=progress)
    for note in r.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"{n} image(s) in {r.out_dir} (sheet.png: mask and samples side by side, sample_*.png, info.json) "
               f"in {r.seconds:.1f} s; {r.record['guidance_convention']} weight {r.record['guidance_weight']}, "
               f"{r.record['nfe']} steps ({r.record['loop']})")


@app.command()
def ui(port: Optional[int] = typer.Option(None, help="port on 127.0.0.1 (default 5000; 8080 with --optuna)"),
       backend_store_uri: Optional[str] = typer.Option(None, help="default: MLFLOW_TRACKING_URI or ./mlflow.db"),
       workers: int = typer.Option(1, help="server worker processes (one is plenty for one person)"),
       optuna: bool = typer.Option(False, "--optuna", help="serve optuna-dashboard over the sweeps' study storage"),
       storage: Optional[str] = typer.Option(None, "--storage", help="with --optuna: " + _STORAGE_HELP)) -> None:
    """Start the MLflow UI (or, with --optuna, optuna-dashboard) on 127.0.0.1."""
    import subprocess

    if optuna:
        from repro.sweeps.dashboard import serve

        serve(storage, 8080 if port is None else port, echo=typer.echo)
        return
    port = 5000 if port is None else port
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: must be between 1 and 65535")
    uri = backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", uri, "--workers", str(workers)]
    from repro.tracking.runs import experiment_links
    from repro.tracking.view import WORKFLOW_QUERY, store_description

    base = f"http://127.0.0.1:{port}"
    typer.echo(f"MLflow UI at {base}/#/experiments?{WORKFLOW_QUERY}")
    typer.echo(f"store: {store_description(uri)}")
    for name, url in experiment_links(uri, base):   # each opens on its runs, not on the GenAI overview
        typer.echo(f"  {name}: {url}")
    typer.echo("Ctrl-C stops it", err=True)
    try:
        raise typer.Exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        raise typer.Exit(0)


@app.command()
def pipeline(profile: Optional[str] = typer.Option(None, "--profile", "-p",
                                                  help="default: the profile in params.yaml"),
             params: bool = typer.Option(False, "--params", help="instead: update params.yaml (every spec's knobs "
                                                               "at the profile; values already set stay)")) -> None:
    """Print the DVC pipeline derived from experiments/ (`repro pipeline > dvc.yaml`)."""
    from repro.commands.pipeline import params_profile, render_dvc_yaml, render_params
    from repro.specs import PROFILES

    if profile is not None and profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if params:   # the values already in params.yaml stay; new specs get their defaults
        from repro.atomic import atomic_write_text
        from repro.commands.pipeline import read_params
        from repro.specs import repo_root

        path = repo_root() / "params.yaml"
        atomic_write_text(path, render_params(profile or params_profile(), keep=read_params()))
        typer.echo(f"wrote {path}")
    else:
        typer.echo(render_dvc_yaml(profile), nl=False)


@app.command("dvc-repro")
def dvc_repro(targets: Optional[List[str]] = typer.Argument(None, help="stages (default: the whole pipeline)"),
              jobs: int = typer.Option(2, "--jobs", "-j", help="stages side by side (1: one at a time)")) -> None:
    """`dvc repro` with independent stages side by side (DVC's parallel stage execution, scheduled):
    each changed stage as `dvc repro --single-item`, upstream first; logs in logs/pipeline/."""
    from pathlib import Path

    from repro.launchers.dvc_stages import parallel_repro

    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    sched = parallel_repro(Path.cwd(), list(targets or []), jobs, echo=typer.echo)
    raise typer.Exit(1 if sched.failed else 0)


@app.command()
def compare(spec_id: str = typer.Argument("all", help="spec id, or `all`"),
            fmt: str = typer.Option("csv", "--format", "-f", help="csv | md | json"),
            out: Optional[str] = typer.Option(None, "--out", "-o", help="write to this file (default: stdout)"),
            metrics_dir: Optional[str] = typer.Option(
                None, "--metrics-dir", help="instead: write DIR/<spec>.json (dvc metrics) and DIR/<spec>.csv "
                                            "(dvc plots) of the reproduced cells at --profile"),
            profile: str = ProfileOpt) -> None:
    """The paper-vs-reproduced table: one row per published value, reproduced value per profile, verdict."""
    from pathlib import Path

    from repro.reporting import comparison
    from repro.atomic import atomic_write_text

    ids = _spec_ids(spec_id)
    if metrics_dir is not None:
        from repro.specs import PROFILES

        if profile not in PROFILES:
            raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        for i in ids:
            for path in comparison.write_metrics(i, profile, Path(metrics_dir)):
                typer.echo(str(path))
        return
    if fmt not in comparison.FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(comparison.FORMATS)}")
    text = comparison.FORMATS[fmt](comparison.comparison_rows(ids))
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(Path(out), text)


@app.command()
def doctor() -> None:
    """Versions against requirements.lock, torch's build and threads, device, data, weights, MLflow store."""
    from repro.commands.doctor import doctor_lines

    for line in doctor_lines():
        typer.echo(line)


def _context_for(argv: List[str]):
    """The context of the (sub)command that argv names, for errors raised without one (e.g. an
    option given without its value): its usage line is still the one to show."""
    try:
        cmd = typer.main.get_command(app)
        ctx = typer.Context(cmd, info_name="repro")
        for token in argv:
            sub = cmd.get_command(ctx, token) if hasattr(cmd, "get_command") and not token.startswith("-") else None
            if sub is None:
                break
            cmd, ctx = sub, typer.Context(sub, info_name=token, parent=ctx)
        return ctx
    except Exception:  # the usage line is a courtesy; the error line is what matters
        return None


def _usage_error_lines(e: BaseException, argv: List[str]) -> list[str]:
    """Typer's usage line and the problem, one line each. Found by what the exception does
    (exit_code, format_message, the failing context), not by its class: Typer has raised plain
    click's exceptions and, since it bundles click, its own copies, which are not subclasses."""
    ctx = getattr(e, "ctx", None) or _context_for(argv)
    lines = []
    if ctx is not None and callable(getattr(ctx, "get_usage", None)):
        lines.append(" ".join(ctx.get_usage().split()))
    problem = " ".join(str(e.format_message()).split())
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and getattr(ctx, "command_path", None) else ""
    lines.append(f"error: {problem}{hint}")
    return lines


def _is_click_exception(e: BaseException) -> bool:
    return (isinstance(getattr(e, "exit_code", None), int) and callable(getattr(e, "format_message", None))
            and any(c.__name__ in ("ClickException", "TyperException") for c in type(e).__mro__))


def _crashed(e: BaseException) -> None:
    import traceback

    traceback.print_exception(e)
    _echo_err(f"run crashed: {type(e).__name__}: {e}. Finished cells are kept; its MLflow run is marked FAILED.")
    sys.exit(1)


def main(argv: Optional[List[str]] = None) -> None:
    """The console script. Typer runs in non-standalone mode, so every outcome comes back here:
    a usage mistake or UserError -> exit 2 with nothing written, Ctrl-C -> 130, a crash -> 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = app(args=argv, prog_name="repro", standalone_mode=False)
    except UserError as e:
        _echo_err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        _echo_err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _echo_err("interrupted; finished cells are kept, run the same command again to resume")
        sys.exit(130)
    except OSError as e:
        if not is_disk_full(e):   # any other OSError is a crash: the handler below
            _crashed(e)
        _echo_err(str(disk_full(e.filename or "a file", e)))   # outside an atomic write (MLflow's store, ...)
        sys.exit(2)
    except Exception as e:
        if _is_click_exception(e):
            if type(e).__name__ == "NoArgsIsHelpError":   # `repro`, `repro sample`: the help text
                typer.echo(e.format_message(), err=True)
            else:
                for line in _usage_error_lines(e, argv):
                    typer.echo(line, err=True)
            sys.exit(e.exit_code)
        _crashed(e)
    # Non-standalone Typer returns an Exit's code (and 130 for a Ctrl-C it caught) instead of raising.
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        if rv == 130:
            _echo_err("interrupted; finished cells are kept, run the same command again to resume")
        sys.exit(rv)


if __name__ == "__main__":
    main()
