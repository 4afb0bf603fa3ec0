"""Report of `guidance_window`: map compliance when the guidance acts only above / below t, read as
the latest start and the earliest stop that keep most of the always-on guidance's gain
(000 thesis Sec. 5.2.5, Fig. 5.3 and 5.4). The thesis's window claims (start above 0.65, stop
below 0.45) are judged by repro.claims on paired resamples (the spec's `claims`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from repro.plots import pyplot
from repro.results import copy_first_artifact, resolve_artifact

THESIS_START, THESIS_STOP = 0.65, 0.45   # Sec. 5.2.5
GAIN_KEPT = 0.8   # the report's reading: a window keeps this share of the always-on guidance's mIoU gain


def _curves(df):
    off = df[df["window"] == "off_below"].sort_values("t")
    on = df[df["window"] == "on_below"].sort_values("t")
    return off, on


def _read_window(off_t, off_v, on_t, on_v) -> dict:
    """full / none / gain and the window of curves sorted by t (off_below from t = 0 to 1)."""
    full, none = float(off_v[0]), float(off_v[-1])
    gain = full - none
    out = {"full": full, "none": none, "gain": gain}
    if gain <= 0:
        return out

    def kept(v):
        return (v - none) / gain >= GAIN_KEPT

    start = None
    for t, v in zip(on_t[::-1], on_v[::-1]):   # from t = 1 down
        if not kept(v):
            break
        start = float(t)
    stop = None
    for t, v in zip(off_t, off_v):              # from t = 0 up
        if not kept(v):
            break
        stop = float(t)
    out.update(start_needed=start, stop_allowed=stop)
    return out


def window_findings(df, metric: str = "miou") -> dict:
    """The latest start and the earliest stop that keep GAIN_KEPT of the always-on gain, on the
    cells' point values (a description; the claims are judged by repro.claims).

    Always on = off_below at t = 0 (s0 for every t > 0); never on = off_below at t = 1.
    start_needed: the smallest t_start such that starting at any grid t >= it keeps the gain;
    stop_allowed: the largest t_stop such that stopping at any grid t <= it keeps the gain."""
    off, on = _curves(df)
    if not len(off) or not len(on) or off["t"].min() > 0 or off["t"].max() < 1:
        return {}
    return _read_window(off["t"].tolist(), off[metric].tolist(), on["t"].tolist(), on[metric].tolist())


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    from PIL import Image

    plt = pyplot(theme=False)
    off, on = _curves(df)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(off["t"], off["miou"], "o-", label="switched off below t (Fig. 5.3)")
    ax.plot(on["t"], on["miou"], "s-", label="switched on below t (Fig. 5.4)")
    ax.axvline(THESIS_START, color="tab:orange", ls="--", lw=0.8, label="thesis: start above 0.65")
    ax.axvline(THESIS_STOP, color="tab:blue", ls="--", lw=0.8, label="thesis: stop below 0.45")
    if "oracle_miou" in df:
        ax.axhline(float(df["oracle_miou"].iloc[0]), color="green", ls=":", lw=1, label="evaluator on real images")
    ax.set_xlabel("t")
    ax.set_ylabel("mIoU of the samples vs their map")
    ax.legend(fontsize=7)
    ax.set_title("Map compliance when guidance acts only above / below t", fontsize=10)
    fig.tight_layout()
    curve = out_dir / f"{stem}_miou.png"
    fig.savefig(curve, dpi=120)
    plt.close(fig)

    ts = sorted(df["t"].unique())
    fig, axes = plt.subplots(2, len(ts), figsize=(1.3 * len(ts) + 1.5, 2.4), squeeze=False)
    for r, (name, part) in enumerate((("off below t", off), ("on below t", on))):
        for c, t in enumerate(ts):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            row = part[part["t"] == t]
            path = resolve_artifact(row["first_png"].iloc[0]) if len(row) and "first_png" in row else None
            if path is not None and path.exists():
                ax.imshow(np.asarray(Image.open(path).convert("RGB")), interpolation="nearest")
            if r == 1:
                ax.set_xlabel(f"{t:g}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle("One map, the same noise in every panel (cf. thesis Fig. 5.3 top, 5.4 bottom)", fontsize=9)
    fig.tight_layout()
    grid = out_dir / f"{stem}_samples.png"
    fig.savefig(grid, dpi=110)
    plt.close(fig)
    sheet = copy_first_artifact(df, "sheet_png", out_dir / f"{stem}_map.png")
    return [f for f in (curve, grid, sheet) if f]


def report_notes(spec, df) -> list[str]:
    w = window_findings(df)
    if not w:
        return ["The grid must include t = 0 and t = 1 of the off_below window (always on / never on) to read a "
                "window."]
    scale = float(df["s0_scale"].iloc[0]) if "s0_scale" in df else 1.0
    s0 = float(df["schedule_s0"].iloc[0]) / scale
    notes = [f"Always-on guidance (s0 = {s0:g}{f' x s0_scale {scale:g}' if scale != 1 else ''} for every t > 0): "
             f"mIoU {w['full']:.3f}; "
             f"never on: {w['none']:.3f}; gain {w['gain']:+.3f}."]
    if w["gain"] <= 0.01:
        notes.append("Guidance gives no measurable gain at this profile, so no window can be read.")
        return notes
    start, stop = w.get("start_needed"), w.get("stop_allowed")
    share = f"{GAIN_KEPT:.0%} of that gain"
    if start is None:
        notes.append(f"Switched on below t: no start time keeps {share} (the thesis: start above about "
                     f"{THESIS_START}).")
    else:
        notes.append(f"Switched on below t: starting at t >= {start:g} keeps {share} (the thesis: start above "
                     f"about {THESIS_START}).")
    if stop is None:
        notes.append(f"Switched off below t: no stop time keeps {share} (the thesis: stop below {THESIS_STOP}).")
    else:
        notes.append(f"Switched off below t: stopping at t <= {stop:g} keeps {share} (the thesis: stop below "
                     f"{THESIS_STOP}).")
    first = df.iloc[0]
    notes.append(f"Measured on {int(first['n_maps'])} samples per setting ({int(first['repeats'])} noise "
                 f"draws of each map), by the evaluator segmenter; the thesis judged one sample by eye. Sampler: "
                 f"predictor {first.get('predictor')} ({first.get('predictor_reading')}).")
    return notes
