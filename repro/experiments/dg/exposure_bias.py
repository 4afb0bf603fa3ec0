"""Exposure bias as the L2 norm of the predicted epsilon per sampling step (002 thesis Sec. 11.1).

Fig. 11.1 (Euler, 21 steps) and Fig. 11.2 (Heun, 35 NFE): ||eps_theta|| along the sampler's own
trajectory (EDM, and EDM-G++ with discriminator guidance) vs on real images noised to the same
sigma ("training"). Grid keys: solver, method. The thesis reads exposure bias off the sampling
norm exceeding the training norm, and finds that DG does not remove it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.experiments.dg import evaluation as E
from repro.experiments.dg.settings import METHOD_LABELS, resolve_cell
from repro.plots import pyplot, save

GRID_KEYS = ("solver", "method")


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: dict[str, int] = Field(default_factory=lambda: {"euler": 21, "heun": 18},
                                  description="EDM steps per solver (Heun 18 = 35 NFE)")
    solver: Literal["euler", "heun"] = "heun"
    w_dg: float = Field(2.0, ge=0, description="w_DG_1st of EDM-G++ / SEDM-G++")
    w_dg_2nd: float = Field(0.0, ge=0)
    eps_scale: float = Field(1.0004, gt=0, description="b of SEDM-G++ (if in the grid)")
    eps_k: float = 0.0
    placement: Literal["sedm", "ning"] = "sedm"
    methods: dict[str, dict] = Field(default_factory=dict)
    time_min: float = 0.01
    time_max: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    n_samples: int = Field(50_000, ge=1, description="generated trajectories (thesis: 50k)")
    n_real: int = Field(50_000, ge=1, description="real images for the training-side norm")
    batch_size: int = Field(500, ge=1)
    discriminator_epoch: int | None = Field(None, ge=1)


def _settings(fixed: dict, cell: dict):
    steps = fixed["steps"].get(cell.get("solver", fixed["solver"]))
    if steps is None:
        from repro.errors import UserError

        raise UserError(f"fixed.steps has no entry for solver {cell.get('solver')!r}")
    return resolve_cell({**fixed, "steps": steps}, cell)


def prepare(ctx) -> dict:
    from repro.trainers.edm import to_model_range

    fixed = ctx.spec.fixed
    settings = [_settings(fixed, c) for c in ctx.resolved.cells()]
    edm, shape = E.load_edm(ctx)
    disc, disc_epoch = (None, None)
    if any(s.guided for s in settings):
        disc, disc_epoch = E.load_discriminator(ctx, fixed["discriminator_epoch"])
    real = to_model_range(E.reference_images(ctx, fixed["n_real"]))
    return {"edm": edm, "shape": shape, "disc": disc, "disc_epoch": disc_epoch, "real": real, "training": {}}


def _training_curve(ctx, state, sigmas: list[float], key) -> list[float]:
    """||eps|| on real images noised to each sigma; shared by every method with this schedule."""
    from repro.metrics.exposure_bias import training_eps_norms

    if key not in state["training"]:
        state["training"][key] = training_eps_norms(state["edm"].net, state["real"].to(ctx.device), sigmas,
                                                    ctx.generator("training-noise", *key),
                                                    batch_size=ctx.spec.fixed["batch_size"])
    return state["training"][key]


def run_cell(ctx, state, cell, run) -> dict:
    from repro.metrics.exposure_bias import sampling_eps_norms

    fixed = ctx.spec.fixed
    s = _settings(fixed, cell)
    disc = state["disc"]
    guidance, eps = E.sampler_objects(s, disc.net if disc else None, fixed["time_min"], fixed["time_max"])
    total, count, sigmas, steps, stages = None, 0, [], [], []
    for j, start in enumerate(range(0, fixed["n_samples"], fixed["batch_size"])):
        b = min(fixed["batch_size"], fixed["n_samples"] - start)
        latents = torch.randn((b, *state["shape"]), generator=ctx.generator("latents", j)).to(ctx.device)
        sigmas, steps, stages, norms = sampling_eps_norms(
            state["edm"].net, latents, steps=s.steps, solver=s.solver, guidance=guidance, eps_scale=eps,
            sigma_min=fixed["sigma_min"], sigma_max=fixed["sigma_max"], rho=fixed["rho"])
        part = torch.tensor(norms, dtype=torch.float64) * b
        total, count = (part if total is None else total + part), count + b
    sampling = (total / count).tolist()
    training = _training_curve(ctx, state, sigmas, (s.solver, s.steps))
    excess = [100 * (a / t - 1) for a, t in zip(sampling, training)]
    third = max(1, len(excess) // 3)
    return {"values": {"eps_norm_excess_pct": sum(excess) / len(excess),
                       "eps_norm_excess_last_third_pct": sum(excess[-third:]) / third,
                       "nfe": float(len(sampling))},
            "extra": {**s.to_dict(), "sigmas": sigmas, "steps_of_eval": steps, "stages": stages,
                      "sampling_norm": sampling, "training_norm": training, "excess_pct": excess,
                      "n_samples": fixed["n_samples"], "n_real": int(state["real"].shape[0]),
                      "edm_model": state["edm"].name, "edm_hash": state["edm"].hash,
                      "discriminator_epoch": state["disc_epoch"] if s.guided else None}}


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
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


def report_notes(spec, df) -> list[str]:
    notes = []
    ex = {(r["solver"], r["method"]): (r["eps_norm_excess_pct"], r["eps_norm_excess_last_third_pct"])
          for _, r in df.iterrows()}
    for solver in ("euler", "heun"):
        e, g = ex.get((solver, "edm")), ex.get((solver, "edm_gpp"))
        if e is None or g is None:
            continue
        above = e[0] > 0 and g[0] > 0
        kept = g[0] >= e[0] - 0.1 * abs(e[0])
        near = abs(g[0] - e[0]) < 0.5 * max(abs(e[0]), 1e-9)
        notes.append(f"{solver.capitalize()}: the sampling norm exceeds the training norm by {e[0]:+.2f}% (EDM) and "
                     f"{g[0]:+.2f}% (EDM-G++) on average over the evaluations, {e[1]:+.2f}% / {g[1]:+.2f}% over the "
                     f"last third (small sigma). Thesis: both lie above the training curve "
                     f"({'held' if above else 'did not hold'}); DG does not remove the bias "
                     f"({'held' if kept else 'did not hold'}: EDM-G++'s excess is "
                     f"{'not smaller than' if kept else 'smaller than'} EDM's); the two sampling curves nearly "
                     f"coincide ({'held' if near else 'did not hold: DG ' + ('raises' if g[0] > e[0] else 'lowers') + ' the norm'}).")
    for _, r in df[df["method"] == "edm"].iterrows():
        below = [(e, s) for e, s in zip(r["excess_pct"], r["sigmas"]) if e < 0]
        if below:
            worst = min(below)
            notes.append(f"{r['solver'].capitalize()}, EDM: the sampling norm is below the training norm at "
                         f"{len(below)} of {len(r['excess_pct'])} evaluations (down to {worst[0]:+.2f}% at sigma "
                         f"{worst[1]:.3g}): where it is, dividing epsilon by b > 1 moves away from the training "
                         f"curve, so the best b can be < 1 for this model.")
    if ("euler", "edm") in ex and ("heun", "edm") in ex:
        smaller = abs(ex[("heun", "edm")][0]) < abs(ex[("euler", "edm")][0])
        notes.append(f"Thesis: the gap is smaller with Heun than with Euler (the correction step re-adjusts the "
                     f"drifted trajectory): EDM {ex[('heun', 'edm')][0]:+.2f}% vs {ex[('euler', 'edm')][0]:+.2f}%: "
                     f"{'held' if smaller else 'did not hold'}.")
    if "discriminator_epoch" in df.columns and df["discriminator_epoch"].notna().any():
        notes.append(f"EDM-G++ curves used discriminator epoch "
                     f"{', '.join(str(int(e)) for e in sorted(set(df['discriminator_epoch'].dropna())))}.")
    return notes
