"""The `repro` command line: thin; parses, calls one function of repro.commands, prints.

`repro --help` and `repro list` must answer at once, without torch or mlflow: the command modules
that import them (run, train, sweep, doctor, evaluate, sample) are imported when their command
runs, the others at the top. A user's mistake prints one line and exits 2; a crash inside a run
exits 1 after its MLflow run is marked FAILED and finished cells are kept.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

# OpenMP threads that spin while waiting steal the CPU from the working ones whenever the
# machine is shared (a training step measured 0.41 s spinning vs 0.22 s passive on a loaded
# 2-core box). Set before torch is imported; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from repro.commands.exits import RESUME, crashed, echo_err, is_click_exception, terminated_exit, usage_error_lines
from repro.commands.specs import list_lines, show_lines, spec_ids
from repro.commands.ui import ui_command
from repro.environment import apply_threads
from repro import signals
from repro.errors import UserError, disk_full, is_disk_full
from repro.specs import parse_set

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproduce the tables and figures of the source documents: run specs, train models, "
                       "render reports, browse runs in MLflow.")

ProfileOpt = typer.Option("smoke", "--profile", "-p", help="test | smoke | paper")


LauncherOpt = typer.Option("local", "--launcher", help="local (this machine) | slurm (a job array through "
                           "submitit) | submitit-local (the same jobs as local processes)")
PartitionOpt = typer.Option(None, "--partition", help="with slurm: the partition")
GpusOpt = typer.Option(0, "--gpus-per-node", help="with slurm: GPUs per task")
TimeOpt = typer.Option(60, "--time", help="with slurm: a task's time limit in minutes (then requeued, resuming)")


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


@app.command("list")
def list_cmd() -> None:
    """List every experiment spec: id, title, source, kind."""
    for line in list_lines():
        typer.echo(line)


@app.command()
def show(spec_id: str = typer.Argument(..., help="spec id (see `repro list`)"),
         profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt) -> None:
    """Show a spec resolved at a profile, with the published values."""
    for line in show_lines(spec_id, profile, parse_set(set_)):
        typer.echo(line)


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
                                                  "REPRO_PLAN_WARN_HOURS or 1)"),
        wait: bool = typer.Option(True, "--wait/--no-wait", help="wait while another invocation runs the spec "
                                  "at this profile (--no-wait: refuse, exit 2)"),
        launcher: str = LauncherOpt,
        workers: int = typer.Option(1, "--workers", "-w", help="with slurm / submitit-local: array tasks"),
        partition: Optional[str] = PartitionOpt, gpus_per_node: int = GpusOpt, time_min: int = TimeOpt) -> None:
    """Run every cell of a spec's grid (finished cells are skipped; an interrupted run resumes)."""
    from repro.commands.run import run_command   # torch: imported when the command runs

    run_command(spec_id, profile, set_, device=device, jobs=jobs, devices=devices, force=force,
                progress=progress, threads=threads, yes=yes, max_hours=max_hours, wait=wait, echo=typer.echo,
                launcher=launcher, array=dict(workers=workers, partition=partition, gpus_per_node=gpus_per_node,
                                              time_min=time_min))


@app.command()
def plan(spec_id: str = typer.Argument(..., help="spec id, or `all`"),
         profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
         device: str = typer.Option("auto", help="the device to estimate for: auto | cpu | cuda | cuda:N"),
         calibrate: bool = typer.Option(False, "--calibrate", help="time the spec's networks on the device first "
                                        "(random weights, a few seconds each) and store the calibration"),
         cells: bool = typer.Option(True, "--cells/--no-cells", help="one line per cell")) -> None:
    """What a run will train and sample and what it costs, without running anything."""
    from repro.plan import plan_command   # torch: imported when the command runs
    plan_command(spec_ids(spec_id), profile, parse_set(set_), device, calibrate, typer.echo, cells=cells)


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
          threads: Optional[int] = ThreadsOpt, launcher: str = LauncherOpt, partition: Optional[str] = PartitionOpt,
          gpus_per_node: int = GpusOpt, time_min: int = TimeOpt) -> None:
    """Run an Optuna sweep: each trial is one cell of the base spec (reused when already computed)."""
    from repro.commands.sweep import sweep_command   # torch: imported when the command runs

    code = sweep_command(name, profile, workers=workers, storage=storage, n_trials=n_trials, study=study,
                         refine=refine, status=status, dashboard=dashboard, port=port, device=device,
                         threads=threads, echo=typer.echo, launcher=launcher,
                         array=dict(partition=partition, gpus_per_node=gpus_per_node, time_min=time_min))
    if code:
        raise typer.Exit(code)


@app.command()
def report(spec_id: str = typer.Argument("all", help="spec id, `all`, or sweep:NAME (a sweep's studies)"),
           storage: Optional[str] = typer.Option(None, "--storage", help="with sweep:NAME: " + _STORAGE_HELP)) -> None:
    """Render reports/<id>.md (and figures) from the results files, and reports/README.md."""
    from repro.commands.report import report_command   # torch: imported when the command runs
    report_command(spec_id, storage, typer.echo)


@app.command()
def train(name: str = typer.Argument(..., help="model name (experiments/models/NAME.yaml)"),
          profile: str = ProfileOpt, set_: Optional[List[str]] = SetOpt,
          device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
          force: bool = typer.Option(False, "--force", help="retrain even if the artifact exists"),
          progress: bool = typer.Option(True, "--progress/--no-progress"),
          threads: Optional[int] = ThreadsOpt) -> None:
    """Train a model once for a profile and store it under artifacts/ (reused by every spec)."""
    from repro.commands.train import train_command   # torch: imported when the command runs

    train_command(name, profile, set_, device=device, force=force, progress=progress, threads=threads,
                  echo=typer.echo)


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
    from repro.commands.evaluate import evaluate_folder   # torch: imported when the command runs

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
    from repro.commands.sample_semantic import sample_from_map   # torch: imported when the command runs

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
    from repro.commands.sample_ddpm import sample_from_mask   # torch: imported when the command runs

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
    code = ui_command(port, backend_store_uri, workers, optuna, storage, typer.echo)
    if code is not None:   # the MLflow server's exit code (optuna-dashboard returns here)
        raise typer.Exit(code)


@app.command()
def pipeline(profile: Optional[str] = typer.Option(None, "--profile", "-p",
                                                  help="default: the profile in params.yaml"),
             params: bool = typer.Option(False, "--params", help="instead: update params.yaml (every spec's knobs "
                                                               "at the profile; values already set stay)")) -> None:
    """Print the DVC pipeline derived from experiments/ (`repro pipeline > dvc.yaml`)."""
    from repro.commands.dvc import pipeline_command   # torch: imported when the command runs
    pipeline_command(profile, params, typer.echo)


@app.command("dvc-repro")
def dvc_repro(targets: Optional[List[str]] = typer.Argument(None, help="stages (default: the whole pipeline)"),
              jobs: int = typer.Option(2, "--jobs", "-j", help="stages side by side (1: one at a time)")) -> None:
    """`dvc repro` with independent stages side by side (DVC's parallel stage execution, scheduled):
    each changed stage as `dvc repro --single-item`, upstream first; logs in logs/pipeline/."""
    from repro.commands.dvc import dvc_repro_command   # torch: imported when the command runs
    raise typer.Exit(dvc_repro_command(list(targets or []), jobs, typer.echo))


@app.command()
def compare(spec_id: str = typer.Argument("all", help="spec id, or `all`"),
            fmt: str = typer.Option("csv", "--format", "-f", help="csv | md | json"),
            out: Optional[str] = typer.Option(None, "--out", "-o", help="write to this file (default: stdout)"),
            metrics_dir: Optional[str] = typer.Option(
                None, "--metrics-dir", help="instead: write DIR/<spec>.json (dvc metrics) and DIR/<spec>.csv "
                                            "(dvc plots) of the reproduced cells at --profile"),
            claims: bool = typer.Option(False, "--claims", help="instead: the documents' claims, one row per "
                                                               "claim and profile, judged by repro.claims"),
            profile: str = ProfileOpt) -> None:
    """The paper-vs-reproduced table: one row per published value, reproduced value per profile, verdict."""
    from repro.commands.compare import compare_command   # torch: imported when the command runs
    compare_command(spec_id, fmt, out, metrics_dir, profile, typer.echo, claims=claims)


@app.command()
def doctor() -> None:
    """Versions against requirements.lock, torch's build and threads, device, data, weights, MLflow store."""
    from repro.commands.doctor import doctor_lines   # torch: imported when the command runs
    for line in doctor_lines():
        typer.echo(line)


@app.command()
def track(spec_id: str = typer.Argument(..., help="spec id, or `all`"), profile: str = ProfileOpt) -> None:
    """Log finished cells that MLflow does not have (its store was away) from their results files, once."""
    from repro.commands.track import track_command   # mlflow: imported when the command runs
    track_command(spec_id, profile, typer.echo)


def main(argv: Optional[List[str]] = None) -> None:
    """The console script. Typer runs in non-standalone mode, so every outcome comes back here:
    a usage mistake or UserError -> exit 2 with nothing written, Ctrl-C -> 130, SIGTERM -> 143
    (Ctrl-C's way out: KILLED runs, no temporaries), a crash -> 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    signals.install()
    try:
        rv = app(args=argv, prog_name="repro", standalone_mode=False)
    except UserError as e:
        echo_err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        if signals.received():
            terminated_exit()
        echo_err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        if signals.received():
            terminated_exit()
        echo_err(f"interrupted; {RESUME}")
        sys.exit(130)
    except OSError as e:
        if not is_disk_full(e):   # any other OSError is a crash: the handler below
            crashed(e, argv)
        echo_err(str(disk_full(e.filename or "a file", e)))   # outside an atomic write (MLflow's store, ...)
        sys.exit(2)
    except Exception as e:
        if is_click_exception(e):
            if type(e).__name__ == "NoArgsIsHelpError":   # `repro`, `repro sample`: the help text
                typer.echo(e.format_message(), err=True)
            else:
                for line in usage_error_lines(app, e, argv):
                    typer.echo(line, err=True)
            sys.exit(e.exit_code)
        crashed(e, argv)
    if signals.received():   # a command that caught the interrupt itself (repro ui) and returned
        terminated_exit()
    # Non-standalone Typer returns an Exit's code (and 130 for a Ctrl-C it caught) instead of raising.
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        if rv == 130:
            echo_err(f"interrupted; {RESUME}")
        sys.exit(rv)


if __name__ == "__main__":
    main()
