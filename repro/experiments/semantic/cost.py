"""Work units of the semantic-synthesis kinds (guided PC sampling of segmentation maps, baselines,
segmenters), before the run."""
from __future__ import annotations

import torch

from repro.data.split_sizes import split_size
from repro.experiments.cost import KindEstimator, SpecContext
from repro.experiments.semantic.settings import synthesis_setting, window_schedule
from repro.guidance.segmentation import ScaleSchedule
from repro.sampling.common import reverse_time_grid
from repro.work import EVAL, FEATURES, GRAD, CellWork, pc_nfe


def guided_pc_evaluations(schedule: ScaleSchedule, steps: int, eps: float, evals_per_time: int,
                          T: float = 1.0) -> int:
    """Guide forward + backward passes per sample of guided PC sampling: at each time of the sampler's
    own grid (float32, as the samples) where s(t) is non-zero, every score evaluation there (corrector
    and predictor) carries one (Eq. 5.6; SegmentationGuidance skips a time where s(t) = 0)."""
    times = reverse_time_grid(steps, eps, torch.zeros(1), T)[:steps]
    return evals_per_time * int((schedule(times) != 0).sum())


def _guided_synthesis(ctx: SpecContext, setting, n: int, label: str) -> CellWork:
    """Guided PC sampling of n maps (Eq. 5.5, 5.6), then the evaluator and the guide's own view."""
    f, work = ctx.fixed, CellWork()
    nfe = pc_nfe(setting.steps, setting.n_corrector_steps)
    guided = guided_pc_evaluations(setting.schedule, setting.steps, ctx.score_eps("score", setting.eps),
                                   setting.n_corrector_steps + 1)
    work.add(ctx.ref("score"), EVAL, n * nfe, f["batch_size"], f"{label}: {n} maps x {nfe} score evaluations")
    work.add(ctx.ref("guide"), GRAD, n * guided, f["batch_size"],
             f"{label}: {n} maps x {guided} guided evaluations (segmenter forward + backward)")
    work.add(ctx.ref("evaluator"), EVAL, n, 32, f"evaluator segments {n} samples")
    work.add(ctx.ref("guide"), EVAL, n, 32, f"guide segments {n} samples")
    return work


def _semantic_prepare(ctx: SpecContext, n_maps: int, quality: bool) -> CellWork:
    f, work = ctx.fixed, CellWork()
    if quality:
        ctx.add_features(work, f["n_reference"], "reference images")
        if f.get("floor_split"):
            ctx.add_features(work, n_maps, f"real-vs-real floor ({f['floor_split']} split)")
    work.add(ctx.ref("evaluator"), EVAL, n_maps, 32, f"oracle: evaluator segments {n_maps} real images")
    return work


def _sweep_prepare(ctx: SpecContext) -> CellWork:
    work = _semantic_prepare(ctx, ctx.fixed["n_maps"], quality=True)
    n = min(16, ctx.fixed["n_maps"])   # score_guidance_norms: 16 images at 3 times
    work.add(ctx.ref("score"), EVAL, 3 * n, n, "score / guidance norm ratio")
    work.add(ctx.ref("guide"), GRAD, 3 * n, n, "score / guidance norm ratio")
    return work


def _guidance_scale_sweep(ctx: SpecContext, cell: dict) -> CellWork:
    setting = synthesis_setting(ctx.fixed, cell)
    n = ctx.fixed["n_maps"]
    work = _guided_synthesis(ctx, setting, n, f"s0={setting.schedule.s0:g}")
    net, batch = ctx.quality()
    if net is not None:
        work.add(net, FEATURES, n, batch, f"generated images: {n} through {net.name}")
    return work


def _window_prepare(ctx: SpecContext) -> CellWork:
    return _semantic_prepare(ctx, ctx.fixed["n_maps"], quality=False)


def _guidance_window(ctx: SpecContext, cell: dict) -> CellWork:
    f = ctx.fixed
    setting = synthesis_setting(f, {}, schedule=window_schedule(cell, f["s0"] * f["s0_scale"]))
    return _guided_synthesis(ctx, setting, f["n_maps"] * f["repeats"], f"{cell['window']} t={cell['t']}")


def _segmenter_timesteps(ctx: SpecContext, cell: dict) -> CellWork:
    ds, work = ctx.spec.dataset, CellWork()
    n = split_size(ds.name, ds.split, ctx.fixed["n_images"], ds.seed) or ctx.fixed["n_images"]
    work.add(ctx.ref("segmenter"), EVAL, n, 64, f"segmenter on {n} images noised to t={cell['t']}")
    return work


def _noise_encoding(ctx: SpecContext, cell: dict) -> CellWork:
    return CellWork(notes=[f"reads the training history of model role {cell['encoding']} (its training is "
                           f"counted with the models)"])


def _baseline_methods(ctx: SpecContext) -> tuple[list[str], dict]:
    return [str(m) for m in ctx.spec.grid.get("method", [])], ctx.fixed["folders"]


def _baseline_roles(ctx: SpecContext) -> list[str]:
    methods, folders = _baseline_methods(ctx)
    roles = ["evaluator"]
    if "ncsnpp" in methods and "ncsnpp" not in folders:
        roles = ["score", "guide", "evaluator"]
    roles += [m for m in ("spade", "pix2pixhd") if m in methods and m not in folders and m in ctx.spec.models]
    if "fd_evalnet" in ctx.spec.metrics and "evaluator" not in roles:
        roles.append("evaluator")
    return roles


def _baseline_prepare(ctx: SpecContext) -> CellWork:
    return _semantic_prepare(ctx, ctx.fixed["n_maps"], quality=True)


def _baseline_comparison(ctx: SpecContext, cell: dict) -> CellWork:
    f, method = ctx.fixed, str(cell["method"])
    _, folders = _baseline_methods(ctx)
    n = f["n_maps"]
    copies = int(f.get("model_seeds", 1))   # a generated row is computed with each trained copy of its models
    if method in folders:
        work = CellWork(notes=[f"{method}: scored from the folder {folders[method]['images']}"])
    elif method == "oracle":
        work = CellWork()
    elif method == "ncsnpp":
        n *= copies
        work = _guided_synthesis(ctx, synthesis_setting(f, {}), n, "NCSN++ guided")
    elif method in ("spade", "pix2pixhd") and method in ctx.spec.models:
        n *= copies
        work = CellWork()
        work.add(ctx.ref(method), EVAL, n, f["batch_size"], f"{method} generator on {n} maps")
    else:
        return CellWork(notes=[f"{method}: published only (nothing runs)"])
    work.add(ctx.ref("evaluator"), EVAL, n, 32, f"evaluator segments {n} images")
    net, batch = ctx.quality()
    if net is not None and method != "oracle":
        work.add(net, FEATURES, n, batch, f"generated images: {n} through {net.name}")
    return work


ESTIMATORS: dict[str, KindEstimator] = {
    "guidance_scale_sweep": KindEstimator(_guidance_scale_sweep, _sweep_prepare),
    "guidance_window": KindEstimator(_guidance_window, _window_prepare),
    "baseline_comparison": KindEstimator(_baseline_comparison, _baseline_prepare, _baseline_roles),
    "segmenter_timesteps": KindEstimator(_segmenter_timesteps),
    "noise_encoding_comparison": KindEstimator(_noise_encoding),
}
