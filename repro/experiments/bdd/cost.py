"""Work units of the mask-guided DDPM kinds of the 001 paper (mask_guided_metrics, inference_timing,
unconditional_samples), before the run."""
from __future__ import annotations

from repro.data.split_sizes import split_size
from repro.experiments.bdd.model import guidance_for
from repro.experiments.cost import KindEstimator, SpecContext, net_ref
from repro.guidance.classifier_free import Guidance
from repro.specs import resolve_model
from repro.work import EVAL, FEATURES, CellWork, NetRef


def _features(ctx: SpecContext) -> tuple[NetRef, int]:
    if "fid" in ctx.spec.metrics or "kid" in ctx.spec.metrics or "evaluator" not in ctx.spec.models:
        res = ctx.spec.dataset.resolution
        return NetRef("inception", resolution=tuple(res) if res else None), 50
    return ctx.ref("evaluator"), 256


def _ddpm_sampling(ctx: SpecContext, work: CellWork, n: int, guidance: Guidance | None, role: str = "ddpm") -> None:
    """Mask-guided DDPM sampling (001 Sec. 2.4): the appendix loop's T - 1 calls or Algorithm 2's T, each
    one pass of 2B rows with classifier-free guidance (masked and unmasked), B rows otherwise."""
    f = ctx.fixed
    steps = int(ctx.model(role).config.net.get("T", 1000))
    nfe = steps - 1 if f["loop"] == "appendix" else steps
    rows = 2 if guidance is not None and not guidance.purely_conditional else 1
    b = min(f["batch_size"], n)
    work.add(ctx.ref(role), EVAL, n * nfe * rows, b * rows, f"DDPM sampling: {n} images x {nfe} steps x {rows} rows")


def _unconditional_roles(ctx: SpecContext) -> list[str]:
    baseline = "baseline" in ctx.spec.models and "baseline" in ctx.spec.grid.get("mode", [])
    return ["ddpm"] + (["baseline"] if baseline else []) + (["evaluator"] if "evaluator" in ctx.spec.models else [])


def _unconditional_samples(ctx: SpecContext, cell: dict) -> CellWork:
    f, work = ctx.fixed, CellWork()
    mode = cell.get("mode", "unconditional")
    guidance = guidance_for(ctx.settings, cell) if mode == "conditional" else None
    _ddpm_sampling(ctx, work, f["n_samples"], guidance, role="baseline" if mode == "baseline" else "ddpm")
    net, batch = _features(ctx)
    work.add(net, FEATURES, 2 * f["n_samples"], batch, f"KID features of {f['n_samples']} generated and real images")
    return work


def _metrics_roles(ctx: SpecContext) -> list[str]:
    return ["ddpm", "evaluator"]


def _mask_guided_metrics(ctx: SpecContext, cell: dict) -> CellWork:
    f, work = ctx.fixed, CellWork()
    ds = ctx.spec.dataset
    n = split_size(ds.name, ds.split, f["n_samples"], ds.seed) or f["n_samples"]
    _ddpm_sampling(ctx, work, n, guidance_for(ctx.settings, cell))
    net, batch = _features(ctx)
    work.add(net, FEATURES, 2 * n, batch, f"FID/KID features of {n} generated and {n} original images")
    work.add(ctx.ref("evaluator"), EVAL, 2 * n, 32, f"segmenter on {n} generated and {n} original images")
    return work


def _no_roles(ctx: SpecContext) -> list[str]:
    return []


def _inference_timing(ctx: SpecContext, cell: dict) -> CellWork:
    f, work = ctx.fixed, CellWork()
    ref = net_ref(resolve_model(f["model"], ctx.resolved.profile))   # fixed.model: timed, not a role
    batch = int(cell.get("batch_size", f["batch_size"]))
    conditional = cell.get("mode", "conditional") == "conditional"
    guided = conditional and not guidance_for(ctx.settings, cell).purely_conditional
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


ESTIMATORS: dict[str, KindEstimator] = {
    "unconditional_samples": KindEstimator(_unconditional_samples, roles=_unconditional_roles),
    "mask_guided_metrics": KindEstimator(_mask_guided_metrics, roles=_metrics_roles),
    "inference_timing": KindEstimator(_inference_timing, roles=_no_roles),
}
