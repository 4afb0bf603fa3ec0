"""Metric-based evaluation of the mask-guided DDPM (001 paper Sec. 5.1): one generated image per test mask.

SSIM of each generated image against the original image of its mask (Gaussian 11x11, k1 0.01, k2 0.03;
the average over all pairs), FID and KID (torchmetrics; KID subset 100, degree 3) between generated and
original test images, and the pixel accuracy / IoU of a segmenter run on both, the original's
prediction being the reference. At `paper` the features are pytorch-fid's Inception (`fid`, `kid`); on
the embedded data the suite's evaluator network (`fd_evalnet`, `kid_evalnet`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from repro.data.colorbook import ColorBook
from repro.experiments.bdd.model import describe  # noqa: F401  (repro show prints the parameter count)
from repro.experiments.bdd.model import guidance_for, prepare_sampling_state
from repro.experiments.bdd.sampling import generate
from repro.experiments.bdd.scoring import (fid_kid, frechet_boot, mask_compliance, miou_replicates,
                                           original_vs_generated, ssim_per_image)
from repro.metrics.spread import compact
from repro.experiments.bdd.settings import SamplingFixed
from repro.images import save_image_grid
from repro.results import relative_to_results
from repro.rng import seed_for
from repro.specs import cell_key

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("fd_evalnet", "fid", "kid", "kid_evalnet", "miou", "pixel_acc", "ssim")
GRID_KEYS = ("guidance",)
ROLES = {"ddpm": ("mask_ddpm",)}   # model roles every spec of this kind names, and the model kinds each takes


class Fixed(SamplingFixed):
    n_samples: int = Field(1000, ge=2, description="test masks, one generated image each (Sec. 5: 1000)")
    allow_rank_deficient: bool = Field(False, description="FID on fewer images than feature dims (the paper's)")
    kid_subset_size: int = Field(100, ge=2, description="Sec. 5.1.3: subset_size 100")
    kid_degree: int = Field(3, ge=1, description="Sec. 5.1.3: polynomial degree 3")
    fid_weights: str | None = Field(None, description="pytorch-fid Inception weights file (default: hub cache)")
    extreme_pairs: int = Field(2, ge=0, description="lowest/highest SSIM pairs saved (Sec. 5.1.1 logged them)")


def prepare(ctx):
    fixed = ctx.fixed
    return prepare_sampling_state(ctx, fixed.n_samples, fixed.fid_weights)


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    guidance = guidance_for(f, cell)
    gen = generate(state.model, state.masks, guidance, f.loop, batch_size=f.batch_size,
                   seed=seed_for(ctx.spec.seed, "bdd_metrics"), device=ctx.device)
    fake, real = gen.images, state.real
    ssim = ssim_per_image(fake, real)
    fk = fid_kid(real, fake, state.features, f.kid_subset_size, f.kid_degree, seed=ctx.spec.seed)
    seg = original_vs_generated(state.evaluator, real, fake)
    fid_name, kid_name = state.feature_names
    values = {"ssim": float(ssim.mean()), fid_name: fk["fid"], kid_name: fk["kid"],
              "pixel_acc": seg["pixel_acc"], "miou": seg["miou"]}
    extra = {"ssim_std": float(ssim.std()) if ssim.numel() > 1 else 0.0, "ssim_min": float(ssim.min()),
             "ssim_max": float(ssim.max()), f"{kid_name}_std": fk["kid_std"], "kid_subset_size": fk["kid_subset_size"],
             "kid_degree": f.kid_degree, "miou_dataset": seg["miou_dataset"],
             "segmenter": state.evaluator_name, "segmenter_classes": seg["segmenter_classes"],
             "n_samples": int(fake.shape[0]), "loop": f.loop, "nfe_per_batch": gen.nfe,
             "network_rows_per_pass": gen.batch_size_network, "seconds_sampling": gen.seconds,
             "feature_dims": state.features.num_features, "rank_deficient": fake.shape[0] <= state.features.num_features,
             **guidance.record(), **_model_record(state.model)}
    # per-image values and replicates over the shared resamples of the test masks, for the claims engine
    # (repro.claims): image i is mask i in every cell
    extra.update({"ssim_per_sample": compact(ssim.tolist()), "pixel_acc_per_sample": compact(seg["pixel_acc_per_image"]),
                  "miou_boot": compact(miou_replicates(seg["image_iou"])),
                  f"{fid_name}_boot": compact(frechet_boot(real, fake, state.features, f.allow_rank_deficient)),
                  "resample_unit": "images", "resample_n": int(fake.shape[0])})
    if seg["segmenter_classes"] == state.model.num_classes:   # the segmenter speaks the masks' ids
        extra.update(mask_compliance(seg["pred_generated"], state.masks, state.model.num_classes))
    d = ctx.artifacts_dir(cell_key(cell))
    k = min(f.sheet_masks, fake.shape[0])
    sheet = _sheet(state, fake, list(range(k)), d / "sheet.png")
    order = ssim.argsort()
    m = min(f.extreme_pairs, fake.shape[0])
    arts = [sheet]
    if m:
        low = _sheet(state, fake, order[:m].tolist(), d / "ssim_lowest.png")
        high = _sheet(state, fake, order.flip(0)[:m].tolist(), d / "ssim_highest.png")
        arts += [low, high]
        extra.update({"ssim_lowest_png": relative_to_results(low), "ssim_highest_png": relative_to_results(high)})
    extra["sheet_png"] = relative_to_results(sheet)
    save_image_grid(fake[:k], d / "strip.png", nrow=k)
    return {"values": values, "extra": extra, "artifacts": arts}


def _model_record(model) -> dict:
    m = model.meta
    return {"model_parameters": m.get("parameters"), "model_T": m["diffusion"]["T"],
            "model_schedule": m["diffusion"]["schedule"], "model_p_uncond": m.get("p_uncond"),
            "model_drop_mode": m.get("drop_mode"), "model_steps": m.get("steps")}


def _sheet(state, fake, idx: list[int], path: Path) -> Path:
    """Rows of (mask, original, generated) for the given test indices."""
    book = ColorBook.load()
    masks = torch.from_numpy(book.to_rgb(state.masks[idx].numpy())).permute(0, 3, 1, 2).float() / 255
    tiles = torch.stack([masks, state.real[idx], fake[idx]], dim=1).flatten(0, 1)
    return save_image_grid(tiles, path, nrow=3, scale=2)
