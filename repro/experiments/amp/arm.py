"""One arm of the mixed-precision benchmark: train the score network at one precision and measure it.

Thesis Sec. 5.3.1: NCSN++ trained "with the same model settings" once with mixed precision off
and once on, at the largest batch that fits without it; per arm the total vRAM needed (Tab.
5.1), the mean time of one epoch (Tab. 5.2) and the loss curve (Fig. 5.6). An arm is described
by a JSON-able `job` dict so that it can run in a fresh process (`repro.experiments.amp.worker`):
a process's peak memory then belongs to that arm alone.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from repro.data import load_dataset
from repro.diffusion.losses import dsm_loss
from repro.diffusion.sde import net_score_fn
from repro.environment import cpu_bf16_flags, cpu_model
from repro.errors import UserError
from repro.metrics.spread import compact
from repro.specs import resolve_model
from repro.train.batch_finder import largest_batch_that_fits
from repro.train.amp import autocast_context
from repro.train.config import TrainConfig
from repro.train.loop import TrainingDiverged, train
from repro.train.probes import CpuRssPeak, NvmlPeakMemory, cpu_peak_rss_mb, reset_peak_memory
from repro.trainers.score_model import make_sde, to_model_space
from repro.trainers.score_sde import build_net, parse, random_hflip

# arm -> (autocast on, autocast dtype); "fp16" is PyTorch AMP on CUDA: fp16 autocast + GradScaler
ARMS: dict[str, tuple[bool, str | None]] = {"fp32": (False, None), "fp16": (True, "float16"),
                                            "bf16": (True, "bfloat16")}
ARM_LABELS = {"fp32": "fp32 (mixed precision off)", "fp16": "fp16 autocast + GradScaler",
              "bf16": "bf16 autocast (no scaler)"}


def arm_unavailable(precision: str, device: torch.device) -> str | None:
    """Why an arm cannot run on `device` (None: it can). Asks nothing of the GPU: a CUDA context in
    the parent process would count in the device-level memory of every arm (bf16 support is checked
    by the arm's own process)."""
    if precision == "fp16" and device.type != "cuda":
        return (f"fp16 autocast + GradScaler is the CUDA arm (PyTorch AMP as the thesis used it); not run on "
                f"{device}, where the mixed-precision arm is bf16")
    return None


def device_name(device: torch.device) -> str:
    """The accelerator's marketing name, or the CPU model with the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = cpu_model()
    return f"CPU {model} ({torch.get_num_threads()} torch threads)"


# ----------------------------------------------------------------------------- pieces

def _resolved_model(job: dict[str, Any]):
    m = job["model"]
    return resolve_model(m["name"], m["profile"], m.get("overrides"), inject=m.get("inject"))


def training_pieces(job: dict[str, Any]):
    """(net, loss_fn, train_set, settings) of the score model the job names, as repro.trainers.score_sde
    trains it (thesis Eq. 4.14, lambda = std^2), with the job's sigma_max (estimated once by the parent)."""
    resolved = _resolved_model(job)
    net_cfg, ts = parse(resolved)
    ds = resolved.config.dataset
    train_set = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root,
                             n=job.get("n_train") or ds.n_train, seed=ds.seed)
    sde = make_sde({"name": net_cfg.sde, "N": net_cfg.num_scales, "sigma_min": net_cfg.sigma_min,
                    "sigma_max": job["sigma_max"], "beta_min": net_cfg.beta_min, "beta_max": net_cfg.beta_max})
    centered = net_cfg.is_centered()
    inject_at = job.get("inject_nonfinite_at")
    calls = {"n": 0}

    def loss_fn(model, batch, generator):
        x0 = to_model_space(batch["image"], centered)
        if ts.random_flip:
            x0 = random_hflip(x0, generator)
        loss = dsm_loss(net_score_fn(model, sde), sde, x0, generator, eps=ts.eps, reduce_mean=ts.reduce_mean)
        calls["n"] += 1
        if inject_at is not None and calls["n"] == inject_at:  # fault injection (fixed.inject_nonfinite)
            loss = loss * float("nan")
        return loss

    with torch.random.fork_rng(devices=[]):  # the initial weights follow the arm's seed, as in score_sde
        torch.manual_seed(job["seed"])
        net = build_net(resolved)
    return net, loss_fn, train_set, ts


def _train_config(job: dict[str, Any], ts, batch_size: int, epochs: int, max_steps: int | None):
    amp, dtype = ARMS[job["precision"]]
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=ts.lr, amp=amp, amp_dtype=dtype,
                       clip_scaled_grads=job["clip_order"] == "clip_scaled", ema_decay=ts.ema_decay,
                       grad_clip=ts.grad_clip, max_steps=max_steps, warmup_steps=ts.warmup_steps,
                       min_loss_scale=job["min_loss_scale"] if job["precision"] == "fp16" else None,
                       seed=job["seed"], device=job["device"], log_every=1)


# ----------------------------------------------------------------------------- batch search

def probe_batch(job: dict[str, Any], batch_size: int, steps: int = 2) -> None:
    """Two optimizer steps at `batch_size` with everything training holds (weights, EMA copy, AdamW
    state, activations, GradScaler): returns if it fits, raises out-of-memory if it does not."""
    net, loss_fn, train_set, ts = training_pieces(job)
    device = torch.device(job["device"])
    amp, dtype_name = ARMS[job["precision"]]
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype_name or "")
    net = net.to(device).train()
    ema = copy.deepcopy(net) if ts.ema_decay is not None else None
    opt = torch.optim.AdamW(net.parameters(), lr=ts.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)
    image = train_set[0]["image"]
    batch = {"image": image.unsqueeze(0).repeat(batch_size, *([1] * image.ndim)).to(device)}
    g = torch.Generator(device=device).manual_seed(0)
    try:
        for _ in range(steps):
            with autocast_context(device, amp, dtype):
                loss = loss_fn(net, batch, g)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        del net, ema, opt, batch


def find_batch(job: dict[str, Any]) -> dict[str, Any]:
    """The largest batch that fits at the job's precision (grow, then bisect; out-of-memory caught)."""
    search = largest_batch_that_fits(lambda b: probe_batch(job, b), start=1, limit=job["batch_limit"])
    return search.as_dict()


# ----------------------------------------------------------------------------- one arm

def _read_steps(path: Path) -> dict[int, dict]:
    """Step records written so far (a resumed arm recomputes steps after its checkpoint: last wins)."""
    out: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out[int(rec["step"])] = rec
    return out


MAX_UNITS = 1000   # per-unit lists a cell stores: at most this many (equal bins of consecutive units)


def equal_bins(values: list[float], max_bins: int = MAX_UNITS) -> list[float]:
    """Means of equal bins of consecutive values, at most `max_bins` of them; the first
    len % size values are left out so that every bin has the same size (then the mean of the bin
    means is the mean of the values kept). Up to max_bins values: the values themselves."""
    if not values:
        return []
    size = math.ceil(len(values) / max_bins)
    kept = values[len(values) % size:] if size > 1 else values
    return [sum(kept[i: i + size]) / size for i in range(0, len(kept), size)]


def timing_summary(steps: list[dict], history: list[dict], batch_size: int, warmup_epochs: int,
                   warmup_steps: int, steps_per_epoch: int) -> dict[str, Any]:
    """Mean time per step and per epoch after warm-up, images per second, and the repeated
    measurements behind the means (`seconds_per_epoch_runs`: each timed epoch; `seconds_per_step_runs`:
    the step times, in at most MAX_UNITS equal bins of consecutive steps), which the claims engine
    resamples (run r of every arm is its r-th timed epoch / step bin: the arms share data and batch).

    A step's time is the gap to the previous step of the same epoch and process (the first step of
    an epoch also starts the data loader; gaps across epochs include the checkpoint write)."""
    gaps = [s["t"] - p["t"] for p, s in zip(steps, steps[1:])
            if s["epoch"] == p["epoch"] and s["session"] == p["session"] and s["step"] == p["step"] + 1
            and s["step"] > warmup_steps]
    step_bins = equal_bins(gaps)
    per_step = sum(step_bins) / len(step_bins) if step_bins else float("nan")
    timed = [h["seconds"] for h in history if h["epoch"] >= warmup_epochs]
    per_epoch = sum(timed) / len(timed) if timed else per_step * steps_per_epoch
    return {"seconds_per_step": per_step, "seconds_per_epoch": per_epoch,
            "images_per_second": batch_size / per_step if gaps else float("nan"),
            "epochs_timed": len(timed), "steps_timed": len(gaps),
            "epoch_time_from": "epochs" if timed else "steps x steps per epoch",
            "seconds_per_epoch_runs": compact(timed),
            "seconds_per_step_runs": compact(step_bins),
            "step_bin_size": math.ceil(len(gaps) / MAX_UNITS) if gaps else 0}


def late_loss(steps: list[dict]) -> tuple[float, list[float], int]:
    """(mean step loss over the last quarter of the steps, the per-unit losses behind it: the step
    losses in at most MAX_UNITS equal bins of consecutive steps, the bin size). The arms of a repeat
    share data order and noise, so unit u is the same batches in every arm (paired)."""
    tail = [s["loss"] for s in steps[-max(1, len(steps) // 4):]] if steps else []
    bins = equal_bins(tail)
    size = math.ceil(len(tail) / MAX_UNITS) if tail else 0
    return (sum(bins) / len(bins) if bins else float("nan")), compact(bins), size


def loss_curve(steps: list[dict], points: int) -> tuple[list[int], list[float]]:
    """Step losses averaged over at most `points` equal bins of consecutive steps."""
    if not steps:
        return [], []
    size = max(1, math.ceil(len(steps) / points))
    xs, ys = [], []
    for i in range(0, len(steps), size):
        chunk = steps[i: i + size]
        xs.append(int(chunk[-1]["step"]))
        ys.append(sum(c["loss"] for c in chunk) / len(chunk))
    return xs, ys


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """Train one arm (resuming from its checkpoint) and return its measurements, or
    {"diverged": {...}} when the loss went non-finite or the loss scale collapsed."""
    device = torch.device(job["device"])
    if job["precision"] == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return {"unavailable": f"{torch.cuda.get_device_name(device)} has no bf16 support"}
    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    steps_path = out_dir / "steps.jsonl"
    net, loss_fn, train_set, ts = training_pieces(job)
    batch = int(job["batch_size"])
    steps_per_epoch = math.ceil(len(train_set) / batch)
    cfg = _train_config(job, ts, batch, job["epochs"], job.get("max_steps"))
    session = time.time_ns()
    buffer: list[dict] = []

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if "step_loss" in metrics:
            epoch = (step - 1) // steps_per_epoch
            buffer.append({"step": step, "loss": metrics["step_loss"], "t": time.perf_counter(), "epoch": epoch,
                           "session": session})
        else:  # the epoch's record: flush the steps so a resumed arm keeps them
            with steps_path.open("a") as fh:
                fh.writelines(json.dumps(b) + "\n" for b in buffer)
            buffer.clear()

    if device.type == "cuda":
        torch.cuda.empty_cache()
    reset_peak_memory(device)
    diverged = None
    with NvmlPeakMemory(device) as nvml, CpuRssPeak() as rss:
        try:
            result = train(net, loss_fn, train_set, cfg, out_dir, log_metrics=log_metrics, progress=False)
        except TrainingDiverged as exc:
            diverged = exc.details()
            result = None
    with steps_path.open("a") as fh:
        fh.writelines(json.dumps(b) + "\n" for b in buffer)
    steps = [s for _, s in sorted(_read_steps(steps_path).items())]
    measured: dict[str, Any] = {"precision": job["precision"], "arm": ARM_LABELS[job["precision"]],
                                "device_name": device_name(device), "batch_size": batch,
                                "steps_per_epoch": steps_per_epoch, "n_train": len(train_set),
                                "parameters": sum(p.numel() for p in net.parameters()),
                                "clip_order": job["clip_order"], "isolated_process": bool(job.get("isolated")),
                                "torch": torch.__version__}
    if device.type == "cpu":
        measured["cpu_bf16_flags"] = cpu_bf16_flags()
    if diverged is not None:
        measured["diverged"] = diverged
        measured["steps_completed"] = diverged["step"] - 1
        shutil.rmtree(out_dir, ignore_errors=True)
        return measured

    measured.update(timing_summary(steps, result.history, batch, job["warmup_epochs"], job["warmup_steps_timing"],
                                   steps_per_epoch))
    if device.type == "cuda":
        measured["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        measured["cuda_max_memory_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
        measured["nvml_device_used_mb"] = nvml.device_mb
        measured["nvml_process_used_mb"] = nvml.process_mb
        measured["nvml_device_total_mb"] = nvml.total_mb
        measured["nvml_unavailable"] = nvml.unavailable
    elif job.get("isolated"):
        measured["cpu_peak_rss_mb"] = cpu_peak_rss_mb()  # of this fresh process: this arm only
        if rss.peak_mb is not None:  # what training itself adds to the process (data loading left out)
            measured["cpu_rss_at_start_mb"] = rss.start_mb
            measured["cpu_training_peak_rss_mb"] = rss.peak_mb
    else:
        measured["cpu_memory_unavailable"] = ("fixed.isolate is false: the arm shares its process's peak RSS "
                                              "with everything before it")
    xs, ys = loss_curve(steps, job["curve_points"])
    measured.update({"loss_curve_steps": xs, "loss_curve": ys,
                     "epoch_losses": [h["loss"] for h in result.history], "steps_completed": result.steps,
                     "last_epoch_loss": result.history[-1]["loss"] if result.history else float("nan")})
    measured["loss_last_quarter"], measured["loss_last_quarter_per_sample"], measured["loss_bin_size"] = late_loss(steps)
    shutil.rmtree(out_dir, ignore_errors=True)  # the checkpoint is no model to reuse
    return measured


def check_job(job: dict[str, Any]) -> None:
    if job["precision"] not in ARMS:
        raise UserError(f"amp_benchmark: unknown precision {job['precision']!r}; use one of {', '.join(ARMS)}")
