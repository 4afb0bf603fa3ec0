"""Mixed precision off vs on: memory, time per epoch and loss curves (000 thesis Sec. 5.3.1, Tab. 5.1,
Tab. 5.2, Fig. 5.6).

Each cell is one arm (`precision`: fp32, fp16 autocast + GradScaler, bf16 autocast) of one
`repeat`: the score network the spec names (NCSN++ on the VE SDE) trained for a set number of
epochs with the same data, seed and batch size in every arm, by default in a fresh process per
arm. The batch is the largest that fits without mixed precision (thesis: 1 on an RTX 2080 Ti, 5
on an A100), searched on CUDA unless `fixed.batch_size` sets it. A run whose loss turns
non-finite, or whose GradScaler scale collapses, is stopped and recorded as a failed cell (the
thesis discarded such runs): its MLflow run is FAILED and no table shows its numbers.

The family's helpers: one arm's training and measurements (`arm`), the fresh process it runs in
(`worker`), the report (`report`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.atomic import atomic_write_text
from repro.data import load_dataset, stack
from repro.diffusion.schedules import estimate_sigma_max
from repro.errors import UserError
from repro.experiments.amp.arm import ARMS, arm_unavailable, find_batch, run_arm
from repro.rng import seed_for
from repro.specs import cell_key
from repro.trainers.score_sde import parse

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("batch_size", "cpu_peak_rss_mb", "cpu_rss_increase_mb", "cpu_training_peak_rss_mb",
           "cuda_max_memory_allocated_mb", "cuda_max_memory_reserved_mb", "images_per_second",
           "last_epoch_loss", "loss_last_quarter", "nvml_device_used_mb", "nvml_process_used_mb",
           "seconds_per_epoch", "seconds_per_step")
GRID_KEYS = ("precision", "repeat")
ROLES = {"score": ("score_sde",)}   # model roles every spec of this kind names, and the model kinds each takes
CELLS_IN_PARALLEL = False   # each arm's time and memory are its own: `repro run --jobs` runs them one at a time


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    focus: Literal["memory", "time", "loss"] = Field(..., description="what the report compares (Tab. 5.1, 5.2, "
                                                                       "Fig. 5.6)")
    epochs: int = Field(2, ge=1, description="epochs per arm (thesis: 100)")
    max_steps: int | None = Field(None, ge=1, description="stop each arm after this many optimizer steps")
    batch_size: int | None = Field(None, ge=1, description="None: the largest that fits in fp32 (CUDA: searched; "
                                                           "CPU: the model's train.batch_size)")
    batch_limit: int = Field(256, ge=1, description="largest batch the search tries")
    find_amp_batch: bool = Field(False, description="also search the largest batch that fits with mixed precision")
    n_train: int | None = Field(None, ge=1, description="training images; None: the model config's")
    warmup_epochs: int = Field(1, ge=0, description="epochs left out of the mean epoch time")
    warmup_steps_timing: int = Field(5, ge=0, description="steps left out of the mean step time")
    clip_order: Literal["unscale_then_clip", "clip_scaled"] = Field(
        "unscale_then_clip", description="gradient clipping under the GradScaler: after scaler.unscale_ (correct) "
                                         "or on the scaled gradients (the thesis authors' code)")
    min_loss_scale: float = Field(1.0, gt=0, description="a GradScaler scale below this stops the fp16 arm "
                                                         "(from 65536, 16 halvings without a good step)")
    sigma_max: float | None = Field(None, gt=0, description="VE sigma_max; None: the model's, or estimated as "
                                                            "it trains (thesis Sec. 5.4.3)")
    isolate: bool = Field(True, description="a fresh process per arm (per-arm peak memory)")
    curve_points: int = Field(400, ge=2, description="points of the recorded loss curve (binned step losses)")
    inject_nonfinite: dict[str, int] = Field(default_factory=dict,
                                             description="fault injection: precision -> the loss evaluation "
                                                         "that returns NaN (tests the divergence path)")


def prepare(ctx):
    f = ctx.fixed
    for arm in list(f.inject_nonfinite):
        if arm not in ARMS:
            raise UserError(f"spec {ctx.spec.id}: fixed.inject_nonfinite: unknown precision {arm!r} "
                            f"(use {', '.join(ARMS)})")
    if "score" not in ctx.spec.models:
        raise UserError(f"spec {ctx.spec.id}: amp_benchmark needs models.score (a score_sde model config)")
    resolved = ctx.resolved.model("score")
    if resolved.config.kind != "score_sde":
        raise UserError(f"spec {ctx.spec.id}: models.score is {resolved.config.kind}; amp_benchmark trains score_sde")
    sd, md = ctx.spec.dataset, resolved.config.dataset
    if (sd.name, tuple(sd.resolution or ()), sd.split) != (md.name, tuple(md.resolution or ()), md.split):
        raise UserError(f"spec {ctx.spec.id}: dataset {sd.name} {sd.split} {sd.resolution} differs from model "
                        f"{resolved.id}'s {md.name} {md.split} {md.resolution}; set them alike")
    net_cfg, ts = parse(resolved)
    if net_cfg.sde != "ve":
        raise UserError(f"spec {ctx.spec.id}: amp_benchmark trains the thesis's VE SDE model; {resolved.id} is "
                        f"{net_cfg.sde}")
    sigma_max = f.sigma_max or net_cfg.sigma_max
    if sigma_max is None:  # thesis Sec. 5.4.3: the largest distance among random training pairs
        images, _ = stack(load_dataset(md.name, split=md.split, resolution=md.resolution, root=md.root,
                                       n=f.n_train or md.n_train, seed=md.seed))
        sigma_max = estimate_sigma_max(images, net_cfg.sigma_max_pairs, torch.Generator().manual_seed(resolved.config.seed))
    name, overrides, inject = ctx.resolved.model_args("score")
    base = {"model": {"name": name, "profile": ctx.profile, "overrides": overrides, "inject": inject},
            "sigma_max": float(sigma_max), "device": str(ctx.device), "n_train": f.n_train,
            "clip_order": f.clip_order, "min_loss_scale": f.min_loss_scale, "batch_limit": f.batch_limit,
            "threads": torch.get_num_threads(), "isolated": f.isolate}
    state = {"base": base, "batch_note": None, "amp_batch": None}
    if f.batch_size is not None:
        state["batch_size"], state["batch_source"] = f.batch_size, "fixed.batch_size"
    elif ctx.device.type == "cuda":
        search = _cached_search(ctx, base, "fp32")
        state["batch_size"], state["batch_source"] = search["batch_size"], "largest that fits in fp32 (searched)"
        state["batch_search"] = search
        if f.find_amp_batch:
            state["amp_batch"] = {p: _cached_search(ctx, base, p)["batch_size"] for p in ("fp16", "bf16")
                                  if arm_unavailable(p, ctx.device) is None}
    else:
        state["batch_size"], state["batch_source"] = ts.batch_size, f"model {resolved.id}'s train.batch_size"
        state["batch_note"] = ("the largest-batch search runs on CUDA only (a CPU does not fail cleanly with "
                               "out-of-memory); the batch is the model config's")
    return state


def _cached_search(ctx, base: dict, precision: str) -> dict:
    """The batch search at `precision`, kept in the run folder per (spec hash, device name)."""
    path = ctx.work_dir / f"batch_search_{precision}.json"
    # not the device's name: asking for it would start a CUDA context in this process
    tag = {"spec_hash": ctx.resolved.hash, "device": str(ctx.device),
           "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if path.exists() and not ctx.force:
        cached = json.loads(path.read_text())
        if cached.get("tag") == tag:
            return cached["search"]
    job = {**base, "mode": "find_batch", "precision": precision, "seed": ctx.spec.seed, "epochs": 1}
    search = _run_job(ctx, job, ctx.work_dir / f"batch_search_{precision}") if base["isolated"] else None
    if search is None:
        search = find_batch(job)
    atomic_write_text(path, json.dumps({"tag": tag, "search": search}))
    return search


def _run_job(ctx, job: dict, folder: Path) -> dict:
    """Run a job in a fresh Python process; its UserError comes back as ours, a crash as RuntimeError."""
    folder.mkdir(parents=True, exist_ok=True)
    job_path, out_path = folder / "job.json", folder / "result.json"
    out_path.unlink(missing_ok=True)
    atomic_write_text(job_path, json.dumps(job, indent=2))
    proc = subprocess.run([sys.executable, "-m", "repro.experiments.amp.worker", str(job_path), str(out_path)],
                          capture_output=True, text=True)
    if proc.returncode == 2:
        raise UserError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "amp_benchmark worker: bad input")
    if proc.returncode != 0 or not out_path.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"amp_benchmark worker for {job.get('precision')} exited with {proc.returncode}:\n{tail}")
    return json.loads(out_path.read_text())


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    precision, repeat = str(cell.get("precision", "fp32")), int(cell.get("repeat", 0))
    if precision not in ARMS:
        raise UserError(f"spec {ctx.spec.id}: grid precision {precision!r} is not an arm; use {', '.join(ARMS)}")
    why = arm_unavailable(precision, ctx.device)
    if why is not None:
        return {"failed": {"reason": "unavailable", "message": why, "precision": precision}}
    key = cell_key(cell)
    folder = ctx.artifacts_dir(key) / f"arm-{ctx.resolved.hash[:10]}"
    if ctx.force:
        shutil.rmtree(folder, ignore_errors=True)
    job = {**state["base"], "mode": "train", "precision": precision, "seed": _arm_seed(ctx, repeat),
           "batch_size": state["batch_size"], "epochs": f.epochs, "max_steps": f.max_steps,
           "warmup_epochs": f.warmup_epochs, "warmup_steps_timing": f.warmup_steps_timing,
           "curve_points": f.curve_points, "inject_nonfinite_at": f.inject_nonfinite.get(precision),
           "out_dir": str(folder / "train")}
    if f.isolate:
        m = _run_job(ctx, job, folder)
    else:
        m = run_arm(job)
    shutil.rmtree(folder, ignore_errors=True)
    if not any(folder.parent.iterdir()):
        folder.parent.rmdir()
    context = {"batch_source": state["batch_source"], "batch_note": state["batch_note"],
               "batch_search": state.get("batch_search"), "amp_batch": state["amp_batch"], "repeat": repeat,
               "seed": job["seed"], "sigma_max": job["sigma_max"], "epochs": f.epochs}
    if "unavailable" in m:
        return {"failed": {"reason": "unavailable", "message": m["unavailable"], "precision": precision}}
    if "diverged" in m:  # thesis Sec. 5.3.1: such runs "had to be discarded"
        d = m["diverged"]
        return {"failed": {"reason": d["reason"], "message": d["message"], "precision": precision,
                           "step": d["step"], "epoch": d["epoch"], "loss": d["loss"],
                           "last_finite_loss": d["last_finite_loss"], "loss_scale": d["loss_scale"],
                           "device_name": m["device_name"], "batch_size": m["batch_size"]}}
    names = ("seconds_per_epoch", "seconds_per_step", "images_per_second", "cuda_max_memory_allocated_mb",
             "cuda_max_memory_reserved_mb", "nvml_device_used_mb", "nvml_process_used_mb", "cpu_peak_rss_mb",
             "cpu_rss_at_start_mb", "cpu_training_peak_rss_mb", "last_epoch_loss", "loss_last_quarter")
    values = {n: float(m[n]) for n in names if m.get(n) is not None}
    values["batch_size"] = float(m["batch_size"])
    if "cpu_training_peak_rss_mb" in values:
        values["cpu_rss_increase_mb"] = values["cpu_training_peak_rss_mb"] - values["cpu_rss_at_start_mb"]
    _log_curve(run, m)
    extra = {k: v for k, v in m.items() if k not in values}
    extra.update(context)
    extra.update(resample_record(m, f.focus))
    return {"values": values, "extra": extra}


def resample_record(m: dict, focus: str) -> dict:
    """What the claims engine (repro.claims) resamples in this arm, per metric: the timed epochs and the
    step-time bins (unit repeats: repeated measurements of the same work), the late-training step losses
    (unit samples: one batch of images and noises each, shared by the arms of a repeat). Peak memory is
    measured once per arm and has no sampling noise: the same program at the same batch reaches the same
    allocator peak (the NVML figure, polled every 50 ms, up to the polling), so its unit is none."""
    units = {"seconds_per_epoch": ("repeats", len(m.get("seconds_per_epoch_runs") or [])),
             "seconds_per_step": ("repeats", len(m.get("seconds_per_step_runs") or [])),
             "loss_last_quarter": ("samples", len(m.get("loss_last_quarter_per_sample") or []))}
    units.update({k: ("none", 1) for k in ("nvml_device_used_mb", "nvml_process_used_mb", "cuda_max_memory_reserved_mb",
                                           "cuda_max_memory_allocated_mb", "cpu_training_peak_rss_mb",
                                           "cpu_rss_increase_mb", "cpu_peak_rss_mb") if m.get(k) is not None})
    main = {"time": "seconds_per_epoch", "loss": "loss_last_quarter"}.get(focus)
    unit, n = units[main] if main else ("none", 1)
    return {"resample_units": {k: {"unit": u, "n": n} for k, (u, n) in units.items()},
            "resample_unit": unit, "resample_n": n}


def _log_curve(run, m: dict) -> None:
    """The binned loss curve and the epoch losses as MLflow metric histories (batched: one write)."""
    if not hasattr(run, "client"):  # tracking off
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric("train_loss", float(y), now, int(x)) for x, y in zip(m["loss_curve_steps"], m["loss_curve"])]
    items += [Metric("epoch_loss", float(y), now, i) for i, y in enumerate(m.get("epoch_losses", []))]
    for i in range(0, len(items), 500):
        run.client.log_batch(run.run_id, metrics=items[i: i + 500])


def _arm_seed(ctx, repeat: int) -> int:
    """Every precision of a repeat shares its seed: same initial weights, data order and noise."""
    return seed_for(ctx.spec.seed, "amp_benchmark", "repeat", int(repeat)) % 2**31
