"""Report of `segmenter_timesteps`: the segmenter's pixel accuracy and mean IoU against t
(000 thesis Fig. 5.9, Sec. 5.4.3)."""
from __future__ import annotations

from pathlib import Path

from repro.plots import pyplot, save


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
