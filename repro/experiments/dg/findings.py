"""Descriptive findings of the dg_epsilon_grid runner (002 thesis Ch. 12, Appendix A): what the grid
measured, set beside what the thesis reports, with no verdicts.

How the thesis's claims fare here is the claims engine's answer (repro.claims, on the spec's
`claims:`), which the renderer appends to every report; these notes give the numbers behind it
(per-group values and relative changes, best cells, the Appendix A comparison). Published numbers
are read from the spec's `paper.cells` (each with its document line there), never written here.
"""
from __future__ import annotations

import math
from itertools import pairwise

from repro.experiments.dg.figures import main_metric
from repro.experiments.dg.settings import METHOD_LABELS


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def notes(spec, df) -> list[str]:
    metric = main_metric(spec, df)
    if metric is None or not len(df):
        return []
    out = []
    if metric != "fid":
        out.append(f"`{metric}` is a Frechet distance on the suite's evaluator features of {spec.dataset.name} "
                   f"images: its absolute values are not comparable to the thesis's CIFAR-10 FIDs; compare "
                   f"trends (which settings are better), not numbers.")
    if "discriminator_epoch" in df.columns and df["discriminator_epoch"].notna().any():
        epochs = sorted({int(e) for e in df["discriminator_epoch"].dropna()})
        out.append(f"Guided cells used the discriminator's epoch {', '.join(map(str, epochs))} weights.")
    if "n_runs" in df.columns and len(df):
        runs = int(df["n_runs"].max())
        out.append(f"Each cell: {runs} sampling run(s) of {int(df['n_samples'].max())} samples; the claims are "
                   f"judged on paired resamples of the samples (`{metric}_boot`), each cell's sample i drawn from "
                   f"the same latent.")
    for finding in FINDINGS:
        out += finding(spec, df, metric)
    return out


def euler_dg_over_w(spec, df, metric):
    """Fig. 12.1: EDM-G++ (b = 1) with Euler over w_DG, per step count."""
    if "method" not in spec.grid or "w_dg" not in spec.grid:
        return []
    sub = df[(df["solver"] == "euler") & (df["method"] == "edm_gpp")]
    parts = []
    for steps, g in sub.groupby("steps"):
        g = g.sort_values("w_dg")
        if g["w_dg"].nunique() >= 2:
            parts.append(f"{steps} steps: {' -> '.join(_fmt(v) for v in g[metric])}")
    if not parts:
        return []
    ws = ", ".join(f"{w:g}" for w in sorted(sub["w_dg"].unique()))
    return [f"EDM-G++ (Euler, b = 1), {metric} over w_DG = {ws}: {'; '.join(parts)}."]


def scaling_vs_b1(spec, df, metric):
    """Best b > 1 vs b = 1 at the same (solver, steps, w_DG): the relative change per group."""
    keys = [k for k in ("solver", "steps", "w_dg") if k in df.columns]
    parts, below = [], 0
    for key, g in df.groupby(keys):
        base, up, down = g[g["eps_scale"] == 1.0], g[g["eps_scale"] > 1.0], g[g["eps_scale"] < 1.0]
        if len(base) and len(up):
            b0, b1 = float(base[metric].min()), float(up[metric].min())
            label = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in zip(keys, key if isinstance(key, tuple) else (key,)))
            parts.append(f"{label}: {_fmt(b0)} -> {_fmt(b1)} ({100 * (b1 - b0) / b0:+.1f}%)")
            below += bool(len(down)) and float(down[metric].min()) < min(b0, b1)
    if not parts:
        return []
    out = [f"Best b > 1 vs b = 1 ({metric}, b = 1 first): " + "; ".join(parts) + "."]
    if below:
        out.append(f"In {below}/{len(parts)} groups a b < 1 (scaling epsilon up, the opposite of the method) "
                   f"gave a lower {metric} still (see fig11_exposure for this model's sampling-time norms).")
    return out


def fewer_steps(spec, df, metric):
    """Sec. 12.1: how much of EDM-G++'s gap between two step counts SEDM-G++ closes at the lower one."""
    if not {"steps", "method"} <= set(spec.grid):
        return []
    sub = df[df["solver"] == "euler"]
    out = []
    for lo, hi in pairwise(sorted(sub["steps"].unique())):
        s_lo = sub[(sub["steps"] == lo) & (sub["method"] == "sedm_gpp")][metric]
        g_hi = sub[(sub["steps"] == hi) & (sub["method"] == "edm_gpp")][metric]
        g_lo = sub[(sub["steps"] == lo) & (sub["method"] == "edm_gpp")][metric]
        if len(s_lo) and len(g_hi) and len(g_lo):
            gap = g_lo.min() - g_hi.min()
            text = (f"{lo} vs {hi} steps: best SEDM-G++ at {lo} = {_fmt(s_lo.min())}, best EDM-G++ at {lo} = "
                    f"{_fmt(g_lo.min())} and at {hi} = {_fmt(g_hi.min())}")
            text += (f" ({100 * (g_lo.min() - s_lo.min()) / gap:.0f}% of the gap closed)" if gap > 0
                     else " (no gap: more steps did not lower EDM-G++'s value)")
            out.append(text)
    if not out:
        return []
    return ["Best over w_DG, SEDM-G++ at fewer Euler steps vs EDM-G++ at more (thesis Sec. 12.1 compares 21 with "
            "35 steps): " + "; ".join(out) + "."]


def appendix_a(spec, df, metric):
    """Appendix A: published FIDs of EDM-G++ / SEDM-G++ per Euler step count (w_DG and b not stated)
    beside the best reproduced cell over w_DG, as relative changes."""
    pub = [c for c in spec.paper.cells if "w_dg" not in c and "steps" in c and "method" in c]
    if not pub or "steps" not in spec.grid:
        return []
    pm = "fid" if any("fid" in c for c in pub) else metric
    published_steps = sorted({c["steps"] for c in pub})
    mine_steps = sorted(int(v) for v in df["steps"].unique())
    # A profile with scaled-down step counts is paired with the published ones in order.
    pairs = dict(zip(published_steps, mine_steps)) if len(mine_steps) == len(published_steps) else \
        {s: s for s in published_steps if s in mine_steps}
    lines = []
    for steps in published_steps:
        p = {c["method"]: c[pm] for c in pub if c["steps"] == steps and pm in c}
        if {"edm_gpp", "sedm_gpp"} - p.keys():
            continue
        text = (f"{steps} steps: published {_fmt(p['edm_gpp'])} -> {_fmt(p['sedm_gpp'])} "
                f"({100 * (p['sedm_gpp'] - p['edm_gpp']) / p['edm_gpp']:+.0f}%)")
        if steps in pairs:
            mine = df[df["steps"] == pairs[steps]]
            r = {m: float(mine[mine["method"] == m][metric].min()) for m in ("edm_gpp", "sedm_gpp")}
            if not any(math.isnan(v) for v in r.values()):
                text += (f", reproduced at {pairs[steps]} steps, best over w_DG: {_fmt(r['edm_gpp'])} -> "
                         f"{_fmt(r['sedm_gpp'])} ({100 * (r['sedm_gpp'] - r['edm_gpp']) / r['edm_gpp']:+.0f}%)")
        lines.append(text)
    if not lines:
        return []
    return ["Appendix A (Euler, EDM-G++ -> SEDM-G++; the thesis does not state the w_DG or b of these samples, "
            "so they stand beside the best reproduced cell over w_DG): " + "; ".join(lines) + "."]


def best_cells(spec, df, metric):
    """Fig. 12.3 / 12.4: the best cell, the best b = 1 cell, and the best b per w_DG_1st > 0."""
    if not {"w_dg", "eps_scale"} <= set(spec.grid):
        return []
    best = df.loc[df[metric].idxmin()]
    text = f"Best cell: w_DG_1st = {best['w_dg']:g}, b = {best['eps_scale']:g} ({metric} {_fmt(best[metric])})"
    base = df[df["eps_scale"] == 1.0]
    if len(base):
        b1 = base.loc[base[metric].idxmin()]
        text += f"; best b = 1 cell: w_DG_1st = {b1['w_dg']:g} ({_fmt(b1[metric])})"
    published = [c for c in spec.paper.cells if "w_dg" in c and "eps_scale" in c]
    if published:
        text += ("; the thesis's best: " + ", ".join(
            f"w_DG_1st = {c['w_dg']:g}, b = {c['eps_scale']:g}" + (f" (FID {c['fid']:g})" if "fid" in c else "")
            for c in published))
    lines = [text + "."]
    opt = [(w, float(g.loc[g[metric].idxmin(), "eps_scale"])) for w, g in df[df["w_dg"] > 0].groupby("w_dg")]
    if len(opt) >= 2:
        lines.append("Best b per w_DG_1st > 0: " + ", ".join(f"w = {w:g}: b = {b:g}" for w, b in opt)
                     + " (thesis Sec. 12.2, line 1315: the optimal b decreases from w_DG_1st = 1.67 to 2).")
    return lines


def method_rows(spec, df, metric):
    """Tab. 12.1: the reproduced rows with their settings, beside the published rows."""
    if "method" not in spec.grid or "steps" in spec.grid:
        return []
    published = {c["method"]: c.get("fid") for c in spec.paper.cells if c.get("method") in METHOD_LABELS}
    parts = []
    for _, r in df.iterrows():
        m = r["method"]
        text = f"{METHOD_LABELS.get(m, m)} (w_DG_1st = {r['w_dg']:g}, b = {r['eps_scale']:g}): {_fmt(r[metric])}"
        if published.get(m) is not None:
            text += f" (published FID {published[m]:g})"
        parts.append(text)
    return [f"Reproduced rows, {metric}: " + "; ".join(parts) + "."]


FINDINGS = (euler_dg_over_w, scaling_vs_b1, fewer_steps, appendix_a, best_cells, method_rows)
