"""Work units of the score-SDE kinds (sampler_comparison, snr_sweep, class_conditional), before the run."""
from __future__ import annotations

from repro.data import dataset_info
from repro.experiments.cost import KindEstimator, SpecContext
from repro.experiments.score.sampler_settings import corrector_only_elsewhere, setting_for
from repro.experiments.score.sampling import SamplerSetting
from repro.metrics.spread import RESAMPLES
from repro.work import EVAL, FEATURES, GRAD, CellWork, pc_nfe


def setting_nfe(setting: SamplerSetting) -> int | None:
    """Score evaluations per sample of a repro.experiments.score.sampling.SamplerSetting."""
    if setting.method == "pc":
        return pc_nfe(setting.steps, setting.n_corrector_steps, setting.predictor != "none",
                      setting.corrector != "none")
    if setting.method in ("euler_maruyama", "milstein"):
        return setting.steps
    if setting.method == "ode":
        if setting.ode_method == "rk45":
            return None   # adaptive: its NFE is known only after the solve
        return setting.steps * (2 if setting.ode_method == "heun" else 1) + (1 if setting.denoise else 0)
    return None


def _score_prepare(ctx: SpecContext) -> CellWork:
    f, work = ctx.fixed, CellWork()
    ctx.add_features(work, f["n_reference"], "reference images")
    if f.get("floor_split"):
        ctx.add_features(work, f["n_samples"], f"real-vs-real floor ({f['floor_split']} split)")
    return work


def _sampling(ctx: SpecContext, role: str, setting: SamplerSetting, label: str) -> CellWork:
    f, work = ctx.fixed, CellWork()
    nfe = setting_nfe(setting)
    n = f["n_samples"] * f["n_runs"]
    if nfe is None:
        work.unknown.append(f"{label}: adaptive RK45 (NFE known only after solving)")
    else:
        work.add(ctx.ref(role), EVAL, n * nfe, f["batch_size"],
                 f"{label}: {f['n_runs']} runs x {f['n_samples']} samples x {nfe} evaluations")
    ctx.add_features(work, n, "generated images")
    work.notes.append(f"{RESAMPLES} Frechet-distance replicates over run 0's {f['n_samples']} samples for the claims "
                      f"(CPU linear algebra, not counted here)")
    return work


def _sampler_roles(ctx: SpecContext) -> list[str]:
    roles = sorted({str(v) for v in ctx.spec.grid.get("sde", [])}) or ["score"]
    return roles + (["evaluator"] if ctx.quality()[0] is not None and "fid" not in ctx.spec.metrics else [])


def _sampler_comparison(ctx: SpecContext, cell: dict) -> CellWork:
    if corrector_only_elsewhere(cell):
        return CellWork(notes=["corrector-only: run once, in the reverse-diffusion row"])
    setting = setting_for(cell, ctx.fixed)
    role = str(cell.get("sde", "score"))
    work = _sampling(ctx, role, setting, setting.label())
    if cell.get("solver") == "milstein":   # Euler-Maruyama re-run of the first batch with the same noise
        b = min(ctx.fixed["batch_size"], ctx.fixed["n_samples"])
        work.add(ctx.ref(role), EVAL, b * setting.steps, b, f"Euler-Maruyama comparison: {b} x {setting.steps}")
    return work


def _snr_roles(ctx: SpecContext) -> list[str]:
    return ["score"] + (["evaluator"] if "fid" not in ctx.spec.metrics and "evaluator" in ctx.spec.models else [])


def _snr_sweep(ctx: SpecContext, cell: dict) -> CellWork:
    f = ctx.fixed
    setting = SamplerSetting("pc", f["steps"], predictor=f["predictor"], corrector="langevin",
                             snr=float(cell["snr"]), n_corrector_steps=f["n_corrector_steps"], eps=f["eps"])
    return _sampling(ctx, "score", setting, f"PC snr={cell['snr']}")


def _classes(ctx: SpecContext) -> int:
    return len(ctx.fixed["classes"] or range(dataset_info(ctx.spec.dataset.name).num_classes))


def _class_prepare(ctx: SpecContext) -> CellWork:
    f, work = ctx.fixed, CellWork()
    n = f["norm_images"] * f["norm_times"]
    work.add(ctx.ref("score"), EVAL, n, f["batch_size"], f"norm ratio: {f['norm_images']} images x {f['norm_times']} times")
    work.add(ctx.ref("guide"), GRAD, n, f["batch_size"], "norm ratio: classifier gradients")
    work.add(ctx.ref("guide"), EVAL, n, f["batch_size"], "norm ratio: guide accuracy")
    if "fd_evalnet" in ctx.spec.metrics:
        work.add(ctx.ref("evaluator"), FEATURES, f["n_reference"], 256, "reference images")
    return work


def _class_conditional(ctx: SpecContext, cell: dict) -> CellWork:
    f, work = ctx.fixed, CellWork()
    n = f["n_per_class"] * _classes(ctx)
    nfe = pc_nfe(f["steps"], f["n_corrector_steps"])
    work.add(ctx.ref("score"), EVAL, n * nfe, f["batch_size"], f"PC sampling: {n} samples x {nfe} evaluations")
    if float(cell["scale"]) > 0:   # the classifier term at every score evaluation (Eq. 4.22)
        work.add(ctx.ref("guide"), GRAD, n * nfe, f["batch_size"],
                 f"classifier guidance: {n} samples x {nfe} forward + backward")
    work.add(ctx.ref("evaluator"), EVAL, n, 256, f"evaluator classifies {n} samples")
    work.add(ctx.ref("guide"), EVAL, n, 256, f"guide classifies {n} samples")
    if "fd_evalnet" in ctx.spec.metrics:
        work.add(ctx.ref("evaluator"), FEATURES, n, 256, f"generated images: {n} evaluator features")
    return work


ESTIMATORS: dict[str, KindEstimator] = {
    "sampler_comparison": KindEstimator(_sampler_comparison, _score_prepare, _sampler_roles),
    "snr_sweep": KindEstimator(_snr_sweep, _score_prepare, _snr_roles),
    "class_conditional": KindEstimator(_class_conditional, _class_prepare),
}
