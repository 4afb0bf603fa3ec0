"""Training loop: AMP, EMA, grad clipping, atomic checkpoint + exact resume, DDP, probes."""

from repro.train.amp import autocast_context
from repro.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from repro.train.config import TrainConfig
from repro.train.distributed import (
    DistInfo,
    cleanup_distributed,
    init_distributed,
    is_main,
    reduce_mean,
    unwrap_model,
    wrap_model,
)
from repro.train.ema import EMA
from repro.train.loop import TrainResult, lr_at_step, train
from repro.train.probes import Timer, peak_memory, reset_peak_memory
from repro.train.sampler import DeterministicBatchSampler, derive_seed, epoch_permutation

__all__ = [
    "CHECKPOINT_NAME", "DeterministicBatchSampler", "DistInfo", "EMA", "Timer", "TrainConfig", "TrainResult",
    "autocast_context", "cleanup_distributed", "derive_seed", "epoch_permutation", "init_distributed", "is_main",
    "load_checkpoint", "lr_at_step", "peak_memory", "reduce_mean", "reset_peak_memory", "save_checkpoint",
    "train", "unwrap_model", "wrap_model",
]
