"""Report of `baseline_comparison`: every method's mIoU, pixel accuracy and Frechet distance beside
the thesis's Tab. 5.4 / 5.5, and each method's rank per metric on the suite's numbers (000 thesis
Sec. 5.4.5). The thesis's rank claims are judged by repro.claims on paired resamples of the maps
(the spec's `claims`); Park et al.'s numbers (the spec's `external`) are shown, never judged."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.experiments.semantic.baseline_comparison import GAN_ROLES, LABELS, METHODS
from repro.images import rows_figure
from repro.plots import pyplot
from repro.results import copy_first_artifact, resolve_artifact


def _quality_name(df) -> str | None:
    for m in ("fid", "fd_evalnet"):
        if m in df and df[m].notna().any():
            return m
    return None


def rankings(df) -> list[dict[str, Any]]:
    """Per metric: the methods with a number (Oracle excluded) ordered best first on the point
    values (mIoU, pixel accuracy: higher is better; the Frechet distance: lower)."""
    rows = df[df["method"] != "oracle"]
    q = _quality_name(df)
    out = []
    for metric, higher in (("miou", True), ("pixel_acc", True), (q, False)):
        if metric is None or metric not in rows:
            continue
        r = rows[rows[metric].notna()].sort_values(metric, ascending=not higher)
        if len(r):
            out.append({"metric": metric, "order": r["method"].tolist(), "values": r[metric].tolist()})
    return out


def report_notes(spec, df) -> list[str]:
    notes = []
    by = {r["method"]: r for _, r in df.iterrows()}
    for m in spec.grid.get("method", METHODS):
        r = by.get(m)
        src = r.get("source") if r is not None else "not run"
        what = {"suite run": "a suite run", "evaluated folder": "an evaluated folder of released outputs",
                "published only": "published only"}.get(src, src)
        line = f"{LABELS[m]}: {what}"
        if r is not None and src == "suite run" and m in GAN_ROLES:
            line += (f" (model {r.get('model')}, {int(r.get('model_steps') or 0)} steps, {r.get('model_update')} "
                     f"updates, {r.get('model_adversarial')} loss, VGG loss {r.get('model_vgg_loss')}, "
                     f"trained in {float(r.get('model_train_seconds') or 0):.0f} s)")
        if r is not None and src == "suite run" and m == "ncsnpp":
            scale = float(r.get("s0_scale") or 1.0)
            s0 = float(r.get("schedule_s0") or 0.0)
            s0_text = f"s0 = {s0 / scale:g}" + (f" x s0_scale {scale:g} = {s0:g}" if scale != 1 else "")
            line += (f" ({s0_text}, snr {r.get('snr')}, {int(r.get('steps') or 0)} PC steps with the "
                     f"{r.get('predictor')} predictor: {r.get('predictor_reading')}, "
                     f"{float(r.get('ms_per_image') or 0):.0f} ms per image)")
        if r is not None and m == "oracle" and src == "suite run":
            line += " (the evaluator on the maps' real images; no FID, as in Tab. 5.5)"
        if r is not None and src == "published only" and r.get("reason"):
            line += f" — {r.get('reason')}"
        notes.append(line + ".")
    published = {"miou": "SPADE, CRN, pix2pixHD, NCSN++ (Tab. 5.4)", "pixel_acc": "SPADE, pix2pixHD, NCSN++, CRN "
                 "(Tab. 5.4)", "fid": "SPADE, NCSN++, CRN, pix2pixHD (Tab. 5.5)"}
    for r in rankings(df):
        notes.append(f"Order in {r['metric']} on the suite's numbers (best first): "
                     + ", ".join(f"{LABELS[m]} {v:.4g}" for m, v in zip(r["order"], r["values"]))
                     + f"; the thesis's: {published.get(r['metric'], published['fid'])}.")
    notes += _copies_notes(df)
    if "units_aligned" in df and (df["units_aligned"] == False).any():  # noqa: E712
        notes.append("A row scored from a folder whose maps are not the spec's maps in the same order stores no "
                     "per-map values: it cannot be paired map by map with the other rows, so claims on it have "
                     "no measured spread.")
    if "real_floor" in df and df["real_floor"].notna().any():
        notes.append(f"Real-vs-real floor of the Frechet distance (real images of the floor split vs the "
                     f"reference): {float(df['real_floor'].dropna().iloc[0]):.4g}.")
    ext = getattr(spec, "external", None)
    if ext is not None and ext.cells:
        cells = "; ".join(", ".join(f"{k} {v}" for k, v in c.items()) for c in ext.cells)
        notes.append(f"Second reference, not judged ({ext.citation}): {cells}."
                     + (f" {ext.notes.strip()}" if ext.notes else ""))
    return notes


def _copies_notes(df) -> list[str]:
    """Rows pooled over trained copies of their models (fixed.model_seeds): the copies' own values."""
    if "values_by_model_seed" not in df:
        return []
    q = _quality_name(df)
    metrics = [m for m in ("miou", "pixel_acc", q) if m]
    rows = []
    for _, r in df.iterrows():
        copies = r.get("values_by_model_seed")
        if not isinstance(copies, list) or len(copies) < 2:
            continue
        per = "; ".join(f"seed {c['seed']}: " + ", ".join(f"{c[m]:.4g}" for m in metrics if m in c) for c in copies)
        rows.append(f"{LABELS[r['method']]} ({per})")
    if not rows:
        return []
    return [f"Each generated row is the mean over {len(df['values_by_model_seed'].dropna().iloc[0])} trained copies "
            f"of its models (seeds of SPADE, pix2pixHD, and NCSN++ with its guide; one evaluator), and the "
            f"claims resample the copies with the maps. Per copy ({', '.join(metrics)}): " + " — ".join(rows) + "."]


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    plt = pyplot(theme=False)
    q = _quality_name(df)
    panels = [m for m in ("miou", "pixel_acc", q) if m and m in df and df[m].notna().any()]
    figs = []
    if panels:
        pub = {c["method"]: c for c in spec.paper.cells}
        order = [m for m in spec.grid.get("method", METHODS) if m in set(df["method"])]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.2), squeeze=False)
        for ax, m in zip(axes[0], panels):
            vals = [float(df[df["method"] == k][m].iloc[0]) if m in df and df[df["method"] == k][m].notna().any()
                    else float("nan") for k in order]
            xs = range(len(order))
            ax.bar([x - 0.2 for x in xs], vals, width=0.4, label="reproduced", color="tab:blue")
            pub_key = "fid" if m == q else m
            pv = [float(pub.get(k, {}).get(pub_key, float("nan")) or float("nan")) for k in order]
            target = ax if pub_key == m else ax.twinx()
            target.bar([x + 0.2 for x in xs], pv, width=0.4, label=f"published {pub_key} (thesis)",
                       color="tab:orange", alpha=0.7)
            ax.set_xticks(list(xs))
            ax.set_xticklabels([LABELS[k] for k in order], fontsize=8, rotation=20)
            ax.set_title({"miou": "mean IoU (Tab. 5.4)", "pixel_acc": "pixel accuracy (Tab. 5.4)"}.get(
                m, f"{m} (Tab. 5.5: fid)"), fontsize=9)
            ax.legend(fontsize=7, loc="upper left")
            if target is not ax:
                target.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        bars = out_dir / f"{stem}_bars.png"
        fig.savefig(bars, dpi=120)
        plt.close(fig)
        figs.append(bars)
    rows = []
    if "maps_png" in df and df["maps_png"].notna().any():
        maps_dir = resolve_artifact(str(df["maps_png"].dropna().iloc[0]))
        rows.append(("real images", maps_dir.parent / "real_strip.png" if maps_dir else None))
    for m in spec.grid.get("method", METHODS):
        sub = df[df["method"] == m]
        if len(sub) and "strip_png" in sub and sub["strip_png"].notna().any() and m != "oracle":
            rows.append((LABELS[m], resolve_artifact(str(sub["strip_png"].iloc[0]))))
    if rows:
        grid = rows_figure(rows, out_dir / f"{stem}_samples.png",
                           "The same maps for every method (cf. thesis Fig. 5.12)")
        if grid:
            figs.append(grid)
    maps = copy_first_artifact(df, "maps_png", out_dir / f"{stem}_maps.png")
    return figs + ([maps] if maps else [])
