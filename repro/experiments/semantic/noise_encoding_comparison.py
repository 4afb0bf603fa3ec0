"""Noise encoding of the segmenter: log sigma(t) vs t as the 4th input channel (000 thesis Sec. 5.2.2).

One cell per encoding: a segmenter is trained with that encoding (or reused if already trained)
and the peak held-out mean IoU over its epochs is reported. Published after 100 epochs on
Cityscapes: ~0.212 (log sigma) vs ~0.213 (t), "no significant differences".
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from repro.errors import UserError

GRID_KEYS = ("encoding",)


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Peak over the first `epochs` epochs (the thesis compared after 100); None = all epochs.
    # With Adam at a constant learning rate, a longer run's first 100 epochs are a 100-epoch run.
    epochs: int | None = Field(None, ge=1)


def prepare(ctx):
    missing = [e for e in ctx.spec.grid.get("encoding", []) if e not in ctx.spec.models]
    if missing:
        raise UserError(f"spec {ctx.spec.id}: no model named for encoding(s) {', '.join(map(str, missing))}; "
                        f"add them under `models`")
    return {}


def run_cell(ctx, state, cell, run):
    model = ctx.model(cell["encoding"])
    if model.meta["noise_encoding"] != cell["encoding"]:
        raise RuntimeError(f"model {model.name} is conditioned on {model.meta['noise_encoding']}, "
                           f"not {cell['encoding']}")
    history = model.meta["history"][: ctx.fixed.epochs]
    curve = [h.get("val_miou") for h in history]
    best = max(range(len(curve)), key=lambda i: curve[i])
    return {
        "values": {"peak_miou": curve[best], "final_miou": curve[-1],
                   "peak_pixel_acc": max(h.get("val_pixel_acc", 0.0) for h in history)},
        "extra": {"epoch_of_peak": history[best]["epoch"], "epochs": len(history),
                  "val_miou_curve": curve, "val_pixel_acc_curve": [h.get("val_pixel_acc") for h in history],
                  "model": model.name, "model_hash": model.hash, "model_sha256": model.meta.get("sha256"),
                  "sigma_max": model.meta["sigma_max"], "train_seconds": model.meta.get("train_seconds")},
    }
