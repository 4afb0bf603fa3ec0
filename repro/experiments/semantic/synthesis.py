"""Guided predictor-corrector sampling of label maps (thesis Sec. 4.5, Eq. 5.5, 5.6): a Langevin
corrector and a predictor that is a setting: Euler-Maruyama as the thesis's Alg. 3 (Sec. 4.4.5)
writes it, or reverse diffusion as the authors' code samples (repro.sampling.predictor_corrector.PREDICTOR_READINGS; every result
records which).

Every map has its own generator, seeded from the map's index: a map gets the same prior draw
and noise in every cell of a sweep (common random numbers), and, with per-sample corrector
norms, the same image whatever batch it is sampled in.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from repro.diffusion.sde import VESDE
from repro.errors import UserError
from repro.guidance.segmentation import (GuidanceSettings, ScaleSchedule, SegmentationGuidance,
                                         SegmenterNoise, normalize_per_sample)
from repro.rng import seed_for
from repro.sampling.predictor_corrector import predictor_corrector_sample, predictor_reading


@dataclass
class Guide:
    """The trained noise-conditional segmenter as the guidance sees it."""

    net: torch.nn.Module
    noise: SegmenterNoise
    num_classes: int
    ignore_index: int | None

    def clean_labels(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """The guide's own argmax labels of (noise-free) images at sigma_min: its view of the result."""
        device = next(self.net.parameters()).device
        out = []
        with torch.no_grad():
            for i in range(0, images.shape[0], batch_size):
                x = images[i: i + batch_size].to(device).float()
                level = self.noise.channel(torch.full((x.shape[0],), self.noise.sigma_min, device=device))
                out.append(self.net(normalize_per_sample(x), level).argmax(1).cpu())
        return torch.cat(out)


def guide_for(trained) -> Guide:
    """A `repro.models.TrainedModel` of kind noisy_segmenter as a Guide."""
    meta = trained.meta
    noise = SegmenterNoise(meta["noise_encoding"], float(meta["sigma_min"]), float(meta["sigma_max"]))
    return Guide(trained.net.eval(), noise, int(meta["num_classes"]), meta.get("ignore_index"))




@dataclass(frozen=True)
class SynthesisSetting:
    """One way of sampling images for maps: the scale schedule, the guidance reading, the PC sampler."""

    schedule: ScaleSchedule
    guidance: GuidanceSettings = field(default_factory=GuidanceSettings)
    snr: float = 0.1
    steps: int = 2000
    predictor: str = "reverse_diffusion"
    n_corrector_steps: int = 1
    corrector_norms: str = "per_sample"
    eps: float | None = None

    def record(self) -> dict[str, Any]:
        """Flat description stored with every result (which reading of the thesis produced it)."""
        d = asdict(self)
        sched, guid = d.pop("schedule"), d.pop("guidance")
        return {**{f"schedule_{k}": v for k, v in sched.items()}, **{f"guidance_{k}": v for k, v in guid.items()}, **d,
                "predictor_reading": predictor_reading(self.predictor)}


@dataclass
class Synthesis:
    images: torch.Tensor   # [N, C, H, W] in [0, 1], CPU
    nfe: int               # score evaluations per sample
    guide_calls: int       # segmenter forward+backward passes per batch
    seconds: float


def map_generators(device: torch.device, indices, *seed_parts: Any) -> list[torch.Generator]:
    """One generator per map, seeded from (seed_parts, map index): independent of batching."""
    gens = []
    for i in indices:
        g = torch.Generator(device=device)
        g.manual_seed(seed_for(*seed_parts, "map", int(i)))
        gens.append(g)
    return gens


def check_compatible(score_model, guide: Guide, maps: torch.Tensor) -> None:
    """The score model must be on the VE SDE (the thesis's; the segmenter was trained on VE noise)
    and its images the size of the maps."""
    if not isinstance(score_model.sde, VESDE):
        raise UserError(f"segmentation guidance needs a VE-SDE score model (the segmenter reads VE noise); "
                        f"got {type(score_model.sde).__name__}")
    if tuple(maps.shape[-2:]) != tuple(score_model.shape[-2:]):
        raise UserError(f"label maps are {tuple(maps.shape[-2:])} (HxW) but the score model samples "
                        f"{tuple(score_model.shape[-2:])}; use the same resolution")
    if int(maps.max()) >= guide.num_classes or int(maps.min()) < 0:
        raise UserError(f"label maps hold classes outside [0, {guide.num_classes}) of the segmenter")


def synthesize(score_model, guide: Guide, maps: torch.Tensor, setting: SynthesisSetting, indices: list[int],
               seed_parts: tuple, batch_size: int, device: torch.device,
               on_batch: Callable[[int], None] | None = None) -> Synthesis:
    """Images for label maps [N, H, W]: guided PC sampling in batches, map i seeded by indices[i]."""
    check_compatible(score_model, guide, maps)
    sde = score_model.sde
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    images, nfe, calls = [], 0, 0
    for lo in range(0, maps.shape[0], batch_size):
        target = maps[lo: lo + batch_size].to(device)
        gens = map_generators(device, indices[lo: lo + batch_size], *seed_parts)
        x = sde.prior_sample((target.shape[0], *score_model.shape), generator=gens, device=device)
        guidance = SegmentationGuidance(guide.net, target, setting.schedule, sde.sigma, guide.noise,
                                        setting.guidance, guide.ignore_index)
        out = predictor_corrector_sample(score_model.score_fn, sde, x, steps=setting.steps, generator=gens,
                                         eps=setting.eps, predictor=setting.predictor, corrector="langevin",
                                         snr=setting.snr, n_corrector_steps=setting.n_corrector_steps,
                                         corrector_norms=setting.corrector_norms, guidance=guidance)
        images.append(score_model.to_images(out.samples).cpu())
        nfe, calls = out.nfe, max(calls, guidance.calls)
        if on_batch is not None:
            on_batch(target.shape[0])
    sync()
    return Synthesis(torch.cat(images), nfe, calls, time.perf_counter() - t0)
