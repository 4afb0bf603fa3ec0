"""Report of `noise_encoding_comparison`: held-out mean IoU per epoch for each noise encoding of
the segmenter, beside the published peaks (000 thesis Sec. 5.2.2)."""
from __future__ import annotations

from pathlib import Path

from repro.plots import pyplot, save


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
    ax.set_ylabel("mean IoU on held-out images (t spread over [0, 0.8])")
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
