"""The reports of the EDM / DG / epsilon-scaling kinds (002 thesis Ch. 11, 12): figures and findings.

dg_epsilon_grid: a figure that follows the grid (curves, heatmap or bars; figures.py) and descriptive
findings (findings.py). Published cells with a `note` and no value mark what the text says about a
cell it gives no number for.
exposure_bias: the L2 norm of the predicted epsilon along sampling vs training (Fig. 11.1, 11.2).
The verdicts on the thesis's claims come from the claims engine (repro.claims), which the renderer
appends to every report; the notes here only describe.
"""
from __future__ import annotations

from pathlib import Path

from repro.experiments.dg import figures, findings
from repro.experiments.dg.settings import METHOD_LABELS
from repro.plots import pyplot, save


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    return {"dg_epsilon_grid": figures.draw, "exposure_bias": _exposure_figures}[spec.kind](spec, df, out_dir, stem)


def report_notes(spec, df) -> list[str]:
    if spec.kind == "exposure_bias":
        return _exposure_notes(spec, df)
    return feature_notes(df) + findings.notes(spec, df)


def feature_notes(df) -> list[str]:
    """What each Frechet distance was computed on (fid: pytorch-fid's Inception on 8-bit images)."""
    if "feature_extractors" not in df:
        return []
    seen = {}
    for value in df["feature_extractors"].dropna():
        if isinstance(value, dict):
            seen.update(value)
    return [f"Features of {name}: {what}." for name, what in sorted(seen.items())]


# ----------------------------------------------------------------------------- exposure bias

def _exposure_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    plt = pyplot()
    solvers = [s for s in ("euler", "heun") if s in set(df["solver"])]
    f, axes = plt.subplots(2, len(solvers), figsize=(6.2 * len(solvers), 7.2), squeeze=False,
                           gridspec_kw={"height_ratios": [2, 1]})
    colors = {"edm": "tab:orange", "edm_gpp": "tab:blue", "sedm_gpp": "tab:purple", "sedm": "tab:brown"}
    for j, solver in enumerate(solvers):
        top, bottom = axes[0][j], axes[1][j]
        sub = df[df["solver"] == solver]
        first = sub.iloc[0]
        top.plot(first["sigmas"], first["training_norm"], color="tab:green", marker=".", label="training: eps(x_t)")
        for _, row in sub.iterrows():
            label = f"sampling, {METHOD_LABELS.get(row['method'], row['method'])}"
            c = colors.get(row["method"])
            top.plot(row["sigmas"], row["sampling_norm"], color=c, marker=".", lw=1, label=label)
            bottom.plot(row["sigmas"], row["excess_pct"], color=c, marker=".", lw=1, label=label)
        nfe = int(first["nfe"])
        top.set_title(f"{solver.capitalize()}, {first['steps']} steps ({nfe} NFE): L2 norm of eps_theta "
                      f"(cf. thesis Fig. {'11.1' if solver == 'euler' else '11.2'})", fontsize=9)
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xlabel("sigma (sampling runs from right to left)")
        top.set_ylabel("mean ||eps||_2")
        bottom.axhline(0, color="tab:green", lw=1)
        bottom.set_ylabel("sampling / training - 1 (%)")
        top.legend(fontsize=8)
    return [save(f, out_dir / f"{stem}_eps_norms.png")]


def _exposure_notes(spec, df) -> list[str]:
    notes = []
    ex = {(r["solver"], r["method"]): (r["eps_norm_excess_pct"], r["eps_norm_excess_last_third_pct"])
          for _, r in df.iterrows()}
    for solver in ("euler", "heun"):
        e, g = ex.get((solver, "edm")), ex.get((solver, "edm_gpp"))
        if e is None or g is None:
            continue
        notes.append(f"{solver.capitalize()}: the sampling norm exceeds the training norm by {e[0]:+.2f}% (EDM) and "
                     f"{g[0]:+.2f}% (EDM-G++) on average over the evaluations, {e[1]:+.2f}% / {g[1]:+.2f}% over the "
                     f"last third (small sigma); EDM-G++ / EDM excess: {g[0] / e[0]:.3g}.")
    for _, r in df[df["method"] == "edm"].iterrows():
        below = [(e, s) for e, s in zip(r["excess_pct"], r["sigmas"]) if e < 0]
        if below:
            worst = min(below)
            notes.append(f"{r['solver'].capitalize()}, EDM: the sampling norm is below the training norm at "
                         f"{len(below)} of {len(r['excess_pct'])} evaluations (down to {worst[0]:+.2f}% at sigma "
                         f"{worst[1]:.3g}): where it is, dividing epsilon by b > 1 moves away from the training "
                         f"curve, so the best b can be < 1 for this model.")
    if "resample_n" in df.columns and df["resample_n"].notna().any():
        notes.append(f"Each cell stores every sample's excess (mean over the evaluations of its norm over the "
                     f"training norm, {int(df['resample_n'].max())} samples, sample i from the same latent in every "
                     f"cell): the claims are judged on paired resamples of the samples; the training curve "
                     f"({int(df['n_real'].max())} real images) is kept fixed.")
    if "discriminator_epoch" in df.columns and df["discriminator_epoch"].notna().any():
        notes.append(f"EDM-G++ curves used discriminator epoch "
                     f"{', '.join(str(int(e)) for e in sorted(set(df['discriminator_epoch'].dropna())))}.")
    return notes
