"""Segmenter accuracy and mean IoU at fixed timesteps t (000 thesis Fig. 5.9, Sec. 5.4.3).

The trained noise-conditional U-Net scores held-out images noised to sigma(t); one cell per t.
The thesis evaluated 41 timesteps in [0, 0.8] and found the values at t = 0.8 no better than
beyond it, where the network was never trained ("just guessing").
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.data import dataset_info, load_dataset, stack
from repro.experiments.semantic.scoring import compliance, map_counts, unit_extras
from repro.trainers.noisy_segmenter import predict

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("miou", "miou_dataset", "pixel_acc")
GRID_KEYS = ("t",)
# model roles every spec of this kind names, and the model kinds each takes
ROLES = {"segmenter": ("noisy_segmenter",)}


class Grid(BaseModel):
    """One grid value's type and range (repro.experiments.validate_spec_for_kind)."""
    t: float = Field(ge=0, le=1, description="diffusion time of the VE SDE")


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_images: int = Field(500, ge=1, le=1_000_000, description="validation images (not trained on), scored at every t")


def prepare(ctx):
    f = ctx.fixed
    model = ctx.model("segmenter")
    ds = ctx.spec.dataset
    info = dataset_info(ds.name)
    data = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=f.n_images, seed=ds.seed)
    images, labels = stack(data, limit=f.n_images)
    # Chance level: always predicting the most frequent class of these images.
    valid = labels if info.ignore_index is None else labels[labels != info.ignore_index]
    counts = torch.bincount(valid.flatten(), minlength=info.num_classes).double()
    chance_acc = float(counts.max() / counts.sum())
    return {"model": model, "images": images, "labels": labels, "info": info, "chance_pixel_acc": chance_acc}


def run_cell(ctx, state, cell, run):
    meta = state["model"].meta
    info = state["info"]
    with torch.no_grad():   # the trainer's score_at: predict, then SegmentationScores
        pred = predict(state["model"].net, state["images"], float(cell["t"]), encoding=meta["noise_encoding"],
                       sigma_min=meta["sigma_min"], sigma_max=meta["sigma_max"],
                       generator=ctx.generator("t", cell["t"]))
    s = compliance(pred, state["labels"], info.num_classes, info.ignore_index)
    # image i is the same held-out image in every cell (its noise draw differs with t): paired resamples
    units = unit_extras(map_counts(pred, state["labels"], info.num_classes, info.ignore_index), "images")
    return {
        "values": {"pixel_acc": s["pixel_acc"], "miou": s["miou"], "miou_dataset": s["miou_dataset"]},
        "extra": {"chance_pixel_acc": state["chance_pixel_acc"], "n_images": int(state["images"].shape[0]),
                  "model": state["model"].name, "model_hash": state["model"].hash,
                  "model_sha256": meta.get("sha256"), "sigma_max": meta["sigma_max"],
                  "t_max_trained": meta["t_max"], "per_class_iou": s.get("per_class_iou"), **units},
    }
