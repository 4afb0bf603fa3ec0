"""FID (or fd_evalnet) of EDM, EDM-G++ and SEDM-G++ over a grid of sampler settings (002 thesis Ch. 12).

One runner for Fig. 12.1 (Euler: FID vs w_DG and steps), Fig. 12.3 (Heun: w_DG_1st x epsilon
scale b, FID-10k), Fig. 12.4 (FID-50k at the best w_DG_1st) and Tab. 12.1 (EDM / EDM-G++ /
SEDM-G++ rows). Grid keys: method, w_dg, eps_scale, steps, solver; anything not in the grid
comes from `fixed` (see repro.experiments.dg.settings.resolve_cell). The sampler is EDM's
(repro.sampling.edm) with the discriminator-guidance term (Eq. 9.3) and epsilon scaling
(Sec. 10.3, 11.2) as hooks. The report (repro.experiments.dg.report) draws a figure that follows
the grid (curves, heatmap or bars) with descriptive findings; the spec's claims are judged by
repro.claims on what each cell stores beside its value: `<metric>_runs` (one value per sampling
run, unit seeds) and `<metric>_boot` (the distance on the shared paired resamples of the samples,
averaged over the runs like the value, unit samples).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from repro.experiments.dg import evaluation as E
from repro.experiments.dg.settings import METHODS, SETTING_KEYS, resolve_cell
from repro.metrics.spread import compact
from repro.specs import cell_key

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("fd_evalnet", "fid", "nfe")
GRID_KEYS = ("method", "w_dg", "eps_scale", "steps", "solver")
ROLES = {"edm": ("edm",)}   # model roles every spec of this kind names, and the model kinds each takes
SHARDS_CELLS = True   # under torchrun each rank samples its share of a cell's batches (repro.engine.ranks)


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    solver: Literal["euler", "heun"] = "heun"
    steps: int = Field(18, ge=2, description="EDM steps N (Heun: NFE = 2N - 1)")
    w_dg: float = Field(0.0, ge=0, description="w_DG_1st")
    w_dg_2nd: float = Field(0.0, ge=0)
    eps_scale: float | dict[int, float] = Field(1.0, description="b, or {steps: b}")
    eps_k: float = 0.0
    placement: Literal["sedm", "ning"] = "sedm"
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method settings")
    time_min: float = Field(0.01, ge=0)
    time_max: float = Field(1.0, gt=0)
    sigma_min: float = Field(0.002, gt=0)
    sigma_max: float = Field(80.0, gt=0)
    rho: float = Field(7.0, gt=0)
    n_samples: int = Field(50_000, ge=2, description="generated images per cell")
    batch_size: int = Field(500, ge=1)
    n_ref: int | None = Field(None, ge=2, description="reference images (None: the whole split)")
    fid_weights: str | None = None
    discriminator_epoch: int | None = Field(None, ge=1, description="None: the epoch the model stored")
    grid_images: int = Field(64, ge=0)
    n_runs: int = Field(1, ge=1, description="sampling runs, each with its own latents (shared by every cell): "
                                             "the metric is their mean; each run's values stand in "
                                             "<metric>_runs (unit seeds for the claims engine)")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, settings in v.items():
            if name not in METHODS:
                raise ValueError(f"unknown method {name!r}; use {', '.join(METHODS)}")
            bad = set(settings) - set(SETTING_KEYS)
            if bad:
                raise ValueError(f"methods.{name}: unknown setting(s) {sorted(bad)}; use {', '.join(SETTING_KEYS)}")
            pinned = {"edm": ("w_dg", "w_dg_2nd", "eps_scale", "eps_k"), "edm_gpp": ("eps_scale", "eps_k")}
            clash = [k for k in pinned.get(name, ()) if k in settings]
            if clash:
                raise ValueError(f"methods.{name}: {', '.join(clash)} cannot be set: {name} has "
                                 f"{'no guidance and ' if name == 'edm' else ''}b = 1")
        return v


def prepare(ctx) -> dict:
    fixed = ctx.fixed
    cells = ctx.resolved.cells()
    settings = [resolve_cell(fixed, c, f"spec {ctx.spec.id} cell {c}") for c in cells]  # fail before sampling
    edm, shape = E.load_edm(ctx)
    disc, disc_epoch = (None, None)
    if any(s.guided for s in settings):
        disc, disc_epoch = E.load_discriminator(ctx, fixed.discriminator_epoch)
    real = E.reference_images(ctx, fixed.n_ref)
    metrics = E.build_metrics(ctx, ctx.spec.metrics, real, fixed.n_samples, fixed.fid_weights)
    return {"edm": edm, "shape": shape, "disc": disc, "disc_epoch": disc_epoch, "metrics": metrics,
            "n_ref": int(real.shape[0])}


def run_cell(ctx, state, cell, run) -> dict:
    fixed = ctx.fixed
    s = resolve_cell(fixed, cell)
    disc = state["disc"]
    guidance, eps = E.sampler_objects(s, disc.net if disc else None, fixed.time_min, fixed.time_max)
    grid_batches = E.n_batches(fixed.grid_images, fixed.batch_size)   # the first grid_images images
    runs, keep, timing = {m.name: [] for m in state["metrics"]}, [], {"sampling_seconds": 0.0}
    boot: dict[str, list[list[float]]] = {m.name: [] for m in state["metrics"]}
    for r in range(fixed.n_runs):
        local: dict[int, dict] = {}

        def on_batch(j: int, images: torch.Tensor, counts: dict) -> None:
            local[j] = {"features": {m.name: m.features(images) for m in state["metrics"]},
                        "images": images if r == 0 and j < grid_batches else None, **counts}

        t = E.sample_cell(ctx, state["edm"].net, state["shape"], s, n=fixed.n_samples,
                          batch_size=fixed.batch_size, guidance=guidance, eps_scale=eps, on_batch=on_batch,
                          sigma_min=fixed.sigma_min, sigma_max=fixed.sigma_max, rho=fixed.rho, run=r)
        timing["sampling_seconds"] += t["sampling_seconds"]
        batches = ctx.gather(local, E.n_batches(fixed.n_samples, fixed.batch_size))
        if batches is None:   # a rank other than 0 under torchrun: its batches went to rank 0
            continue
        for m in state["metrics"]:
            feats = torch.cat([b["features"][m.name] for b in batches])
            runs[m.name].append(m.distance(feats))
            boot[m.name].append(m.replicates(feats, ctx.device))
        keep += [b["images"] for b in batches if b["images"] is not None]
        counts = {"nfe": batches[-1]["nfe"], "guided_evals": batches[-1]["guided_evals"]}
    if not any(runs.values()):
        return {}
    values = {name: sum(v) / len(v) for name, v in runs.items()}
    values.update({f"{name}_se": E.standard_error(v) for name, v in runs.items() if len(v) > 1})
    counts.update(timing)
    values["nfe"] = float(counts["nfe"])
    artifacts = []
    if keep:
        path = ctx.artifacts_dir(cell_key(cell)) / "samples.png"
        artifacts.append(E.save_grid(torch.cat(keep)[: fixed.grid_images], path))
    extra = {**s.to_dict(), **counts, "n_samples": fixed.n_samples, "n_ref": state["n_ref"],
             "guided_evals_per_image": counts["guided_evals"],
             "feature_extractors": {m.name: m.extractor for m in state["metrics"]},
             "edm_model": state["edm"].name, "edm_hash": state["edm"].hash,
             "discriminator_model": disc.name if disc else None, "discriminator_hash": disc.hash if disc else None,
             "discriminator_epoch": state["disc_epoch"] if s.guided else None,
             "n_runs": fixed.n_runs, **{f"{name}_runs": v for name, v in runs.items()},
             # replicate j: the runs' mean of the distance on index set j of each run's samples
             **{f"{name}_boot": compact([sum(r) / len(r) for r in zip(*reps)]) for name, reps in boot.items()},
             "resample_unit": "samples", "resample_n": fixed.n_samples}
    return {"values": values, "extra": extra, "artifacts": artifacts}
