"""Noise encoding of the segmenter: log sigma(t) vs t as the 4th input channel (000 thesis Sec. 5.2.2).

One cell per encoding: a segmenter is trained with that encoding (or reused if already trained)
and the peak held-out mean IoU over its epochs is reported. Published after 100 epochs on
Cityscapes: ~0.212 (log sigma) vs ~0.213 (t), "no significant differences".
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from repro.plots import pyplot, save

GRID_KEYS = ("encoding",)


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Peak over the first `epochs` epochs (the thesis compared after 100); None = all epochs.
    # With Adam at a constant learning rate, a longer run's first 100 epochs are a 100-epoch run.
    epochs: int | None = Field(None, ge=1)


def prepare(ctx):
    missing = [e for e in ctx.spec.grid.get("encoding", []) if e not in ctx.spec.models]
    if missing:
        from repro.errors import UserError

        raise UserError(f"spec {ctx.spec.id}: no model named for encoding(s) {', '.join(map(str, missing))}; "
                        f"add them under `models`")
    return {}


def run_cell(ctx, state, cell, run):
    model = ctx.model(cell["encoding"])
    if model.meta["noise_encoding"] != cell["encoding"]:
        raise RuntimeError(f"model {model.name} is conditioned on {model.meta['noise_encoding']}, "
                           f"not {cell['encoding']}")
    history = model.meta["history"][: ctx.spec.fixed["epochs"]]
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


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for _, row in df.iterrows():
        curve = row.get("val_miou_curve")
        if isinstance(curve, list):
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=f"encoding = {row['encoding']}")
    for cell in spec.paper.cells:
        ax.axhline(cell["peak_miou"], ls="--", lw=1, color="grey")
        ax.annotate(f"published peak ({cell['encoding']}): {cell['peak_miou']}", (1, cell["peak_miou"]),
                    fontsize=7, va="bottom")
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out mean IoU (t spread over [0, 0.8])")
    ax.set_title("Noise encoding: log sigma(t) vs t (cf. thesis Sec. 5.2.2)")
    ax.legend(fontsize=8)
    return [save(fig, out_dir / f"{stem}_curves.png")]


def report_notes(spec, df) -> list[str]:
    if len(df) < 2:
        return []
    by = dict(zip(df["encoding"], df["peak_miou"]))
    if {"log_sigma", "t"} <= by.keys():
        diff = by["t"] - by["log_sigma"]
        return [f"Peak mean IoU: log sigma {by['log_sigma']:.3f}, t {by['t']:.3f} (difference {diff:+.3f}); "
                f"published 0.212 vs 0.213 (+0.001), which the thesis calls no significant difference."]
    return []
