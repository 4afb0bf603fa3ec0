"""Image quality against a real reference set, shared by the score-model and semantic-synthesis
families: the spec's reference images, a Frechet distance in a named metric's feature space, and
its real-vs-real floor."""
from __future__ import annotations

from typing import Any

import torch

from repro.data import load_dataset, stack
from repro.errors import UserError
from repro.metrics.by_name import FRECHET_METRICS, FrechetFeatures, frechet_features
from repro.metrics.frechet import feature_statistics, frechet_distance, frechet_replicates
from repro.nets.evaluator import DigitsClassifier


class FrechetScorer:
    """The Frechet distance (thesis Eq. 5.7) of generated images to a fixed real set, in the feature
    space of a named metric (repro.metrics.by_name: `fid` or `fd_evalnet`)."""

    def __init__(self, metric: FrechetFeatures, real: torch.Tensor, allow_rank_deficient: bool = False,
                 classify=None):
        self.name, self.features, self.allow, self.classify = metric.name, metric.features, allow_rank_deficient, classify
        self.inputs = metric.inputs  # how images reach the feature network (repro.metrics.inception.FID_INPUTS)
        self.mu, self.sigma = feature_statistics(self.features(real), allow_rank_deficient)
        self.n_real = int(real.shape[0])

    def __call__(self, fake: torch.Tensor) -> float:
        mu, sigma = feature_statistics(self.features(fake), self.allow)
        return float(frechet_distance(self.mu, self.sigma, mu, sigma))

    def with_replicates(self, fake: torch.Tensor) -> tuple[float, list[float]]:
        """(the distance, its replicates over the shared paired resamples of the fake samples):
        what a cell stores as `<name>` and `<name>_boot` for the claims engine (repro.claims)."""
        feats = self.features(fake)
        mu, sigma = feature_statistics(feats, self.allow)
        value = float(frechet_distance(self.mu, self.sigma, mu, sigma))
        device = "cuda" if torch.cuda.is_available() else "cpu"   # 1000 eigendecompositions at 2048 dims: a GPU's job
        return value, frechet_replicates(feats, self.mu, self.sigma, device=device)

    @torch.no_grad()
    def class_statistics(self, fake: torch.Tensor) -> dict[str, float]:
        """With a classifying evaluator: entropy of the mean predicted class distribution (diversity
        over classes, at most ln K) and the mean top-class probability (how recognisable samples are)."""
        if self.classify is None:
            return {}
        probs = torch.softmax(self.classify(fake).double(), dim=1)
        mean = probs.mean(0)
        entropy = float(-(mean * mean.clamp_min(1e-12).log()).sum())
        return {"class_entropy": entropy, "confidence": float(probs.max(1).values.mean())}


def quality_scorer(ctx, metrics: list[str], real: torch.Tensor, allow_rank_deficient: bool = False,
                   fid_inputs: str = "uint8") -> FrechetScorer:
    """`fid` if the spec lists it (needs the Inception weights; images quantised as `fid_inputs`
    says, 8-bit by default as pytorch-fid reads PNG files), else `fd_evalnet` (needs role
    `evaluator`; float images)."""
    name = next((m for m in FRECHET_METRICS if m in metrics), None)
    if name is None:
        raise UserError(f"spec {ctx.spec.id}: metrics must include fid or fd_evalnet")
    metric = frechet_features(name, ctx.device, evaluator=lambda: ctx.model("evaluator"), fid_inputs=fid_inputs)
    classify = _image_classifier(metric.network) if name == "fd_evalnet" else None
    return FrechetScorer(metric, real, allow_rank_deficient, classify=classify)


def _image_classifier(net):
    """logits [N, K] of an evaluator that classifies whole images (the digits one), else None."""
    if not isinstance(net, DigitsClassifier):
        return None
    device = next(net.parameters()).device
    return lambda images: torch.cat([net(images[i: i + 256].to(device).float()).cpu()
                                     for i in range(0, images.shape[0], 256)])


def real_images(ctx, n: int) -> torch.Tensor:
    """The spec's reference images (dataset/split of the spec), [n, C, H, W] in [0, 1]."""
    ds = ctx.spec.dataset
    data = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=n, seed=ds.seed)
    return stack(data, limit=n)[0]


def prepare_scoring(ctx, *, n_reference: int, n_samples: int, allow_rank_deficient: bool,
                    floor_split: str | None = None, fid_inputs: str = "uint8") -> dict[str, Any]:
    """Reference images, the metric (fid / fd_evalnet) and its real-vs-real floor: n_samples real
    images of `floor_split` (if given and it has that many) against the reference."""
    real = real_images(ctx, n_reference)
    scorer = quality_scorer(ctx, ctx.spec.metrics, real, allow_rank_deficient, fid_inputs=fid_inputs)
    real_classes = scorer.class_statistics(real)
    floor = None
    if floor_split:
        ds = ctx.spec.dataset
        other = stack(load_dataset(ds.name, split=floor_split, resolution=ds.resolution, root=ds.root,
                                   n=n_samples, seed=ds.seed), limit=n_samples)[0]
        if other.shape[0] == n_samples:
            floor = scorer(other)
    return {"scorer": scorer, "real": real, "floor": floor, "real_classes": real_classes}
