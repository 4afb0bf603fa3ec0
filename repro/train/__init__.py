"""Training loop: AMP, EMA, grad clipping, atomic checkpoint + exact resume, DDP, probes."""

from repro.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from repro.train.config import TrainConfig
from repro.train.distributed import cleanup_distributed, is_main
from repro.train.ema import EMA
from repro.train.loop import lr_at_step, train
from repro.train.probes import Timer, peak_memory
from repro.train.sampler import DeterministicBatchSampler

__all__ = [
    "CHECKPOINT_NAME", "DeterministicBatchSampler", "EMA", "Timer", "TrainConfig", "cleanup_distributed",
    "is_main", "load_checkpoint", "lr_at_step", "peak_memory", "save_checkpoint", "train",
]
