"""The training loop's settings (TrainConfig) and their check."""

from __future__ import annotations

from dataclasses import dataclass

from repro.errors import UserError
from repro.train.amp import AMP_DTYPES


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 8  # per process; the global batch is batch_size * world_size
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # "adamw" (decoupled weight decay) | "adam" (L2 in the gradient, as DG's train.py)
    amp: bool = False  # CUDA: fp16 autocast + GradScaler; CPU: bf16 autocast, no scaler
    amp_dtype: str | None = None  # "float16" | "bfloat16" | None (the device's default above); bf16: no scaler
    clip_scaled_grads: bool = False  # True: clip the *scaled* grads, no unscale_ (the thesis authors' code's order)
    min_loss_scale: float | None = None  # stop (TrainingDiverged) when the GradScaler's scale falls below this
    ema_decay: float | None = 0.999  # None = no EMA
    grad_clip: float | None = 1.0  # max global grad norm; None = off
    ckpt_every: int = 0  # also checkpoint every N optimizer steps (0 = only at each epoch end)
    max_steps: int | None = None  # stop after this many optimizer steps in total
    warmup_steps: int = 0  # linear lr warm-up
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0  # DataLoader worker processes
    log_every: int = 0  # also call log_metrics every N steps with the step loss (0 = per epoch only)


def validate_config(cfg: TrainConfig) -> None:
    checks = [
        (cfg.epochs >= 0, f"epochs must be >= 0, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}"),
        (cfg.lr > 0, f"lr must be > 0, got {cfg.lr}"),
        (cfg.ema_decay is None or 0.0 <= cfg.ema_decay <= 1.0, f"ema_decay must lie in [0, 1], got {cfg.ema_decay}"),
        (cfg.grad_clip is None or cfg.grad_clip > 0, f"grad_clip must be > 0 or None, got {cfg.grad_clip}"),
        (cfg.ckpt_every >= 0, f"ckpt_every must be >= 0, got {cfg.ckpt_every}"),
        (cfg.max_steps is None or cfg.max_steps >= 0, f"max_steps must be >= 0 or None, got {cfg.max_steps}"),
        (cfg.warmup_steps >= 0, f"warmup_steps must be >= 0, got {cfg.warmup_steps}"),
        (cfg.amp_dtype in (None, *AMP_DTYPES), f"amp_dtype must be float16, bfloat16 or None, got {cfg.amp_dtype!r}"),
        (cfg.optimizer in ("adamw", "adam"), f"optimizer must be adamw or adam, got {cfg.optimizer!r}"),
        (cfg.min_loss_scale is None or cfg.min_loss_scale > 0, f"min_loss_scale must be > 0 or None, got {cfg.min_loss_scale}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UserError(f"train config: {msg}")
