"""Reverse-time samplers compared on trained score models: quality (mean ± std over repeated runs),
NFE and wall time per sampler, sample grids.

Two kinds of grid use it:
- the slides' table (004, "Comparing different reverse-time SDE solvers on CIFAR-10"): grid
  `sde` (ve / vp: the model roles) x `predictor` (ancestral, reverse_diffusion, probability_flow)
  x `sampler` (P1000, P2000, C2000, PC1000; step counts times `fixed.step_scale`). C2000 uses
  no predictor, so like the slides it is run once, in the reverse-diffusion row;
- the short report's solvers (003): grid `solver` (euler_maruyama, milstein, pc,
  probability_flow_ode) on one model (role `score`). A Milstein cell also re-runs Euler-Maruyama
  with the same noise and records max |x_milstein - x_em| (report Eq. 6: for SDEs whose
  diffusion does not depend on x the Milstein term vanishes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.experiments.score.evaluation import evaluate_setting, model_extra, prepare_scoring
from repro.experiments.score.sampling import budget_setting, draw_batch, solver_setting
from repro.rng import batch_generator
from repro.results import resolve_artifact
from repro.images import rows_figure
from repro.plots import pyplot

GRID_KEYS = ("sde", "predictor", "sampler", "solver")
SHARDS_CELLS = True   # under torchrun each rank samples its share of every run's batches (repro.engine.ranks)
SHARED_PREDICTOR = "reverse_diffusion"  # the row where the slides list corrector-only C2000


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step_scale: float = Field(1.0, gt=0, description="multiplies the step counts in P1000 / C2000 / PC1000 labels")
    steps: int = Field(1000, ge=1, description="steps of the `solver` cells (ODE: fixed-step methods only)")
    snr: float = Field(0.16, gt=0, description="Langevin corrector snr (score SDE default for CIFAR-10)")
    n_corrector_steps: int = Field(1, ge=1)
    ode_method: Literal["rk45", "euler", "heun"] = "rk45"
    rtol: float = Field(1e-5, gt=0)
    atol: float = Field(1e-5, gt=0)
    eps: float | None = Field(None, gt=0, lt=1)
    discretisation: Literal["grid", "score_sde"] = Field(
        "grid", description="reverse chain: the suite's grid or score_sde_pytorch's (repro.sampling.score_sde_pc)")
    fid_inputs: Literal["uint8", "uint8_trunc", "float"] = Field(
        "uint8", description="images into `fid`: 8-bit as PNG files (pytorch-fid), score_sde's truncation, or float")
    n_samples: int = Field(50000, ge=2, description="generated images per run")
    n_reference: int = Field(50000, ge=2)
    batch_size: int = Field(1000, ge=1)
    n_runs: int = Field(5, ge=1, description="repeated sampling runs; mean and std reported")
    grid_samples: int = Field(16, ge=1)
    grid_nrow: int = Field(8, ge=1)
    allow_rank_deficient: bool = False
    floor_split: str | None = None


def prepare(ctx):
    from repro.trainers.score_model import score_model_for

    scoring = prepare_scoring(ctx, ctx.spec.fixed)  # first: a missing metric (fid weights) fails before training
    roles = sorted({str(v) for v in ctx.spec.grid.get("sde", [])}) or ["score"]
    trained = {role: ctx.model(role) for role in roles}
    return {"trained": trained, "models": {r: score_model_for(t) for r, t in trained.items()}, "scoring": scoring}


def setting_for(cell: dict, fixed: dict):
    common = dict(n_corrector_steps=fixed["n_corrector_steps"], eps=fixed["eps"],
                  discretisation=fixed.get("discretisation", "grid"))
    if "sampler" in cell:
        return budget_setting(cell["sampler"], cell.get("predictor", SHARED_PREDICTOR), fixed["step_scale"],
                              fixed["snr"], **common)
    ode = dict(ode_method=fixed["ode_method"], rtol=fixed["rtol"], atol=fixed["atol"])
    solver = cell["solver"]
    return solver_setting(solver, fixed["steps"], snr=fixed["snr"], **common,
                          **(ode if solver == "probability_flow_ode" else {}))


def _corrector_only_elsewhere(cell: dict) -> bool:
    return str(cell.get("sampler", "")).startswith("C") and cell.get("predictor", SHARED_PREDICTOR) != SHARED_PREDICTOR


def run_cell(ctx, state, cell, run):
    from repro.specs import cell_key

    if _corrector_only_elsewhere(cell):
        return {"values": {}, "extra": {"not_applicable": "corrector-only sampling uses no predictor; like the "
                                                          "slides it is run once, in the reverse-diffusion row"}}
    role = str(cell.get("sde", "score"))
    model, f = state["models"][role], ctx.spec.fixed
    setting = setting_for(cell, f)
    key = cell_key(cell)
    evaluated = evaluate_setting(ctx, state["scoring"], model, setting, key, f)
    if evaluated is None:   # a rank other than 0 under torchrun: its batches went to rank 0
        return {}
    values, extra, artifacts, first = evaluated
    extra.update(model_extra(state["trained"][role]))
    extra.update({"corrector_steps": setting.steps * setting.n_corrector_steps
                  if setting.method == "pc" and setting.corrector != "none" else 0,
                  "step_scale": f["step_scale"] if "sampler" in cell else None})
    if cell.get("solver") == "milstein":
        values["max_abs_diff_vs_em"] = milstein_vs_em(ctx, model, setting, first.raw)
    return {"values": values, "extra": extra, "artifacts": artifacts}


def milstein_vs_em(ctx, model, milstein_setting, milstein_raw: torch.Tensor) -> float:
    """max |x_milstein - x_em| over the first batch of run 0, Euler-Maruyama drawn with the same noise."""
    from dataclasses import replace

    g = batch_generator(ctx.device, ctx.spec.seed, 0, 0)   # run 0's batch 0, as in evaluate_setting
    with torch.no_grad():
        em_raw, _, _ = draw_batch(model, replace(milstein_setting, method="euler_maruyama"), milstein_raw.shape[0],
                                  g, ctx.device)
    return float((em_raw - milstein_raw).abs().max())


# ----------------------------------------------------------------------------- report

def _label(row) -> str:
    parts = [str(row[k]) for k in ("sde", "predictor", "sampler", "solver") if k in row and isinstance(row[k], str)]
    return " / ".join(parts)


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    metric = str(df["metric"].dropna().iloc[0]) if "metric" in df and df["metric"].notna().any() else None
    if metric is None:
        return []
    done = df[df[metric].notna()]
    paths = [_table_bars(spec, done, metric, out_dir, stem) if "sampler" in done else
             _solver_bars(done, metric, out_dir, stem)]
    rows = [(_label(r), resolve_artifact(r.get("strip_png"))) for _, r in done.iterrows()]
    grid = rows_figure(rows, out_dir / f"{stem}_samples.png", "Samples per sampler (first run; same prior draws)")
    return [p for p in paths + [grid] if p is not None]


def _plt():
    return pyplot(theme=False)


def _grouped(ax, frame, value, err, columns, groups, title, ylabel):
    import numpy as np

    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(columns))
    for i, g in enumerate(groups):
        sub = frame[frame["predictor"] == g].set_index("sampler") if "predictor" in frame else frame.set_index("sampler")
        ys = [float(sub[value].get(c, np.nan)) if c in sub.index else np.nan for c in columns]
        es = [float(sub[err].get(c, 0.0)) if (err and c in sub.index) else 0.0 for c in columns]
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, ys, width, yerr=es, capsize=2, label=g)
    ax.set_xticks(x)
    ax.set_xticklabels(columns)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel)


def _table_bars(spec, df, metric, out_dir: Path, stem: str) -> Path:
    import pandas as pd

    plt = _plt()
    sdes = [s for s in spec.grid.get("sde", ["score"]) if s in set(df.get("sde", ["score"]))]
    columns = [c for c in spec.grid.get("sampler", []) if c in set(df["sampler"])]
    groups = [p for p in spec.grid.get("predictor", [SHARED_PREDICTOR])]
    pub = pd.DataFrame(spec.paper.cells)
    fig, axes = plt.subplots(2, len(sdes), figsize=(5.2 * len(sdes), 6.4), squeeze=False)
    scale = float(df["step_scale"].dropna().iloc[0]) if "step_scale" in df and df["step_scale"].notna().any() else 1.0
    for j, sde in enumerate(sdes):
        sub = df[df["sde"] == sde] if "sde" in df else df
        _grouped(axes[0, j], sub, metric, f"{metric}_std", columns, groups,
                 f"{sde.upper()}: reproduced (steps x {scale:g}), mean ± std over runs", metric)
        if len(pub) and "fid" in pub:
            psub = pub[pub["sde"] == sde] if "sde" in pub else pub
            _grouped(axes[1, j], psub, "fid", "fid_std" if "fid_std" in psub else None, columns, groups,
                     f"{sde.upper()}: published FID (slides 004, CIFAR-10, 5 runs)", "FID")
        else:
            axes[1, j].set_axis_off()
    axes[0, 0].legend(fontsize=7, title="predictor", title_fontsize=7)
    fig.tight_layout()
    path = out_dir / f"{stem}_bars.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _solver_bars(df, metric, out_dir: Path, stem: str) -> Path:
    plt = _plt()
    labels = [str(s) for s in df["solver"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.bar(labels, df[metric], yerr=df.get(f"{metric}_std"), capsize=3, color="tab:blue")
    a1.set_ylabel(f"{metric} (mean ± std over runs)")
    a1.set_title("Sample quality per sampler", fontsize=9)
    a2.bar(labels, df["seconds"], color="tab:orange")
    for i, (s, n) in enumerate(zip(df["seconds"], df["nfe"])):
        a2.text(i, s, f"NFE {n:.0f}", ha="center", va="bottom", fontsize=7)
    a2.set_ylabel("wall seconds per run")
    a2.set_title("Wall time per sampling run (NFE on top)", fontsize=9)
    for ax in (a1, a2):
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    path = out_dir / f"{stem}_bars.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_notes(spec, df) -> list[str]:
    from repro.experiments.score.evaluation import protocol_notes

    metric = str(df["metric"].dropna().iloc[0]) if "metric" in df and df["metric"].notna().any() else None
    if metric is None:
        return protocol_notes(df)
    df = df[df[metric].notna()]
    return protocol_notes(df) + (_table_notes(spec, df, metric) if "sampler" in df else _solver_notes(df, metric))


def _fmt(row, metric) -> str:
    std = row.get(f"{metric}_std")
    return f"{row[metric]:.3g} ± {std:.2g}" if std is not None and row.get("n_runs", 1) > 1 else f"{row[metric]:.3g}"


def _claims(frame, metric) -> dict:
    """The slides' comparisons in one SDE's cells: PC1000 vs P1000 and vs P2000 (same NFE) per
    predictor, whether C2000 is the worst, probability flow vs reverse diffusion at P1000.

    PC1000 vs P*: [held, predictors compared, did not hold, inconclusive]. With per-run values
    (`<metric>_runs`; run r shares its seed across cells) the difference is judged run by run
    against its standard error (repro.metrics.spread: beyond 2 s.e. or inconclusive); without
    (published cells, one run) by the sign of the difference of the means."""
    from repro.metrics.spread import direction, paired_difference

    def row(pred, sampler):
        hit = frame[(frame["predictor"] == pred) & (frame["sampler"] == sampler)]
        return hit.iloc[0] if len(hit) and hit[metric].notna().iloc[0] else None

    def value(pred, sampler):
        r = row(pred, sampler)
        return None if r is None else float(r[metric])

    def runs(pred, sampler):
        r = row(pred, sampler)
        v = None if r is None else r.get(f"{metric}_runs")
        return [float(x) for x in v] if isinstance(v, (list, tuple)) and len(v) > 1 else None

    out = {"pc_vs_p1000": [0, 0, 0, 0], "pc_vs_p2000": [0, 0, 0, 0], "measured": False}
    for pred in frame["predictor"].unique():
        pc = value(pred, "PC1000")
        for key, other in (("pc_vs_p1000", "P1000"), ("pc_vs_p2000", "P2000")):
            o = value(pred, other)
            if pc is None or o is None:
                continue
            a, b = runs(pred, "PC1000"), runs(pred, other)
            if a is not None and b is not None and len(a) == len(b):
                sign = direction(*paired_difference(a, b))   # -1: PC1000 lower (better) beyond 2 s.e.
                out["measured"] = True
            else:
                sign = (pc > o) - (pc < o)
            out[key][0] += sign < 0
            out[key][1] += 1
            out[key][2] += sign > 0
            out[key][3] += sign == 0
    c = value(SHARED_PREDICTOR, "C2000")
    out["c2000_worst"] = None if c is None else c >= frame[metric].max() - 1e-12
    pf, rd = value("probability_flow", "P1000"), value(SHARED_PREDICTOR, "P1000")
    out["pf_over_rd_p1000"] = None if pf is None or rd is None else pf / rd
    return out


def _table_notes(spec, df, metric) -> list[str]:
    import pandas as pd

    notes = []
    scale = df["step_scale"].dropna()
    if len(scale) and float(scale.iloc[0]) != 1.0:
        s = float(scale.iloc[0])
        n = lambda k: max(1, round(k * s))  # noqa: E731
        notes.append(f"Step counts are the slides' times {s:g}: P1000 ran {n(1000)} predictor steps, P2000 {n(2000)}, "
                     f"C2000 {n(2000)} corrector steps, PC1000 {n(1000)} + {n(1000)}; the column labels keep the "
                     f"slides' names.")
    pub = pd.DataFrame(spec.paper.cells)
    for sde, sub in (df.groupby("sde") if "sde" in df else [("score", df)]):
        name = str(sde).upper()
        best = sub.loc[sub[metric].idxmin()]
        notes.append(f"{name}: best {best['predictor']} / {best['sampler']} ({_fmt(best, metric)}).")
        mine = _claims(sub, metric)
        theirs = _claims(pub[pub["sde"] == sde], "fid") if len(pub) and "sde" in pub and "fid" in pub else None

        def pair(key, what):
            w, n_, lost, unsure = mine[key]
            if not n_:
                return None
            t = f" (slides: {theirs[key][0]} of {theirs[key][1]})" if theirs and theirs[key][1] else ""
            if not mine["measured"]:
                return f"{what} for {w} of {n_} predictors{t} (one sampling run: no spread measured)"
            return (f"{what}: held for {w} of {n_} predictors, did not hold for {lost}, inconclusive for {unsure}"
                    f"{t} (run-by-run differences against 2 standard errors)")

        claims = [c for c in (pair("pc_vs_p1000", "PC1000 beats P1000"),
                              pair("pc_vs_p2000", "PC1000 beats P2000 (the same number of score evaluations)"))
                  if c]
        if claims:
            notes.append(f"{name}: " + "; ".join(claims) + ".")
        if mine["c2000_worst"] is not None:
            t = f" (slides: {'the worst' if theirs and theirs['c2000_worst'] else 'not the worst'})" if theirs else ""
            notes.append(f"{name}: corrector-only C2000 is {'the worst' if mine['c2000_worst'] else 'not the worst'} "
                         f"sampler{t}.")
        if mine["pf_over_rd_p1000"] is not None:
            t = (f" (slides: {theirs['pf_over_rd_p1000']:.2f}x)" if theirs and theirs["pf_over_rd_p1000"] else "")
            notes.append(f"{name}: probability-flow P1000 / reverse-diffusion P1000 = "
                         f"{mine['pf_over_rd_p1000']:.2f}x{t}.")
    return notes + _exact_score_notes(df)


def _exact_score_notes(df) -> list[str]:
    """Reduced-step runs (smoke): how far each sampler's discretisation alone is off at the step count
    of the P1000 column, with the exact score of Gaussian data (repro.sampling.exact_gaussian), against
    the slides' 1000 steps; this separates the sampler's own error from the network's."""
    from repro.diffusion.sde import VESDE, VPSDE
    from repro.sampling.exact_gaussian import exact_score_std_ratio

    if "predictor_steps" not in df or "sde" not in df:
        return []
    p1000 = df[(df["sampler"] == "P1000") & df["predictor_steps"].notna()]
    if not len(p1000) or int(p1000["predictor_steps"].iloc[0]) >= 1000:
        return []
    n = int(p1000["predictor_steps"].iloc[0])
    samplers = (("ancestral", "none", "ancestral"), ("reverse_diffusion", "none", "reverse diffusion"),
                ("probability_flow", "none", "probability flow"), ("reverse_diffusion", "langevin", "RD + Langevin"))
    notes = []
    for sde_name in sorted(df["sde"].dropna().unique()):
        if sde_name == "ve":
            smax = df[df["sde"] == "ve"]["sigma_max"].dropna() if "sigma_max" in df else []
            sde = VESDE(0.01, float(smax.iloc[0]) if len(smax) else 50.0)
        elif sde_name == "vp":
            sde = VPSDE()
        else:
            continue
        parts = []
        for pred, corr, label in samplers:
            r = [exact_score_std_ratio(sde, steps=k, predictor=pred, corrector=corr, dim=64, n=400) for k in (n, 1000)]
            parts.append(f"{label} {100 * (r[0] - 1):+.1f}% (at 1000 steps {100 * (r[1] - 1):+.1f}%)")
        notes.append(f"{str(sde_name).upper()}, the discretisation alone at {n} steps (exact score of Gaussian data "
                     f"N(0, 0.25 I), no network; sample std vs the data's): " + "; ".join(parts) + ". A sampler too "
                     f"wide leaves visible noise (reverse diffusion, probability flow), one too narrow over-smooths "
                     f"(ancestral on VE); at the slides' 1000 steps these errors shrink several-fold, so the smoke "
                     f"rankings at {n} steps measure step-size error first and the network second.")
    return notes


def _solver_notes(df, metric) -> list[str]:
    notes = []
    for _, r in df.sort_values(metric).iterrows():
        notes.append(f"{r['solver']}: {metric} {_fmt(r, metric)}, NFE {r['nfe']:.0f}, {r['seconds']:.2f} s per run "
                     f"({r['ms_per_sample']:.2f} ms per sample).")
    if "class_entropy" in df and df["class_entropy"].notna().any():
        top = df.loc[df["class_entropy"].idxmax()]
        real = df["real_class_entropy"].dropna() if "real_class_entropy" in df else []
        notes.append(f"Most varied samples (class entropy of the evaluator's predictions): {top['solver']} "
                     f"({top['class_entropy']:.3f} nats" + (f"; real images {float(real.iloc[0]):.3f}" if len(real) else "")
                     + "); the short report found the PC sampler the most varied.")
    mil = df[df["solver"] == "milstein"]
    if len(mil) and "max_abs_diff_vs_em" in mil and mil["max_abs_diff_vs_em"].notna().any():
        d = float(mil["max_abs_diff_vs_em"].iloc[0])
        notes.append(f"Milstein vs Euler-Maruyama with the same noise: max |x_milstein - x_em| = {d:.3g}. The SDEs "
                     f"used here have a diffusion g(t) that does not depend on x, so the Milstein term "
                     f"1/2 g dg/dx (dW^2 - dt) (short report Eq. 6) is zero and Milstein coincides with "
                     f"Euler-Maruyama draw for draw; the report's 'new' sampler is EM for these models.")
    return notes
