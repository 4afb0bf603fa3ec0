"""Segmenter accuracy and mean IoU at fixed timesteps t (000 thesis Fig. 5.9, Sec. 5.4.3).

The trained noise-conditional U-Net scores held-out images noised to sigma(t); one cell per t.
The thesis evaluated 41 timesteps in [0, 0.8] and found the values at t = 0.8 no better than
beyond it, where the network was never trained ("just guessing").
"""
from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.plots import pyplot, save
from repro.trainers.noisy_segmenter import score_at

GRID_KEYS = ("t",)


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_images: int = Field(500, ge=1, le=1_000_000, description="held-out images scored at every t")


def prepare(ctx):
    from repro.data import dataset_info, load_dataset, stack

    model = ctx.model("segmenter")
    ds = ctx.spec.dataset
    info = dataset_info(ds.name)
    data = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root,
                        n=ctx.spec.fixed["n_images"], seed=ds.seed)
    images, labels = stack(data, limit=ctx.spec.fixed["n_images"])
    # Chance level: always predicting the most frequent class of these images.
    valid = labels if info.ignore_index is None else labels[labels != info.ignore_index]
    counts = torch.bincount(valid.flatten(), minlength=info.num_classes).double()
    chance_acc = float(counts.max() / counts.sum())
    return {"model": model, "images": images, "labels": labels, "info": info, "chance_pixel_acc": chance_acc}


def run_cell(ctx, state, cell, run):
    meta = state["model"].meta
    info = state["info"]
    with torch.no_grad():
        s = score_at(state["model"].net, state["images"], state["labels"], float(cell["t"]),
                     encoding=meta["noise_encoding"], sigma_min=meta["sigma_min"], sigma_max=meta["sigma_max"],
                     generator=ctx.generator("t", cell["t"]), num_classes=info.num_classes,
                     ignore_index=info.ignore_index)
    return {
        "values": {"pixel_acc": s["pixel_acc"], "miou": s["miou"], "miou_dataset": s["miou_dataset"]},
        "extra": {"chance_pixel_acc": state["chance_pixel_acc"], "n_images": int(state["images"].shape[0]),
                  "model": state["model"].name, "model_hash": state["model"].hash,
                  "model_sha256": meta.get("sha256"), "sigma_max": meta["sigma_max"],
                  "t_max_trained": meta["t_max"], "per_class_iou": s.get("per_class_iou")},
    }


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    plt = pyplot()
    df = df.sort_values("t")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(df["t"], df["pixel_acc"], marker="o", ms=3, label="pixel accuracy")
    ax.plot(df["t"], df["miou"], marker="s", ms=3, label="mean IoU (per-image, thesis code)")
    if "miou_dataset" in df:
        ax.plot(df["t"], df["miou_dataset"], ls=":", label="mean IoU (dataset confusion matrix)")
    if "chance_pixel_acc" in df:
        ax.axhline(float(df["chance_pixel_acc"].iloc[0]), color="grey", ls="--", lw=1,
                   label="chance (majority class) accuracy")
    t_max = float(df["t_max_trained"].iloc[0]) if "t_max_trained" in df else 0.8
    ax.axvspan(t_max, max(float(df["t"].max()), t_max), color="red", alpha=0.08, label="not trained (t > t_max)")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.set_title("Noise-conditional U-Net on noisy held-out images (cf. thesis Fig. 5.9)")
    ax.legend(fontsize=8)
    return [save(fig, out_dir / f"{stem}_curve.png")]


def report_notes(spec, df) -> list[str]:
    df = df.sort_values("t")
    notes = []
    first, last_trained = df.iloc[0], df[df["t"] <= 0.8 + 1e-9].iloc[-1]
    if "chance_pixel_acc" in df:
        notes.append(f"At t = {first['t']:.2f}: pixel accuracy {first['pixel_acc']:.3f} vs chance "
                     f"{first['chance_pixel_acc']:.3f}; mean IoU {first['miou']:.3f}.")
    rho = df[["t", "pixel_acc"]].corr(method="spearman").iloc[0, 1]
    rho_iou = df[["t", "miou"]].corr(method="spearman").iloc[0, 1]
    notes.append(f"Spearman correlation with t: pixel accuracy {rho:.2f}, mean IoU {rho_iou:.2f} "
                 f"(the thesis: both fall as t grows).")
    beyond = df[df["t"] > 0.8 + 1e-9]
    if len(beyond):
        notes.append(f"Mean IoU at t = {last_trained['t']:.2f}: {last_trained['miou']:.3f}; beyond 0.8 "
                     f"(never trained): {beyond['miou'].mean():.3f} on average (the thesis: not significantly "
                     f"lower, the network is just guessing).")
    return notes
