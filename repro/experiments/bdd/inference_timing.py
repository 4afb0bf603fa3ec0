"""Inference time of DDPM sampling vs batch size, conditional and unconditional (001 paper Tab. 2, Sec. 4.4).

Each cell samples a batch of 128x128 images (at `paper`) with `steps` DDPM steps: warm-up runs, then the
median of repeated runs; with `steps_timed` set, only that many steps are timed and the per-step time is
scaled to `steps` (recorded as `extrapolated`). Conditional sampling is classifier-free guided: both
predictions in one batched network pass of size 2B per step; unconditional sampling is one pass of size
B with no mask. The device and the PyTorch speed-up (`variant`) are recorded in every cell.
"""
from __future__ import annotations

import platform
from typing import Literal

import torch
from pydantic import Field

from repro.data import dataset_info
from repro.errors import UserError
from repro.experiments.bdd.model import describe  # noqa: F401  (repro show prints the parameter count)
from repro.experiments.bdd.model import guidance_for
from repro.metrics.spread import compact
from repro.experiments.bdd.settings import SamplingFixed
from repro.experiments.bdd.timing import prepare_variant, time_sampling, variant_unavailable
from repro.trainers.ensure import ensure_model
from repro.nets.bdd_unet import count_parameters
from repro.specs import resolve_model
from repro.trainers.mask_ddpm import _size, build_net, make_schedule, mask_ddpm_for, parse

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("images_per_second", "seconds")
GRID_KEYS = ("batch_size", "mode", "variant")


class Fixed(SamplingFixed):
    loop: Literal["algorithm2", "appendix"] = Field("algorithm2",
                                                    description="Tab. 2 says 1000 steps: Alg. 2's T calls")
    steps: int = Field(1000, ge=1, description="DDPM steps the reported time is for (Tab. 2: 1000)")
    steps_timed: int | None = Field(None, ge=1, description="steps actually timed (None: all); scaled to `steps`")
    warmup: int = Field(1, ge=0, description="untimed runs first (compilation, caches)")
    repeats: int = Field(3, ge=1, description="timed runs; the median is reported")
    weights: str = Field("untrained", pattern="^(untrained|trained)$",
                         description="untrained: the model config's net with seeded weights (time is weight-free)")
    model: str = Field("mask_ddpm_bdd", description="the mask_ddpm model config whose network is timed (not a "
                                                    "spec role: timing needs neither its data nor its training)")


class State:
    pass


def prepare(ctx):
    fixed = ctx.fixed
    st = State()
    st.resolved_model = resolve_model(fixed.model, ctx.profile)
    if st.resolved_model.config.kind != "mask_ddpm":
        raise UserError(f"spec {ctx.spec.id}: fixed.model {fixed.model!r} is a "
                        f"{st.resolved_model.config.kind} model, not a mask_ddpm one")
    st.nets = {}
    st.device_name = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else (
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    if fixed.weights == "trained":
        st.trained = mask_ddpm_for(ensure_model(fixed.model, ctx.profile, device=ctx.device, progress=ctx.progress))
    return st


def _model(ctx, st):
    """(net, schedule, shape, classes) at this profile; trained weights only when fixed.weights says so."""
    if getattr(st, "trained", None) is not None:
        m = st.trained
        return m.net, m.schedule, m.shape, m.num_classes
    net_cfg, _ = parse(st.resolved_model)
    info = dataset_info(st.resolved_model.config.dataset.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(st.resolved_model.config.seed)
        net = build_net(st.resolved_model).to(ctx.device).eval()
    sched = make_schedule({"schedule": net_cfg.schedule, "T": net_cfg.T, "beta_start": net_cfg.beta_start,
                           "beta_end": net_cfg.beta_end})
    h, w = _size(st.resolved_model)
    return net, sched, (info.channels, h, w), info.num_classes


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    variant = cell.get("variant", "fp32")
    why = variant_unavailable(variant, ctx.device)
    if why:
        return {"failed": {"reason": why, "variant": variant, "device": str(ctx.device)}}
    if getattr(state, "base", None) is None:
        state.base = _model(ctx, state)
    net, sched, shape, k = state.base
    if variant in ("compile", "cuda_graphs"):
        # compiled afresh per cell: one graph per (batch, mode), never dynamo's recompile limit (after
        # which it would silently fall back to eager)
        import torch._dynamo

        torch._dynamo.reset()
        prep = prepare_variant(net, variant)
    else:
        if variant not in state.nets:
            state.nets[variant] = prepare_variant(net, variant)
        prep = state.nets[variant]
    batch = int(cell.get("batch_size", f.batch_size))
    conditional = cell.get("mode", "conditional") == "conditional"
    guidance = guidance_for(f, cell) if conditional else None
    # a compiled variant compiles during its first run: never time that one
    warmup = max(1, f.warmup) if variant in ("compile", "cuda_graphs") else f.warmup
    res = time_sampling(prep, sched, shape, k, batch, conditional, guidance, f.loop, f.steps_timed,
                        warmup, f.repeats, ctx.device, seed=ctx.spec.seed)
    seconds = res["seconds_per_step"] * f.steps
    extrapolated = res["steps_timed"] != f.steps
    values = {"seconds": seconds, "images_per_second": batch / seconds}
    # every timed run scaled to `steps` like the median: the repeats the claims engine resamples (run r
    # of every cell is the r-th timed run after the warm-up)
    runs = [sec / res["steps_timed"] * f.steps for sec in res["all_seconds"]]
    rows = 2 * batch if (conditional and guidance is not None and not guidance.purely_conditional) else batch
    extra = {"mm_ss": f"{int(seconds // 60):02d}:{seconds % 60:04.1f}", "seconds_per_step": res["seconds_per_step"],
             "steps_timed": res["steps_timed"], "extrapolated": extrapolated, "repeat_seconds": res["all_seconds"],
             "device_name": state.device_name, "variant": variant, "network_rows_per_step": rows,
             "network_passes_per_step": 1, "parameters": count_parameters(net), "weights": f.weights,
             "image_shape": list(shape), "loop": f.loop, "warmup": warmup, "repeats": f.repeats,
             **(guidance.record() if guidance else {"guidance_convention": None}),
             "seconds_runs": compact(runs), "images_per_second_runs": compact(batch / r for r in runs),
             "resample_unit": "repeats", "resample_n": len(runs),
             "resample_note": "the value is the median of the runs; the engine resamples their mean"}
    if ctx.device.type == "cuda":
        extra["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
    return {"values": values, "extra": extra}
