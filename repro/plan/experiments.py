"""The work of one grid cell, per experiment kind (a registry keyed by the spec's `kind`).

Each estimator reads the runner's own `fixed` settings (already validated by its `Fixed`) and,
where the runner has a pure function for a cell's sampler settings, that function; what the
runner then does is counted here, so the runners stay untouched. A kind without an estimator
is reported as "work units unknown for kind K", never guessed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repro.plan.training import net_ref
from repro.plan.work import (EVAL, FEATURES, GRAD, CellWork, NetRef, dg_guided_evaluations, edm_nfe,
                             guided_pc_evaluations, pc_nfe, reverse_times, scale_is_on)


@dataclass
class SpecContext:
    """What the estimators of one spec share: the resolved spec, its models' networks, and the
    work already counted in this plan (a runner computes some things once per run)."""

    resolved: Any
    device_type: str = "cpu"    # cpu | cuda: what the run will use (the batch search runs on CUDA only)
    seen: set = field(default_factory=set)
    _refs: dict = field(default_factory=dict)

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def fixed(self) -> dict:
        return self.resolved.spec.fixed

    def model(self, role: str):
        if role not in self._refs:
            self._refs[role] = self.resolved.model(role)
        return self._refs[role]

    def ref(self, role: str) -> NetRef:
        return net_ref(self.model(role))

    def quality(self) -> tuple[NetRef | None, int]:
        """The Frechet metric's feature network and its batch (fid: Inception; fd_evalnet: the evaluator)."""
        metrics = self.spec.metrics
        if "fid" in metrics:
            res = self.spec.dataset.resolution
            return NetRef("inception", resolution=tuple(res) if res else None), 50
        if "fd_evalnet" in metrics and "evaluator" in self.spec.models:
            return self.ref("evaluator"), 256
        return None, 1

    def classifies(self) -> bool:
        """The digits evaluator also classifies the samples (class entropy, confidence)."""
        return ("fid" not in self.spec.metrics and "evaluator" in self.spec.models
                and self.model("evaluator").config.net.get("arch") == "digits_classifier")

    def score_eps(self, role: str, eps: float | None) -> float:
        """The sampler's end time: fixed.eps, else the SDE's default (VE 1e-5, VP / sub-VP 1e-3)."""
        if eps is not None:
            return float(eps)
        return 1e-5 if self.model(role).config.net.get("sde", "ve") == "ve" else 1e-3


CellEstimator = Callable[[SpecContext, dict], CellWork]
PrepareEstimator = Callable[[SpecContext], CellWork]
RolesFn = Callable[[SpecContext], list[str]]


@dataclass(frozen=True)
class KindEstimator:
    cell: CellEstimator
    prepare: PrepareEstimator | None = None
    roles: RolesFn | None = None   # the roles whose models the runner trains (default: every role)


EXPERIMENTS: dict[str, KindEstimator] = {}


def experiment_estimator(kind: str, prepare: PrepareEstimator | None = None, roles: RolesFn | None = None):
    def register(fn: CellEstimator):
        EXPERIMENTS[kind] = KindEstimator(fn, prepare, roles)
        return fn
    return register


def _features(work: CellWork, ctx: SpecContext, n: int, what: str) -> None:
    net, batch = ctx.quality()
    if net is not None:
        work.add(net, FEATURES, n, batch, f"{what}: {n} images through {net.name}")
    if ctx.classifies():
        work.add(ctx.ref("evaluator"), EVAL, n, 256, f"{what}: {n} images classified by the evaluator")


# ----------------------------------------------------------------------------- score-SDE samplers

def _setting_nfe(setting) -> int | None:
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
    _features(work, ctx, f["n_reference"], "reference images")
    if f.get("floor_split"):
        _features(work, ctx, f["n_samples"], f"real-vs-real floor ({f['floor_split']} split)")
    return work


def _sampling(ctx: SpecContext, role: str, setting, label: str) -> CellWork:
    f, work = ctx.fixed, CellWork()
    nfe = _setting_nfe(setting)
    n = f["n_samples"] * f["n_runs"]
    if nfe is None:
        work.unknown.append(f"{label}: adaptive RK45 (NFE known only after solving)")
    else:
        work.add(ctx.ref(role), EVAL, n * nfe, f["batch_size"],
                 f"{label}: {f['n_runs']} runs x {f['n_samples']} samples x {nfe} evaluations")
    _features(work, ctx, n, "generated images")
    return work


def _sampler_roles(ctx: SpecContext) -> list[str]:
    roles = sorted({str(v) for v in ctx.spec.grid.get("sde", [])}) or ["score"]
    return roles + (["evaluator"] if ctx.quality()[0] is not None and "fid" not in ctx.spec.metrics else [])


@experiment_estimator("sampler_comparison", prepare=_score_prepare, roles=_sampler_roles)
def _sampler_comparison(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.score import sampler_comparison as R
    if R._corrector_only_elsewhere(cell):
        return CellWork(notes=["corrector-only: run once, in the reverse-diffusion row"])
    setting = R.setting_for(cell, ctx.fixed)
    role = str(cell.get("sde", "score"))
    work = _sampling(ctx, role, setting, setting.label())
    if cell.get("solver") == "milstein":   # Euler-Maruyama re-run of the first batch with the same noise
        b = min(ctx.fixed["batch_size"], ctx.fixed["n_samples"])
        work.add(ctx.ref(role), EVAL, b * setting.steps, b, f"Euler-Maruyama comparison: {b} x {setting.steps}")
    return work


@experiment_estimator("snr_sweep", prepare=_score_prepare,
                      roles=lambda ctx: ["score"] + (["evaluator"] if "fid" not in ctx.spec.metrics
                                                     and "evaluator" in ctx.spec.models else []))
def _snr_sweep(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.score.sampling import SamplerSetting

    f = ctx.fixed
    setting = SamplerSetting("pc", f["steps"], predictor=f["predictor"], corrector="langevin",
                             snr=float(cell["snr"]), n_corrector_steps=f["n_corrector_steps"], eps=f["eps"])
    return _sampling(ctx, "score", setting, f"PC snr={cell['snr']}")


# ----------------------------------------------------------------------------- semantic synthesis

def _guided_synthesis(ctx: SpecContext, setting, n: int, label: str) -> CellWork:
    """Guided PC sampling of n maps (Eq. 5.5, 5.6), then the evaluator and the guide's own view."""
    f, work = ctx.fixed, CellWork()
    per_time = setting.n_corrector_steps + 1
    nfe = pc_nfe(setting.steps, setting.n_corrector_steps)
    sched = setting.schedule
    times = reverse_times(setting.steps, ctx.score_eps("score", setting.eps))
    guided = guided_pc_evaluations(times, per_time, lambda t: scale_is_on(
        sched.kind, t, sched.s0, sched.t_start, sched.t_decay, sched.t_stop))
    work.add(ctx.ref("score"), EVAL, n * nfe, f["batch_size"], f"{label}: {n} maps x {nfe} score evaluations")
    work.add(ctx.ref("guide"), GRAD, n * guided, f["batch_size"],
             f"{label}: {n} maps x {guided} guided evaluations (segmenter forward + backward)")
    work.add(ctx.ref("evaluator"), EVAL, n, 32, f"evaluator segments {n} samples")
    work.add(ctx.ref("guide"), EVAL, n, 32, f"guide segments {n} samples")
    return work


def _semantic_prepare(ctx: SpecContext, n_maps: int, quality: bool) -> CellWork:
    f, work = ctx.fixed, CellWork()
    if quality:
        _features(work, ctx, f["n_reference"], "reference images")
        if f.get("floor_split"):
            _features(work, ctx, n_maps, f"real-vs-real floor ({f['floor_split']} split)")
    work.add(ctx.ref("evaluator"), EVAL, n_maps, 32, f"oracle: evaluator segments {n_maps} real images")
    return work


def _sweep_prepare(ctx: SpecContext) -> CellWork:
    work = _semantic_prepare(ctx, ctx.fixed["n_maps"], quality=True)
    n = min(16, ctx.fixed["n_maps"])   # score_guidance_norms: 16 images at 3 times
    work.add(ctx.ref("score"), EVAL, 3 * n, n, "score / guidance norm ratio")
    work.add(ctx.ref("guide"), GRAD, 3 * n, n, "score / guidance norm ratio")
    return work


@experiment_estimator("guidance_scale_sweep", prepare=_sweep_prepare)
def _guidance_scale_sweep(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.semantic.settings import synthesis_setting

    setting = synthesis_setting(ctx.fixed, cell)
    n = ctx.fixed["n_maps"]
    work = _guided_synthesis(ctx, setting, n, f"s0={setting.schedule.s0:g}")
    net, batch = ctx.quality()
    if net is not None:
        work.add(net, FEATURES, n, batch, f"generated images: {n} through {net.name}")
    return work


@experiment_estimator("guidance_window",
                      prepare=lambda ctx: _semantic_prepare(ctx, ctx.fixed["n_maps"], quality=False))
def _guidance_window(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.semantic.guidance_window import _schedule
    from repro.experiments.semantic.settings import synthesis_setting

    f = ctx.fixed
    setting = synthesis_setting(f, {}, schedule=_schedule(cell, f["s0"] * f["s0_scale"]))
    return _guided_synthesis(ctx, setting, f["n_maps"] * f["repeats"], f"{cell['window']} t={cell['t']}")


# ----------------------------------------------------------------------------- class-conditional

def _classes(ctx: SpecContext) -> int:
    from repro.data import dataset_info

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


@experiment_estimator("class_conditional", prepare=_class_prepare)
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


# ----------------------------------------------------------------------------- EDM / DG / epsilon scaling

def _edm_sampling(ctx: SpecContext, s, n: int, label: str) -> CellWork:
    f, work = ctx.fixed, CellWork()
    nfe = edm_nfe(s.steps, s.solver)
    work.add(ctx.ref("edm"), EVAL, n * nfe, f["batch_size"], f"{label}: {n} samples x {nfe} evaluations ({s.solver})")
    if s.guided:
        g = dg_guided_evaluations(s.steps, s.solver, s.w_dg, s.w_dg_2nd, f["time_min"], f["time_max"],
                                  f["sigma_min"], f["sigma_max"], f["rho"])
        work.add(ctx.ref("discriminator"), GRAD, n * g, f["batch_size"],
                 f"{label}: {n} samples x {g} discriminator forward + backward")
    return work


def _dg_metric_nets(ctx: SpecContext) -> list[tuple[NetRef, int]]:
    out = []
    if "fid" in ctx.spec.metrics:
        res = ctx.spec.dataset.resolution
        out.append((NetRef("inception", resolution=tuple(res) if res else None), 250))
    if "fd_evalnet" in ctx.spec.metrics:
        out.append((ctx.ref("evaluator"), 256))
    return out


def _dg_prepare(ctx: SpecContext) -> CellWork:
    from repro.plan.datasets import split_size

    ds, work = ctx.spec.dataset, CellWork()
    n = split_size(ds.name, ds.split, ctx.fixed["n_ref"], ds.seed)
    for net, batch in _dg_metric_nets(ctx):
        if n is None:
            work.unknown.append("reference set size unknown before loading")
        else:
            work.add(net, FEATURES, n, batch, f"reference images: {n} through {net.name}")
    return work


def _dg_roles(ctx: SpecContext) -> list[str]:
    from repro.experiments.dg.settings import resolve_cell

    guided = any(resolve_cell(ctx.fixed, c).guided for c in ctx.resolved.cells())
    return ["edm"] + (["discriminator"] if guided else []) + (["evaluator"] if "fd_evalnet" in ctx.spec.metrics else [])


@experiment_estimator("dg_epsilon_grid", prepare=_dg_prepare, roles=_dg_roles)
def _dg_epsilon_grid(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.dg.settings import resolve_cell

    s = resolve_cell(ctx.fixed, cell)
    runs = int(ctx.fixed.get("n_runs", 1))   # repeated sampling runs, each with its own latents
    n = ctx.fixed["n_samples"] * runs
    work = _edm_sampling(ctx, s, n, s.method if runs == 1 else f"{s.method} ({runs} runs)")
    for net, batch in _dg_metric_nets(ctx):
        work.add(net, FEATURES, n, batch, f"generated images: {n} through {net.name}")
    return work


def _exposure_roles(ctx: SpecContext) -> list[str]:
    from repro.experiments.dg.exposure_bias import _settings

    guided = any(_settings(ctx.fixed, c).guided for c in ctx.resolved.cells())
    return ["edm"] + (["discriminator"] if guided else [])


@experiment_estimator("exposure_bias", roles=_exposure_roles)
def _exposure_bias(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.dg.exposure_bias import _settings
    from repro.plan.datasets import split_size

    f, s = ctx.fixed, _settings(ctx.fixed, cell)
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


# ----------------------------------------------------------------------------- segmenters, mixed precision

@experiment_estimator("segmenter_timesteps")
def _segmenter_timesteps(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.plan.datasets import split_size

    ds, work = ctx.spec.dataset, CellWork()
    n = split_size(ds.name, ds.split, ctx.fixed["n_images"], ds.seed) or ctx.fixed["n_images"]
    work.add(ctx.ref("segmenter"), EVAL, n, 64, f"segmenter on {n} images noised to t={cell['t']}")
    return work


@experiment_estimator("noise_encoding_comparison")
def _noise_encoding(ctx: SpecContext, cell: dict) -> CellWork:
    return CellWork(notes=[f"reads the training history of model role {cell['encoding']} (its training is "
                           f"counted with the models)"])


def _amp_batch(ctx: SpecContext, device_type: str) -> tuple[int, str]:
    from repro.trainers.score_sde import parse

    if ctx.fixed["batch_size"] is not None:
        return int(ctx.fixed["batch_size"]), "fixed.batch_size"
    _, ts = parse(ctx.model("score"))
    if device_type == "cuda":
        return ts.batch_size, "searched on CUDA at run time; estimated at the model's train.batch_size"
    return ts.batch_size, "the model's train.batch_size"


def _amp_prepare(ctx: SpecContext) -> CellWork:
    from repro.plan.training import add_sigma_max_pairs
    from repro.trainers.score_sde import parse

    work = CellWork()
    net, _ = parse(ctx.model("score"))
    if ctx.fixed["sigma_max"] is None and net.sigma_max is None:   # estimated once, in prepare
        add_sigma_max_pairs(work, ctx.model("score"), net.sigma_max_pairs)
    return work


@experiment_estimator("amp_benchmark", prepare=_amp_prepare, roles=lambda ctx: [])
def _amp_benchmark(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.plan.datasets import split_size
    from repro.plan.work import TRAIN, training_steps

    f, work = ctx.fixed, CellWork()
    precision = str(cell.get("precision", "fp32"))
    device_type = ctx.device_type
    if precision == "fp16" and device_type != "cuda":
        return CellWork(notes=["fp16 + GradScaler needs CUDA: recorded as unavailable, nothing runs"])
    model = ctx.model("score")
    md = model.config.dataset
    n = split_size(md.name, md.split, f["n_train"] or md.n_train, md.seed)
    batch, source = _amp_batch(ctx, device_type)
    if n is None:
        return CellWork(unknown=["training-set size unknown before loading"])
    steps = training_steps(f["epochs"], n, batch, f["max_steps"])
    work.add(ctx.ref("score"), TRAIN, steps * batch, batch,
             f"{precision} arm: {f['epochs']} epochs x ceil({n} / {batch}) = {steps} steps x {batch} images "
             f"(batch: {source})")
    from repro.data import dataset_info
    from repro.plan.training import LOOP

    res = ctx.ref("score").resolution
    if res is not None:
        work.add(NetRef(LOOP, resolution=(dataset_info(md.name).channels, *res)), EVAL, steps * batch, batch,
                 f"training loop: {steps} steps at batch {batch}")
    if precision != "fp32":
        work.notes.append(f"{precision} arm timed as fp32 by the calibration (mixed precision is usually faster)")
    if f["batch_size"] is None and device_type == "cuda":
        work.unknown.append("largest-batch search (grow, bisect) on CUDA")
    return work


# ----------------------------------------------------------------------------- baselines, BDD mask-guided DDPM

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


@experiment_estimator("baseline_comparison", prepare=_baseline_prepare, roles=_baseline_roles)
def _baseline_comparison(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.semantic.settings import synthesis_setting

    f, method = ctx.fixed, str(cell["method"])
    methods, folders = _baseline_methods(ctx)
    n = f["n_maps"]
    if method in folders:
        work = CellWork(notes=[f"{method}: scored from the folder {folders[method]['images']}"])
    elif method == "oracle":
        work = CellWork()
    elif method == "ncsnpp":
        work = _guided_synthesis(ctx, synthesis_setting(f, {}), n, "NCSN++ guided")
    elif method in ("spade", "pix2pixhd") and method in ctx.spec.models:
        work = CellWork()
        work.add(ctx.ref(method), EVAL, n, f["batch_size"], f"{method} generator on {n} maps")
    else:
        return CellWork(notes=[f"{method}: published only (nothing runs)"])
    work.add(ctx.ref("evaluator"), EVAL, n, 32, f"evaluator segments {n} images")
    net, batch = ctx.quality()
    if net is not None and method != "oracle":
        work.add(net, FEATURES, n, batch, f"generated images: {n} through {net.name}")
    return work


def _bdd_features(ctx: SpecContext) -> tuple[NetRef, int]:
    if "fid" in ctx.spec.metrics or "kid" in ctx.spec.metrics or "evaluator" not in ctx.spec.models:
        res = ctx.spec.dataset.resolution
        return NetRef("inception", resolution=tuple(res) if res else None), 50
    return ctx.ref("evaluator"), 256


def _ddpm_sampling(ctx: SpecContext, work: CellWork, n: int, guidance) -> None:
    """Mask-guided DDPM sampling (001 Sec. 2.4): the appendix loop's T - 1 calls or Algorithm 2's T, each
    one pass of 2B rows with classifier-free guidance (masked and unmasked), B rows otherwise."""
    f = ctx.fixed
    steps = int(ctx.model("ddpm").config.net.get("T", 1000))
    nfe = steps - 1 if f["loop"] == "appendix" else steps
    rows = 2 if guidance is not None and not guidance.purely_conditional else 1
    b = min(f["batch_size"], n)
    work.add(ctx.ref("ddpm"), EVAL, n * nfe * rows, b * rows, f"DDPM sampling: {n} images x {nfe} steps x {rows} rows")


@experiment_estimator("unconditional_samples",
                      roles=lambda ctx: ["ddpm"] + (["evaluator"] if "evaluator" in ctx.spec.models else []))
def _unconditional_samples(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.bdd.model import guidance_for

    f, work = ctx.fixed, CellWork()
    conditional = cell.get("mode", "unconditional") == "conditional"
    _ddpm_sampling(ctx, work, f["n_samples"], guidance_for(f, cell) if conditional else None)
    net, batch = _bdd_features(ctx)
    work.add(net, FEATURES, 2 * f["n_samples"], batch, f"KID features of {f['n_samples']} generated and real images")
    return work


@experiment_estimator("mask_guided_metrics", roles=lambda ctx: ["ddpm", "evaluator"])
def _mask_guided_metrics(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.bdd.model import guidance_for
    from repro.plan.datasets import split_size

    f, work = ctx.fixed, CellWork()
    ds = ctx.spec.dataset
    n = split_size(ds.name, ds.split, f["n_samples"], ds.seed) or f["n_samples"]
    _ddpm_sampling(ctx, work, n, guidance_for(f, cell))
    net, batch = _bdd_features(ctx)
    work.add(net, FEATURES, 2 * n, batch, f"FID/KID features of {n} generated and {n} original images")
    work.add(ctx.ref("evaluator"), EVAL, 2 * n, 32, f"segmenter on {n} generated and {n} original images")
    return work


@experiment_estimator("inference_timing", roles=lambda ctx: [])
def _inference_timing(ctx: SpecContext, cell: dict) -> CellWork:
    from repro.experiments.bdd.model import guidance_for
    from repro.specs import resolve_model

    f, work = ctx.fixed, CellWork()
    ref = net_ref(resolve_model(f["model"], ctx.resolved.profile))   # fixed.model: timed, not a role
    batch = int(cell.get("batch_size", f["batch_size"]))
    conditional = cell.get("mode", "conditional") == "conditional"
    guided = conditional and not guidance_for(f, cell).purely_conditional
    rows = 2 * batch if guided else batch
    steps = f["steps_timed"] or f["steps"]
    runs = f["warmup"] + f["repeats"]
    work.add(ref, EVAL, runs * steps * rows, rows,
             f"{runs} runs ({f['warmup']} warm-up) x {steps} steps x {rows} rows ({cell.get('mode', 'conditional')})")
    variant = cell.get("variant", "fp32")
    if variant != "fp32":
        work.notes.append(f"variant {variant} timed as fp32 by the calibration")
    if f["weights"] == "trained":
        work.unknown.append(f"training of {f['model']} (fixed.weights: trained) if it is not in artifacts/")
    return work
