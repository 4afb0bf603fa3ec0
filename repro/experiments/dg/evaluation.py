"""Shared by the EDM / DG / epsilon-scaling runners: models, feature metrics, batched sampling.

Every cell samples from the same latents (batch j always draws from ctx.generator("latents", j)),
so cells differ only in their sampler settings; w = 0 and b = 1 give plain EDM bit for bit.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.data import dataset_info, load_dataset, stack
from repro.errors import UserError
from repro.experiments.dg.settings import CellSettings
from repro.guidance.discriminator import DiscriminatorGuidance
from repro.guidance.epsilon_scaling import EpsilonScaling
from repro.metrics.by_name import FRECHET_METRICS, frechet_features
from repro.metrics.frechet import (feature_statistics, frechet_distance, frechet_replicates,
                                   require_more_samples_than_dims)
from repro.sampling.edm import edm_sample
from repro.train import load_checkpoint
from repro.trainers.discriminator import epoch_file
from repro.trainers.edm import to_unit_range


@dataclass
class FeatureMetric:
    """A Frechet distance in one feature space, with the reference set's features computed once."""

    name: str
    features: Callable[[torch.Tensor], torch.Tensor]   # images in [0, 1] -> [N, D]
    reference: torch.Tensor
    extractor: str

    @property
    def dim(self) -> int:
        return int(self.reference.shape[1])

    def __post_init__(self) -> None:
        self.mu, self.sigma = feature_statistics(self.reference)

    def distance(self, feats: torch.Tensor) -> float:
        mu, sigma = feature_statistics(feats)
        return frechet_distance(self.mu, self.sigma, mu, sigma)

    def replicates(self, feats: torch.Tensor, device: str | torch.device = "cpu") -> list[float]:
        """The distance on each of the shared paired resamples of the generated samples
        (repro.metrics.spread.resample_indices): sample i is latent i in every cell of the spec.
        1000 eigendecompositions at the feature dimension: on the run's device (a GPU's job at 2048)."""
        return frechet_replicates(feats, self.mu, self.sigma, device=device)


def reference_images(ctx, n: int | None) -> torch.Tensor:
    ds = ctx.spec.dataset
    return stack(load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=n,
                              seed=ds.seed))[0]


def build_metrics(ctx, names: list[str], real: torch.Tensor, n_samples: int,
                  fid_weights: str | None = None) -> list[FeatureMetric]:
    """`fid` (pytorch-fid Inception, paper) and/or `fd_evalnet` (the suite's evaluator), by name
    (repro.metrics.by_name); other metric names are not Frechet distances and are skipped here."""
    out = []
    for name in names:
        if name not in FRECHET_METRICS:
            continue
        fm = frechet_features(name, ctx.device, evaluator=lambda: ctx.model("evaluator"),
                              fid_weights=fid_weights, fid_batch_size=250)
        m = FeatureMetric(name, fm.features, fm.features(real), fm.protocol)
        require_more_samples_than_dims(min(n_samples, real.shape[0]), m.dim, f"{fm.protocol} ({name})")
        out.append(m)
    return out


def load_edm(ctx):
    """The EDM model of role `edm`, with its image geometry."""
    model = ctx.model("edm")
    model.net.eval()
    ds = ctx.spec.dataset
    res = ds.resolution or dataset_info(ds.name).default_resolution
    shape = (dataset_info(ds.name).channels, int(res[0]), int(res[1]))
    if "resolution" in model.meta and (model.meta["resolution"], model.meta["channels"]) != (shape[1], shape[0]):
        raise UserError(f"spec {ctx.spec.id}: model {model.name} makes {model.meta['channels']}x"
                        f"{model.meta['resolution']}^2 images, the dataset is {shape}; align dataset.resolution")
    return model, shape


def load_discriminator(ctx, epoch: int | None):
    """The discriminator of role `discriminator`; `epoch` swaps in that epoch's stored weights."""
    model = ctx.model("discriminator")
    used = model.meta.get("epoch")
    if epoch is not None and epoch != used:
        path = epoch_file(model.path, epoch)
        if not path.exists():
            raise UserError(f"discriminator {model.name} has no weights for epoch {epoch} ({path}); "
                            f"it has {model.meta.get('epoch_files')}")
        model.net.load_state_dict(load_checkpoint(path), strict=False)
        used = epoch
    return model, used


def sampler_objects(settings: CellSettings, disc_net, time_min: float, time_max: float):
    """(guidance, eps_scale) arguments of edm_sample for these settings (None when off)."""
    guidance = None
    if settings.guided:
        if disc_net is None:
            raise UserError("this cell uses discriminator guidance but the spec names no discriminator model")
        guidance = DiscriminatorGuidance(disc_net, settings.w_dg, settings.w_dg_2nd, time_min, time_max)
    eps = EpsilonScaling(settings.eps_scale, settings.eps_k, settings.placement) if settings.scaled else None
    return guidance, eps


def n_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def latents_generator(ctx, j: int, run: int = 0) -> torch.Generator:
    """Batch j's latents of sampling run `run`: run 0 is the spec's one set of latents (shared by every
    cell); run r > 0 draws another set, again shared by every cell (common random numbers)."""
    return ctx.generator("latents", j) if run == 0 else ctx.generator("latents", "run", run, j)


def sample_cell(ctx, net, shape, settings: CellSettings, *, n: int, batch_size: int, guidance, eps_scale,
                on_batch: Callable[[int, torch.Tensor, dict], None], sigma_min: float, sigma_max: float,
                rho: float, run: int = 0) -> dict:
    """Draw this process's batches of the n images (in [0, 1], CPU), handing each to
    `on_batch(j, images, counts)`; returns the sampling time. Batch j is a fixed unit (latents from
    latents_generator(ctx, j, run), size min(batch_size, n - j * batch_size)): under torchrun each rank
    draws its share of the batches (ctx.shard) and the images do not depend on the number of ranks."""
    t0 = time.perf_counter()
    for j in ctx.shard(n_batches(n, batch_size)):
        b = min(batch_size, n - j * batch_size)
        latents = torch.randn((b, *shape), generator=latents_generator(ctx, j, run)).to(ctx.device)
        res = edm_sample(net, latents, steps=settings.steps, solver=settings.solver, guidance=guidance,
                         eps_scale=eps_scale, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        on_batch(j, to_unit_range(res.samples.float()).cpu(), {"nfe": res.nfe, "guided_evals": res.guided_evals})
    return {"sampling_seconds": time.perf_counter() - t0}


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of repeated runs (sample standard deviation / sqrt(n))."""
    n = len(values)
    mean = sum(values) / n
    return (sum((v - mean) ** 2 for v in values) / (n - 1) / n) ** 0.5


def save_grid(images: torch.Tensor, path: Path) -> Path:
    from torchvision.utils import save_image

    save_image(images, path, nrow=max(1, int(images.shape[0] ** 0.5)), padding=1)
    return path
