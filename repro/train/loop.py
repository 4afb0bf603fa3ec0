"""The generic training loop: AMP, EMA, grad clipping, atomic checkpoint + exact resume, DDP, probes
(settings in config.py, autocast in amp.py, the checkpoint's contents and the resume in resume.py).

One loop serves every network of the suite: the caller passes a `loss_fn(model, batch,
generator)`. Everything random in a run comes from (cfg.seed, rank): the data order
(a permutation per epoch), the loss's noise (a torch.Generator on the device) and
torch's global RNG (dropout). All three are checkpointed, so a run stopped anywhere and
resumed ends with the same weights, bit for bit on the CPU, as one that never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text
from torch import nn
from torch.utils.data import DataLoader, Dataset

from repro.errors import UserError
from repro.train.amp import amp_dtype_for, autocast_context
from repro.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from repro.train.config import TrainConfig, validate_config
from repro.train.distributed import barrier, init_distributed, reduce_mean, wrap_model
from repro.train.ema import EMA
from repro.train.probes import cuda_peak_reserved_mb, peak_memory, reset_peak_memory, synchronize
from repro.train.resume import RunState, checkpoint_payload, restore_run, rng_states
from repro.train.sampler import DeterministicBatchSampler
from repro.rng import derive_seed

LossFn = Callable[[nn.Module, dict, torch.Generator], torch.Tensor]


class StepRule(Protocol):
    """A model whose parts update in turn with their own optimizers (a GAN's G and D, see
    repro/train/gan_step.py) instead of one loss and one optimizer: called per batch, it does its
    own forward, backward and optimizer steps and returns the step loss; its state_dict (the
    optimizers') goes into the checkpoint in the optimizer's place; `lr` is logged."""

    lr: float

    def __call__(self, model: nn.Module, batch: dict, generator: torch.Generator) -> float: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainResult:
    model: nn.Module
    ema: nn.Module | None
    history: list[dict]
    steps: int
    seconds: float
    probes: dict = field(default_factory=dict)


def lr_at_step(base_lr: float, step: int, warmup_steps: int) -> float:
    """Learning rate of optimizer step `step` (1-based) under a linear warm-up."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, step / warmup_steps)


class TrainingDiverged(RuntimeError):
    """A run that can no longer train: a non-finite loss, or a GradScaler scale collapsed below the
    floor (thesis Sec. 5.3.1: such mixed-precision runs "had to be discarded")."""

    def __init__(self, message: str, *, reason: str, step: int, epoch: int, loss: float,
                 last_finite_loss: float | None, loss_scale: float | None = None):
        super().__init__(message)
        self.reason, self.step, self.epoch, self.loss = reason, step, epoch, loss
        self.last_finite_loss, self.loss_scale = last_finite_loss, loss_scale

    def details(self) -> dict:
        return {"reason": self.reason, "step": self.step, "epoch": self.epoch, "loss": self.loss,
                "last_finite_loss": self.last_finite_loss, "loss_scale": self.loss_scale, "message": str(self)}


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _batch_len(batch: dict) -> int:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.ndim > 0:
            return int(v.shape[0])
    return 0


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} it/s" if speed else "-- it/s", style="progress.data.speed")


def _progress_bar(enabled: bool, console: Console | None = None) -> Progress:
    console = console or Console()
    interactive = console.is_terminal or console.is_jupyter
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
        _RateColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not (enabled and interactive),
    )


def train(model: nn.Module, loss_fn: LossFn, dataset: Dataset, cfg: TrainConfig, out_dir: str | Path, *,
          on_epoch_end: Callable[[int, nn.Module], dict[str, float]] | None = None,
          log_metrics: Callable[[dict[str, float], int], None] | None = None,
          progress: bool = True, step_rule: StepRule | None = None) -> TrainResult:
    """Train `model` on `dataset` by minimizing `loss_fn`; resume from out_dir/checkpoint.pt if present.

    Under torchrun this joins the process group (see distributed.py), wraps the model in
    DDP, gives each rank its slice of every global batch, and lets only rank 0 write the
    checkpoint, call on_epoch_end and log. A non-finite loss raises RuntimeError naming
    the step (thesis Sec. 5.3.1: mixed-precision runs sometimes went NaN). With `step_rule`,
    loss_fn is unused: the rule updates the model per batch (fp32, one process).
    """
    validate_config(cfg)
    call_start = time.perf_counter()
    info = init_distributed(cfg.device)
    device = info.device
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME

    model = model.to(device)
    opt_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_class(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if step_rule is not None:
        if cfg.amp or info.world_size > 1:
            raise UserError("train config: a step rule (GAN training) runs in fp32 on one process; set amp=False "
                            "and start one process")
        optimizer = step_rule  # checkpointed and restored through its state_dict / load_state_dict
    amp_dtype = amp_dtype_for(device, cfg.amp_dtype)
    if cfg.amp and amp_dtype == torch.float16 and device.type != "cuda":
        raise UserError(f"train config: amp_dtype float16 (autocast + GradScaler) needs CUDA, the device is {device}; "
                        "use bfloat16 on the CPU")
    use_scaler = cfg.amp and device.type == "cuda" and amp_dtype == torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    noise_gen = torch.Generator(device=device)
    sampler = DeterministicBatchSampler(len(dataset), cfg.batch_size, cfg.seed, info.rank, info.world_size)
    n_batches = sampler.batches_per_epoch()

    ckpt = load_checkpoint(ckpt_path)
    if ckpt is None:
        state = RunState()
        noise_gen.manual_seed(derive_seed(cfg.seed, "noise", info.rank))
        torch.manual_seed(derive_seed(cfg.seed, "torch", info.rank))  # dropout and other global draws
    else:
        state = restore_run(ckpt, cfg, info, len(dataset), model, ema, optimizer, scaler, noise_gen, ckpt_path)
        del ckpt

    net = wrap_model(model, device)
    params = [p for p in model.parameters() if p.requires_grad]
    # Its own generator: a DataLoader otherwise draws its worker base seed from torch's global
    # RNG at every epoch start, which would shift dropout draws after a mid-epoch resume.
    loader_gen = torch.Generator()
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", generator=loader_gen)
    reset_peak_memory(device)

    def reached_max() -> bool:
        return cfg.max_steps is not None and state.step >= cfg.max_steps

    def save() -> None:
        rng = rng_states(noise_gen, device)  # collective: every rank takes part
        if not info.is_main:
            return
        save_checkpoint(ckpt_path, checkpoint_payload(cfg, info, len(dataset), model, ema, optimizer, scaler,
                                                      state, rng))

    total = cfg.epochs * n_batches if cfg.max_steps is None else min(cfg.epochs * n_batches, cfg.max_steps)
    first_step = state.step
    train_seconds, samples, epoch_times = 0.0, 0, []
    last_finite = None
    bar = _progress_bar(progress and info.is_main)
    with bar:
        task = bar.add_task("train", total=total, completed=min(state.step, total), loss=float("nan"))
        while state.epoch < cfg.epochs and not reached_max():
            sampler.set_epoch(state.epoch, state.batch_in_epoch)
            loader_gen.manual_seed(derive_seed(cfg.seed, "loader", info.rank, state.epoch))
            bar.update(task, description=f"epoch {state.epoch + 1}/{cfg.epochs}")
            net.train()
            synchronize(device)
            tick = time.perf_counter()
            for batch in loader:
                batch = _to_device(batch, device)
                with autocast_context(device, cfg.amp, amp_dtype):
                    loss = (loss_fn(net, batch, noise_gen) if step_rule is None
                            else torch.tensor(float(step_rule(net, batch, noise_gen))))
                if loss.ndim != 0:
                    raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
                # reduced before backward so that every rank sees a NaN and stops together
                loss_value = float(reduce_mean(loss.detach().float()))
                if not math.isfinite(loss_value):
                    raise TrainingDiverged(
                        f"training loss is {loss_value} at step {state.step + 1} (epoch {state.epoch}, "
                        f"batch {state.batch_in_epoch}); the run is unusable, discard it "
                        f"(try amp=False, a lower lr or grad_clip)", reason="non_finite_loss", step=state.step + 1,
                        epoch=state.epoch, loss=loss_value, last_finite_loss=last_finite,
                        loss_scale=scaler.get_scale() if use_scaler else None)
                last_finite = loss_value
                if step_rule is not None:  # it has updated the model itself
                    lr = step_rule.lr
                else:
                    (scaler.scale(loss) if use_scaler else loss).backward()
                    if cfg.grad_clip is not None:
                        if use_scaler and not cfg.clip_scaled_grads:
                            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    lr = lr_at_step(cfg.lr, state.step + 1, cfg.warmup_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    if use_scaler:
                        scaler.step(optimizer)
                        scaler.update()
                        if cfg.min_loss_scale is not None and scaler.get_scale() < cfg.min_loss_scale:
                            # overflowing gradients at every step: the scaler halves the scale and skips the step
                            raise TrainingDiverged(
                                f"GradScaler scale {scaler.get_scale():.3g} fell below {cfg.min_loss_scale:g} at step "
                                f"{state.step + 1} (epoch {state.epoch}); the run is unusable, discard it",
                                reason="loss_scale_collapse", step=state.step + 1, epoch=state.epoch, loss=loss_value,
                                last_finite_loss=last_finite, loss_scale=scaler.get_scale())
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(model)

                state.step += 1
                state.batch_in_epoch += 1
                state.epoch_loss_sum += loss_value
                state.epoch_loss_count += 1
                samples += _batch_len(batch) * info.world_size
                bar.update(task, advance=1, loss=loss_value)
                if log_metrics is not None and info.is_main and cfg.log_every and state.step % cfg.log_every == 0:
                    log_metrics({"step_loss": loss_value, "lr": lr}, state.step)
                stop = reached_max()
                mid_epoch = state.batch_in_epoch < n_batches
                if mid_epoch and (stop or (cfg.ckpt_every and state.step % cfg.ckpt_every == 0)):
                    now = time.perf_counter()
                    state.epoch_seconds += now - tick
                    train_seconds += now - tick
                    save()
                    tick = time.perf_counter()
                if stop:
                    break
            synchronize(device)
            elapsed = time.perf_counter() - tick
            state.epoch_seconds += elapsed
            train_seconds += elapsed
            if state.batch_in_epoch < n_batches:
                break  # stopped by max_steps inside the epoch; its checkpoint is written

            record = {"epoch": state.epoch, "loss": state.epoch_loss_sum / max(state.epoch_loss_count, 1),
                      "seconds": state.epoch_seconds, "step": state.step}
            if on_epoch_end is not None and info.is_main:
                model.eval()
                metrics = on_epoch_end(state.epoch, ema.module if ema is not None else model) or {}
                model.train()
                record.update({str(k): float(v) for k, v in metrics.items()})
            state.history.append(record)
            epoch_times.append(state.epoch_seconds)
            if log_metrics is not None and info.is_main:
                log_metrics({k: float(v) for k, v in record.items() if k != "step"}, state.step)
            state.epoch += 1
            state.batch_in_epoch, state.epoch_loss_sum, state.epoch_loss_count, state.epoch_seconds = 0, 0.0, 0, 0.0
            save()
    barrier()

    steps_run = state.step - first_step
    if epoch_times:
        seconds_per_epoch = sum(epoch_times) / len(epoch_times)
    elif steps_run:
        seconds_per_epoch = train_seconds / steps_run * n_batches  # extrapolated from a partial epoch
    else:
        seconds_per_epoch = float("nan")
    mb, kind = peak_memory(device)
    probes = {"peak_memory_mb": mb, "peak_memory_kind": kind, "seconds_per_epoch": seconds_per_epoch,
              "samples_per_second": samples / train_seconds if train_seconds > 0 else float("nan")}
    if device.type == "cuda":
        probes["cuda_max_memory_reserved_mb"] = cuda_peak_reserved_mb(device)
    return TrainResult(model=model, ema=ema.module if ema is not None else None, history=state.history,
                       steps=state.step, seconds=time.perf_counter() - call_start, probes=probes)
