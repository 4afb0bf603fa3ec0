"""Class-conditional sampling with a noise-conditional classifier (000 thesis Sec. 5.1, Fig. 5.1).

For each guidance `scale` of the grid, PC sampling (Langevin corrector + `fixed.predictor`:
`euler_maruyama` is thesis Alg. 3 as written, `reverse_diffusion` the authors' code, score_sde,
which the thesis ported; each cell records which in `predictor_reading`) with the guided score
s_theta(x, t) + scale * grad_x log p_t(y | x) (thesis Eq. 4.22 weighted as Eq. 5.6, a constant
weight as Sec. 5.1's "factor of 1000"), n samples per requested class y, the same prior draws
and sampler noise in every cell (common random numbers: the rows differ by the scale only).
The generated digits are judged by the evaluator network, never by the guiding classifier:
its accuracy on the requested classes, plus the guide's own accuracy (a gap between the two
is the guide being fooled) and fd_evalnet.

Independent of the scale, prepare measures what the thesis observed ("the gradients computed
on the WideResNet prediction were around 1000 times smaller than the gradients of the
score-model"): ||s_theta(x, t)|| / ||grad_x log p_t(y | x)|| per held-out image x(0) with its
label y, perturbed to x(t) by the SDE's kernel, at times spread over [eps, 1]; every cell
carries the result, so the report renders from the cell files alone.

Per-unit values for the claims engine (repro.claims): per generated sample (`accuracy`,
`requested_prob`, `guide_accuracy` `_per_sample`; sample i is the same requested class, prior draw
and sampler noise in every cell), fd_evalnet's replicates over the samples (`fd_evalnet_boot`),
and per held-out image the log10 norm ratio averaged over t (`log10_norm_ratio_per_sample`).
"""
from __future__ import annotations

import time
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.data import dataset_info, load_dataset, stack
from repro.errors import UserError
from repro.experiments.quality import FrechetScorer
from repro.sampling.predictor_corrector import predictor_reading
from repro.metrics.spread import compact
from repro.guidance.classifier import ClassifierGuidance, guidance_norms
from repro.images import save_image_grid
from repro.metrics.by_name import frechet_features
from repro.metrics.frechet import require_more_samples_than_dims
from repro.results import relative_to_results
from repro.rng import make_generator
from repro.sampling.predictor_corrector import predictor_corrector_sample
from repro.specs import cell_key
from repro.trainers.noisy_classifier import perturb
from repro.trainers.score_model import score_model_for

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("accuracy", "fd_evalnet", "guide_accuracy", "requested_prob")
GRID_KEYS = ("scale",)
# model roles every spec of this kind names, and the model kinds each takes
ROLES = {"score": ("score_sde",), "guide": ("noisy_classifier",)}


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predictor: Literal["reverse_diffusion", "euler_maruyama", "ancestral"] = Field(
        "reverse_diffusion", description="PC predictor: euler_maruyama = thesis Alg. 3, reverse_diffusion = the "
                                         "authors' code (score_sde)")
    steps: int = Field(1000, ge=1, le=100_000, description="predictor steps N (Langevin steps before each)")
    snr: float = Field(0.16, gt=0, le=1, description="Langevin corrector snr (thesis Alg. 3)")
    n_corrector_steps: int = Field(1, ge=1, le=10)
    eps: float | None = Field(None, gt=0, lt=1)
    n_per_class: int = Field(100, ge=1, le=100_000, description="generated images per requested class")
    classes: list[int] | None = Field(None, min_length=1, description="requested classes; None: all")
    batch_size: int = Field(100, ge=1)
    n_reference: int = Field(1000, ge=2, description="real images of the spec's dataset/split (fd_evalnet)")
    norm_times: int = Field(11, ge=2, le=1001, description="times in [eps, 1] of the norm-ratio measurement")
    norm_images: int = Field(256, ge=1, description="held-out labelled images perturbed for the norm ratio")
    grid_rounds: int = Field(4, ge=1, description="rows of one-per-class samples in each cell's grid")
    allow_rank_deficient: bool = False


def _role_config(ctx, role: str):
    return ctx.resolved.model(role).config


def check_models(ctx) -> None:
    """The guide is a noisy_classifier of this spec's score model, and every model and the spec's
    dataset are the same data at the same size (config level: before anything trains)."""
    spec = ctx.spec
    score, guide, ev = (_role_config(ctx, r) for r in ("score", "guide", "evaluator"))
    if guide.kind != "noisy_classifier":
        raise UserError(f"spec {spec.id}: the guide {guide.id} is a {guide.kind} model; it must be a noisy_classifier")
    if guide.train.get("score_model") != score.id:
        raise UserError(f"spec {spec.id}: guide {guide.id} is trained on the SDE of {guide.train.get('score_model')}, "
                        f"but the spec's score model is {score.id}; set the guide's train.score_model to {score.id}")
    want = (score.dataset.name, score.dataset.resolution)
    for what, ds in (("evaluator " + ev.id, ev.dataset), (f"spec {spec.id}", spec.dataset)):
        if (ds.name, ds.resolution) != want:
            raise UserError(f"spec {spec.id}: {what} uses {ds.name} {ds.resolution}, the score model {score.id} "
                            f"{want[0]} {want[1]}; use one dataset (e.g. --set models.evaluator.dataset.name={want[0]})")
    bad = [s for s in spec.grid.get("scale", []) if not isinstance(s, (int, float)) or s < 0]
    if bad:
        raise UserError(f"spec {spec.id}: grid scale values must be numbers >= 0, got {bad}")


def prepare(ctx):
    f, spec = ctx.fixed, ctx.spec
    check_models(ctx)
    info = dataset_info(spec.dataset.name)
    classes = f.classes or list(range(info.num_classes))
    if any(not 0 <= c < info.num_classes for c in classes):
        raise UserError(f"spec {spec.id}: fixed.classes must lie in 0..{info.num_classes - 1}, got {classes}")
    if "fd_evalnet" in spec.metrics and not f.allow_rank_deficient:
        dim = int(_role_config(ctx, "evaluator").net.get("feature_dim", 64))
        require_more_samples_than_dims(f.n_per_class * len(classes), dim, "evaluator features (fd_evalnet; "
                                       "fixed.n_per_class x classes)")
    ds = spec.dataset
    data = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root,
                        n=max(f.n_reference, f.norm_images), seed=ds.seed)
    images, labels = stack(data)

    evaluator = ctx.model("evaluator")
    scorer = None
    if "fd_evalnet" in spec.metrics:
        scorer = FrechetScorer(frechet_features("fd_evalnet", ctx.device, evaluator=lambda: evaluator),
                               images[: f.n_reference], f.allow_rank_deficient)
    trained = ctx.model("score")
    model = score_model_for(trained)
    score_overrides = ctx.resolved.model_overrides.get("score")
    guide = ctx.model("guide", {"train.score_model_overrides": dict(score_overrides)} if score_overrides else None)
    if guide.meta["score_model"]["hash"] != trained.hash or guide.meta["sde"] != trained.meta["sde"]:
        raise UserError(f"spec {spec.id}: guide {guide.name} was trained on score model "
                        f"{guide.meta['score_model']['name']} {guide.meta['score_model']['hash']} (SDE {guide.meta['sde']}), "
                        f"this run's is {trained.hash} (SDE {trained.meta['sde']}); retrain it: "
                        f"repro train {guide.name} --profile {ctx.profile} --force")
    norms = norm_ratio_over_t(model, guide.net.eval(), images[: f.norm_images], labels[: f.norm_images],
                              f.norm_times, f.eps, ctx.generator("norm-ratio"), ctx.device, f.batch_size)
    log10_ratio = norms.pop("log10_ratio_per_image")
    return {"log10_ratio": log10_ratio, "trained": trained, "model": model, "guide": guide, "evaluator": evaluator, "scorer": scorer,
            "classes": classes, "norms": norms}


def norm_ratio_over_t(model, classifier, images: torch.Tensor, labels: torch.Tensor, n_times: int,
                      eps: float | None, generator: torch.Generator, device, batch_size: int) -> dict[str, Any]:
    """Medians (and quartiles) over images of ||score||, ||grad log p_t(y|x)|| and their ratio at
    n_times times in [eps, 1], on x(t) = m(t) x(0) + std(t) z of held-out images (true labels);
    `log10_ratio_per_image`: each image's log10 ratio averaged over the times (its mean over the
    images is the metric `log10_norm_ratio`, 3 for the thesis's "around 1000")."""
    sde = model.sde
    eps = sde.default_eps if eps is None else float(eps)
    times = torch.linspace(eps, 1.0, n_times).tolist()
    x0_all = model.from_images(images)
    out: dict[str, list[float]] = {k: [] for k in ("t", "sigma", "score", "class_grad", "ratio", "ratio_q25",
                                                   "ratio_q75", "guide_accuracy", "p_label")}
    log10_ratio = torch.zeros(x0_all.shape[0], dtype=torch.float64)
    for t in times:
        parts: dict[str, list[torch.Tensor]] = {}
        correct = 0
        for i in range(0, x0_all.shape[0], batch_size):
            x0 = x0_all[i: i + batch_size].to(device)
            y = labels[i: i + batch_size].to(device)
            tt = torch.full((x0.shape[0],), t, device=device)
            x, _ = perturb(sde, x0, tt, generator)
            n = guidance_norms(model.score_fn, classifier, sde, x, y, t)
            for k, v in n.items():
                parts.setdefault(k, []).append(v)
            with torch.no_grad():
                correct += int((classifier(x, sde.noise_level(tt)).argmax(1) == y).sum())
        cat = {k: torch.cat(v) for k, v in parts.items()}
        log10_ratio += cat["ratio"].double().cpu().log10() / len(times)
        q = torch.quantile(cat["ratio"], torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
        out["t"].append(float(t))
        out["sigma"].append(float(sde.noise_level(torch.tensor([t]))[0]))
        out["score"].append(float(cat["score"].median()))
        out["class_grad"].append(float(cat["class_grad"].median()))
        out["ratio"].append(q[1])
        out["ratio_q25"].append(q[0])
        out["ratio_q75"].append(q[2])
        out["guide_accuracy"].append(correct / x0_all.shape[0])
        out["p_label"].append(float(cat["log_prob"].exp().mean()))
    out["n_images"] = int(x0_all.shape[0])
    out["log10_ratio_per_image"] = log10_ratio.tolist()
    return out


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    scale = float(cell["scale"])
    model, guide_net, classes = state["model"], state["guide"].net.eval(), state["classes"]
    requested = torch.tensor(classes, dtype=torch.long).repeat(f.n_per_class)  # round r: every class once
    g = make_generator(ctx.device, ctx.spec.seed, "class-conditional")  # the same draws in every cell
    images, nfe, t0 = [], 0, time.perf_counter()
    for i in range(0, requested.shape[0], f.batch_size):
        y = requested[i: i + f.batch_size].to(ctx.device)
        x = model.sde.prior_sample((y.shape[0], *model.shape), generator=g, device=ctx.device)
        guidance = ClassifierGuidance(guide_net, y, scale, model.sde) if scale > 0 else None
        out = predictor_corrector_sample(model.score_fn, model.sde, x, steps=f.steps, generator=g, eps=f.eps,
                                         predictor=f.predictor, corrector="langevin", snr=f.snr,
                                         n_corrector_steps=f.n_corrector_steps, guidance=guidance)
        images.append(model.to_images(out.samples).cpu())
        nfe = out.nfe
    seconds = time.perf_counter() - t0
    images = torch.cat(images)
    nonfinite = int((~torch.isfinite(images.flatten(1))).any(1).sum())
    images = torch.nan_to_num(images, nan=0.0)
    values, extra = judge(state, images, requested, model, guide_net, f, ctx.device)
    # the norm ratio is measured once (prepare), on held-out images: the same value in every cell
    values["log10_norm_ratio"] = float(sum(state["log10_ratio"]) / len(state["log10_ratio"]))
    extra["log10_norm_ratio_per_sample"] = compact(state["log10_ratio"])
    values.update({"nfe": float(nfe), "guide_evaluations": float(nfe if scale > 0 else 0), "seconds": seconds})

    key, k = cell_key(cell), len(classes)
    d = ctx.artifacts_dir(key)
    strip = save_image_grid(images[:k], d / "strip.png", nrow=k, scale=2)
    grid = save_image_grid(images[: k * f.grid_rounds], d / "samples.png", nrow=k, scale=2)
    extra.update({"strip_png": relative_to_results(strip), "samples_png": relative_to_results(grid),
                  "classes": classes, "n_samples": int(images.shape[0]), "n_nonfinite": nonfinite,
                  "norm_over_t": state["norms"], **models_extra(state, f)})
    return {"values": values, "extra": extra, "artifacts": [strip, grid]}


@torch.no_grad()
def judge(state, images: torch.Tensor, requested: torch.Tensor, model, guide_net, f: Fixed, device):
    """Evaluator accuracy on the requested classes (overall, per class), its mean probability of
    the requested class, the guide's own accuracy at t = eps, fd_evalnet and class statistics."""
    ev = state["evaluator"].net.eval()
    logits = torch.cat([ev(images[i: i + 256].to(device).float()).cpu() for i in range(0, images.shape[0], 256)])
    probs = torch.softmax(logits.double(), 1)
    hit = (logits.argmax(1) == requested).double()
    eps = model.sde.default_eps if f.eps is None else f.eps
    guide_hit = []
    for i in range(0, images.shape[0], 256):
        x = model.from_images(images[i: i + 256]).to(device)
        sigma = model.sde.noise_level(torch.full((x.shape[0],), eps, device=device))
        guide_hit.append((guide_net(x, sigma).argmax(1).cpu() == requested[i: i + 256]).double())
    requested_prob = probs[torch.arange(len(requested)), requested]
    guide_hit = torch.cat(guide_hit)
    values = {"accuracy": float(hit.mean()), "requested_prob": float(requested_prob.mean()),
              "guide_accuracy": float(guide_hit.mean())}
    units: dict[str, Any] = {"accuracy_per_sample": compact(hit.tolist()),
                             "requested_prob_per_sample": compact(requested_prob.tolist()),
                             "guide_accuracy_per_sample": compact(guide_hit.tolist()),
                             "resample_unit": "samples", "resample_n": int(len(requested))}
    mean = probs.mean(0)
    values["class_entropy"] = float(-(mean * mean.clamp_min(1e-12).log()).sum())
    if state["scorer"] is not None:
        values["fd_evalnet"], boot = state["scorer"].with_replicates(images)
        units["fd_evalnet_boot"] = compact(boot)
    per_class = {str(c): float(hit[requested == c].mean()) for c in state["classes"]}
    return values, {"per_class_accuracy": per_class, **units}


def models_extra(state, f: Fixed) -> dict[str, Any]:
    tr, guide, ev = state["trained"], state["guide"], state["evaluator"]
    sde = tr.meta["sde"]
    return {"score_model": tr.name, "score_model_hash": tr.hash, "sigma_min": sde.get("sigma_min"),
            "sigma_max": sde.get("sigma_max"), "guide": guide.name, "guide_hash": guide.hash,
            "guide_arch": guide.meta.get("arch"), "guide_val_accuracy_by_t": guide.meta.get("val_accuracy_by_t"),
            "evaluator": ev.name, "evaluator_val_accuracy": ev.meta.get("val_accuracy"),
            "sampler_setting": f"PC({f.predictor}, langevin, N={f.steps}, snr={f.snr:g})",
            "predictor_reading": predictor_reading(f.predictor)}
