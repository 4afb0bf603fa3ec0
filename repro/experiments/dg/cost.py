"""Work units of the EDM / discriminator-guidance / epsilon-scaling kinds (dg_epsilon_grid,
exposure_bias), before the run."""
from __future__ import annotations

from repro.data.split_sizes import split_size
from repro.experiments.cost import KindEstimator, SpecContext
from repro.experiments.dg.settings import CellSettings, cell_settings, resolve_cell
from repro.guidance.discriminator import in_time_window
from repro.sampling.edm import edm_time_steps
from repro.work import EVAL, FEATURES, GRAD, CellWork, NetRef, edm_nfe


def dg_guided_evaluations(s: CellSettings, time_min: float, time_max: float, sigma_min: float = 0.002,
                          sigma_max: float = 80.0, rho: float = 7.0) -> int:
    """Discriminator forward + backward passes per sample of EDM sampling with DG (Eq. 9.3): one per
    Euler evaluation at sigma_i (w_1st != 0) and per Heun correction at sigma_{i+1} (w_2nd != 0),
    where sigma's VP time lies in [time_min, time_max] (the sampler's own sigmas and window)."""
    sig = edm_time_steps(s.steps, sigma_min, sigma_max, rho)
    inside = in_time_window(sig, time_min, time_max)
    n = int(inside[:s.steps].sum()) if s.w_dg != 0 else 0
    if s.solver == "heun" and s.w_dg_2nd != 0:
        n += int(inside[1:s.steps].sum())
    return n


def _edm_sampling(ctx: SpecContext, s: CellSettings, n: int, label: str) -> CellWork:
    f, work = ctx.fixed, CellWork()
    nfe = edm_nfe(s.steps, s.solver)
    work.add(ctx.ref("edm"), EVAL, n * nfe, f["batch_size"], f"{label}: {n} samples x {nfe} evaluations ({s.solver})")
    if s.guided:
        g = dg_guided_evaluations(s, f["time_min"], f["time_max"], f["sigma_min"], f["sigma_max"], f["rho"])
        work.add(ctx.ref("discriminator"), GRAD, n * g, f["batch_size"],
                 f"{label}: {n} samples x {g} discriminator forward + backward")
    return work


def _metric_nets(ctx: SpecContext) -> list[tuple[NetRef, int]]:
    out = []
    if "fid" in ctx.spec.metrics:
        res = ctx.spec.dataset.resolution
        out.append((NetRef("inception", resolution=tuple(res) if res else None), 250))
    if "fd_evalnet" in ctx.spec.metrics:
        out.append((ctx.ref("evaluator"), 256))
    return out


def _grid_settings(ctx: SpecContext, cell: dict) -> CellSettings:
    return resolve_cell(ctx.settings, cell)


def _grid_prepare(ctx: SpecContext) -> CellWork:
    ds, work = ctx.spec.dataset, CellWork()
    n = split_size(ds.name, ds.split, ctx.fixed["n_ref"], ds.seed)
    for net, batch in _metric_nets(ctx):
        if n is None:
            work.unknown.append("reference set size unknown before loading")
        else:
            work.add(net, FEATURES, n, batch, f"reference images: {n} through {net.name}")
    return work


def _grid_roles(ctx: SpecContext) -> list[str]:
    guided = any(_grid_settings(ctx, c).guided for c in ctx.resolved.cells())
    return ["edm"] + (["discriminator"] if guided else []) + (["evaluator"] if "fd_evalnet" in ctx.spec.metrics else [])


def _dg_epsilon_grid(ctx: SpecContext, cell: dict) -> CellWork:
    s = _grid_settings(ctx, cell)
    runs = int(ctx.fixed.get("n_runs", 1))   # repeated sampling runs, each with its own latents
    n = ctx.fixed["n_samples"] * runs
    work = _edm_sampling(ctx, s, n, s.method if runs == 1 else f"{s.method} ({runs} runs)")
    for net, batch in _metric_nets(ctx):
        work.add(net, FEATURES, n, batch, f"generated images: {n} through {net.name}")
    return work


def _exposure_settings(ctx: SpecContext, cell: dict) -> CellSettings:
    return cell_settings(ctx.settings, cell)


def _exposure_roles(ctx: SpecContext) -> list[str]:
    guided = any(_exposure_settings(ctx, c).guided for c in ctx.resolved.cells())
    return ["edm"] + (["discriminator"] if guided else [])


def _exposure_bias(ctx: SpecContext, cell: dict) -> CellWork:
    f, s = ctx.fixed, _exposure_settings(ctx, cell)
    work = _edm_sampling(ctx, s, f["n_samples"], s.method)
    key = ("exposure-training-curve", s.solver, s.steps)
    if key not in ctx.seen:   # the training-side norms: once per schedule in a run
        ctx.seen.add(key)
        ds = ctx.spec.dataset
        n_real = split_size(ds.name, ds.split, f["n_real"], ds.seed) or f["n_real"]
        nfe = edm_nfe(s.steps, s.solver)
        work.add(ctx.ref("edm"), EVAL, n_real * nfe, f["batch_size"],
                 f"training-side norms: {n_real} real images x {nfe} noise levels")
    return work


ESTIMATORS: dict[str, KindEstimator] = {
    "dg_epsilon_grid": KindEstimator(_dg_epsilon_grid, _grid_prepare, _grid_roles),
    "exposure_bias": KindEstimator(_exposure_bias, roles=_exposure_roles),
}
