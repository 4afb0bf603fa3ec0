"""Report of `baseline_comparison`: every method's mIoU, pixel accuracy and Frechet distance beside
the thesis's Tab. 5.4 / 5.5, and its three verdicts on the suite's numbers (000 thesis Sec. 5.4.5)."""
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


def verdicts(df) -> list[dict[str, Any]]:
    """The thesis's three verdicts (Sec. 5.4.5) on the rows the suite has numbers for (Oracle
    excluded): SPADE best on all three; the score model second in FID and third in accuracy; its
    mIoU far below the GANs' (here: at least 0.1 below the weaker GAN, as 0.31 vs 0.52 there)."""
    rows = df[(df["method"] != "oracle")]
    out = []
    q = _quality_name(df)
    have = lambda m: m in rows and rows[m].notna()  # noqa: E731

    def rank(metric: str, method: str, higher_better: bool):
        r = rows[have(metric)] if metric in rows else rows.iloc[0:0]
        if method not in set(r["method"]):
            return None, len(r)
        order = r.sort_values(metric, ascending=not higher_better)["method"].tolist()
        return order.index(method) + 1, len(r)

    def add(claim, held, detail):
        out.append({"claim": claim, "verdict": "inconclusive" if held is None else ("held" if held else "did not hold"),
                    "detail": detail})

    for metric, higher, label in (("miou", True, "mIoU"), ("pixel_acc", True, "pixel accuracy"),
                                  (q, False, q or "FID")):
        if metric is None:
            continue
        r, n = rank(metric, "spade", higher)
        add(f"SPADE best in {label}", None if r is None or n < 2 else r == 1,
            f"SPADE ranks {r} of {n} rows with a {label}" if r else "no SPADE number")
    if q:
        r, n = rank(q, "ncsnpp", False)
        add(f"NCSN++ second in {q}", None if r is None or n < 2 else r == 2,
            f"NCSN++ ranks {r} of {n}" if r else "no NCSN++ number")
    r, n = rank("pixel_acc", "ncsnpp", True)
    add("NCSN++ third in pixel accuracy", None if r is None or n < 3 else r == 3,
        f"NCSN++ ranks {r} of {n}" + (" (fewer than 3 rows: not decidable)" if r and n < 3 else "") if r
        else "no NCSN++ number")
    gans = rows[rows["method"].isin(["spade", "pix2pixhd", "crn"]) & have("miou")] if "miou" in rows else rows.iloc[0:0]
    nc = rows[(rows["method"] == "ncsnpp") & have("miou")] if "miou" in rows else rows.iloc[0:0]
    if len(gans) and len(nc):
        weakest = float(gans["miou"].min())
        mine = float(nc["miou"].iloc[0])
        add("NCSN++ mIoU far below the GANs", mine <= weakest - 0.1,
            f"NCSN++ {mine:.3f} vs the weaker GAN's {weakest:.3f} (published 0.309 vs 0.517)")
    else:
        add("NCSN++ mIoU far below the GANs", None, "needs the NCSN++ row and a GAN row")
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
            line += (f" ({s0_text}, snr {r.get('snr')}, {int(r.get('steps') or 0)} PC steps, "
                     f"{float(r.get('ms_per_image') or 0):.0f} ms per image)")
        if r is not None and m == "oracle" and src == "suite run":
            line += " (the evaluator on the maps' real images; no FID, as in Tab. 5.5)"
        if r is not None and src == "published only" and r.get("reason"):
            line += f" — {r.get('reason')}"
        notes.append(line + ".")
    for v in verdicts(df):
        notes.append(f"Thesis verdict '{v['claim']}': **{v['verdict']}** on the suite's numbers ({v['detail']}).")
    if "real_floor" in df and df["real_floor"].notna().any():
        notes.append(f"Real-vs-real floor of the Frechet distance (real images of the floor split vs the "
                     f"reference): {float(df['real_floor'].dropna().iloc[0]):.4g}.")
    notes.append("The second reference, Park et al. 2019 (SPADE) Tab. 1 on Cityscapes, measured its own "
                 "protocol (DRN-D-105 on SPADE's outputs at 512x256, FID on the 500 val images): CRN 52.4 mIoU / "
                 "77.1 % / FID 104.7, SPADE 62.3 / 81.9 % / 71.8 (park2019_* columns of the published table); "
                 "its pix2pixHD numbers are not carried (not verified here).")
    return notes


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
