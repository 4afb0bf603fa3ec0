"""Launched twice by tests/test_train.py through torchrun (gloo, CPU): a tiny DDP training run.

Each rank saves its final weights to OUT/rank<r>.pt; the test compares them with each
other and with single-process training on the global batch. The tiny model, data and
loss live here so that the test builds exactly the same ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

PER_RANK_BATCH = 4
WORLD = 2


class Regression(Dataset):
    """16 random 8x8 inputs with a fixed linear target: a deterministic loss (no noise draws)."""

    def __init__(self, n: int = 16):
        g = torch.Generator().manual_seed(11)
        self.x = torch.randn(n, 1, 8, 8, generator=g)
        self.y = self.x.flatten(1) @ torch.randn(64, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "target": self.y[i], "index": i}


def make_model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(5)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 2))


def mse_loss(model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
    return ((model(batch["image"]) - batch["target"]) ** 2).mean()


def config(batch_size: int):
    from repro.train import TrainConfig

    return TrainConfig(epochs=2, batch_size=batch_size, lr=1e-2, ema_decay=0.9, grad_clip=1.0, seed=3)


def main(out: Path) -> None:
    from repro.train import cleanup_distributed, train
    from repro.train.distributed import rank

    result = train(make_model(), mse_loss, Regression(), config(PER_RANK_BATCH), out / "run", progress=False)
    torch.save({"model": result.model.state_dict(), "ema": result.ema.state_dict(), "history": result.history,
                "world_size": torch.distributed.get_world_size()}, out / f"rank{rank()}.pt")
    cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
