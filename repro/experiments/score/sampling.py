"""Shared by the score-SDE runners (`snr_sweep`, `sampler_comparison`, and the Frechet scorer of
`class_conditional` and the semantic kinds): named sampler settings, batched sampling with timing
and NFE, the quality metric the spec lists (its features from repro.metrics.by_name), sample grids."""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro.errors import UserError
from repro.images import save_image_grid
from repro.results import relative_to_results
from repro.rng import batch_generator
from repro.sampling.ode import probability_flow_ode_sample
from repro.sampling.predictor_corrector import predictor_corrector_sample
from repro.sampling.sde_solvers import euler_maruyama_sample, milstein_sample

# ----------------------------------------------------------------------------- sampler settings

SOLVERS = ("pc", "euler_maruyama", "milstein", "probability_flow_ode", "ancestral", "reverse_diffusion")


@dataclass(frozen=True)
class SamplerSetting:
    """One way of sampling: a method and its options (steps are predictor / corrector / ODE steps)."""

    method: str  # pc | euler_maruyama | milstein | ode
    steps: int
    predictor: str = "reverse_diffusion"  # pc only ("none": corrector-only)
    corrector: str = "langevin"  # pc only ("none": predictor-only)
    snr: float = 0.16
    n_corrector_steps: int = 1
    ode_method: str = "rk45"
    rtol: float = 1e-5
    atol: float = 1e-5
    eps: float | None = None
    denoise: bool = True
    discretisation: str = "grid"  # grid | score_sde (repro.sampling.predictor_corrector.DISCRETISATIONS)

    def label(self) -> str:
        tag = "" if self.discretisation == "grid" else f", {self.discretisation}"
        if self.method == "pc":
            return f"PC({self.predictor}, {self.corrector}, N={self.steps}, snr={self.snr:g}{tag})"
        if self.method == "ode":
            return f"ODE({self.ode_method})"
        return f"{self.method}(N={self.steps}{tag})"


def solver_setting(solver: str, steps: int, **options: Any) -> SamplerSetting:
    """A named solver of the short report (003): EM, Milstein, PC (reverse diffusion + Langevin),
    the probability-flow ODE; plus predictor-only ancestral / reverse-diffusion samplers."""
    if solver == "pc":
        return SamplerSetting("pc", steps, **options)
    if solver in ("ancestral", "reverse_diffusion"):
        return SamplerSetting("pc", steps, predictor=solver, corrector="none", **options)
    if solver in ("euler_maruyama", "milstein"):
        return SamplerSetting(solver, steps, **options)
    if solver == "probability_flow_ode":
        return SamplerSetting("ode", steps, **options)
    raise UserError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")


def budget_setting(label: str, predictor: str, step_scale: float, snr: float, **options: Any) -> SamplerSetting:
    """The slides' column labels (004, Tab. 1): P1000 / P2000 predictor-only, C2000 corrector-only,
    PC1000 1000 predictor + 1000 corrector steps; step counts multiplied by `step_scale`."""
    m = re.fullmatch(r"(PC|P|C)(\d+)", str(label))
    if m is None:
        raise UserError(f"sampler {label!r}: expected P<steps>, C<steps> or PC<steps>, e.g. PC1000")
    kind, n = m.group(1), int(m.group(2))
    steps = max(1, int(round(n * step_scale)))
    if kind == "P":
        return SamplerSetting("pc", steps, predictor=predictor, corrector="none", snr=snr, **options)
    if kind == "C":
        return SamplerSetting("pc", steps, predictor="none", corrector="langevin", snr=snr, **options)
    return SamplerSetting("pc", steps, predictor=predictor, corrector="langevin", snr=snr, **options)


def run_setting(setting: SamplerSetting, model, x_init: torch.Tensor, generator: torch.Generator):
    """Sample one batch from x_init (the prior draw) with `setting`; returns a SampleResult."""
    s = setting
    if s.method == "pc":
        return predictor_corrector_sample(model.score_fn, model.sde, x_init, steps=s.steps, generator=generator,
                                          eps=s.eps, predictor=s.predictor, corrector=s.corrector, snr=s.snr,
                                          n_corrector_steps=s.n_corrector_steps, denoise=s.denoise,
                                          discretisation=s.discretisation)
    if s.method in ("euler_maruyama", "milstein"):
        fn = euler_maruyama_sample if s.method == "euler_maruyama" else milstein_sample
        return fn(model.score_fn, model.sde, x_init, steps=s.steps, generator=generator, eps=s.eps,
                  denoise=s.denoise, discretisation=s.discretisation)
    if s.method == "ode":
        return probability_flow_ode_sample(model.score_fn, model.sde, x_init, steps=s.steps, eps=s.eps,
                                           method=s.ode_method, rtol=s.rtol, atol=s.atol, denoise=s.denoise)
    raise UserError(f"unknown sampling method {s.method!r}")


@dataclass
class Draw:
    images: torch.Tensor  # [N, C, H, W] in [0, 1], on the CPU
    raw: torch.Tensor  # model-space samples of the first batch (for exact comparisons), CPU
    nfe: float  # score evaluations per batch (mean over batches; RK45 is adaptive)
    seconds: float  # wall time of the whole draw


def draw_batch(model, setting: SamplerSetting, b: int, generator: torch.Generator, device: torch.device):
    """One batch of b samples from a prior draw of `generator`: (model-space samples, images in
    [0, 1], NFE), both tensors on the CPU."""
    x = model.sde.prior_sample((b, *model.shape), generator=generator, device=device)
    out = run_setting(setting, model, x, generator)
    return out.samples.detach().cpu(), model.to_images(out.samples).cpu(), out.nfe


def draw_sharded(ctx, model, setting: SamplerSetting, n: int, batch_size: int, run: int) -> Draw | None:
    """Sampling run `run` of n samples in batches of batch_size, batch j from batch_generator(..., j):
    this process draws its share of the batches (ctx.shard; all of them outside torchrun) and rank 0
    gathers them in batch order (None on the other ranks). The wall time is rank 0's, from the start
    of the run to the end of the gather (CUDA synchronised)."""
    device = ctx.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n_batches = math.ceil(n / batch_size)
    sync()
    t0 = time.perf_counter()
    local = {}
    for j in ctx.shard(n_batches):
        samples, imgs, nfe = draw_batch(model, setting, min(batch_size, n - j * batch_size),
                                        batch_generator(device, ctx.spec.seed, run, j), device)
        local[j] = {"images": imgs, "nfe": nfe, "raw": samples if j == 0 else None}
    sync()
    parts = ctx.gather(local, n_batches)
    if parts is None:
        return None
    return Draw(torch.cat([p["images"] for p in parts]), parts[0]["raw"],
                sum(p["nfe"] for p in parts) / len(parts), time.perf_counter() - t0)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), as the slides report."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


# ----------------------------------------------------------------------------- images

def cell_outputs(ctx, key: str, draw: Draw, n_grid: int, nrow: int) -> tuple[list[Path], dict[str, str]]:
    """Write a sample grid and a one-row strip for the report; returns (artifacts, extras)."""
    d = ctx.artifacts_dir(key)
    grid = save_image_grid(draw.images[:n_grid], d / "samples.png", nrow=nrow, scale=2)
    strip = save_image_grid(draw.images[:nrow], d / "strip.png", nrow=nrow, scale=2)
    return [grid, strip], {"samples_png": relative_to_results(grid), "strip_png": relative_to_results(strip)}

