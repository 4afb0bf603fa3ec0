"""Sampling a trained mask-guided DDPM: guided (one 2B pass per step), conditional or unconditional."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from repro.data.colorbook import one_hot
from repro.guidance.classifier_free import Guidance, guided_eps_fn
from repro.rng import seeded_generator
from repro.sampling.ddpm import ddpm_sample


@dataclass
class Generated:
    images: torch.Tensor     # [N, 3, H, W] in [0, 1], CPU
    nfe: int                 # network passes per image batch
    seconds: float
    batch_size_network: int  # rows per network pass (2B when guided)


@torch.no_grad()
def generate(model, labels: torch.Tensor | None, guidance: Guidance | None, loop: str, *, n: int | None = None,
             batch_size: int, seed: int, device: torch.device) -> Generated:
    """Images for label maps [N, H, W] (or n unconditional images when labels is None). Batch j draws its
    prior and noise from a generator seeded with (seed, j), so a run is reproducible on one device."""
    count = labels.shape[0] if labels is not None else int(n)
    c, h, w = model.shape
    outs, nfe, t0, rows = [], 0, time.perf_counter(), 0
    for j, start in enumerate(range(0, count, batch_size)):
        b = min(batch_size, count - start)
        g = seeded_generator(device, seed * 1_000_003 + j)
        mask = None if labels is None else one_hot(labels[start: start + b].to(device), model.num_classes)
        x = torch.randn((b, c, h, w), generator=g, device=device)
        eps_fn = guided_eps_fn(model.net, mask, guidance)
        out = ddpm_sample(eps_fn, model.schedule, x, generator=g, loop=loop)
        outs.append(model.to_images(out.samples).float().cpu())
        nfe = out.nfe
        rows = 2 * b if (mask is not None and guidance is not None and not guidance.purely_conditional) else b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Generated(torch.cat(outs), nfe, time.perf_counter() - t0, rows)
