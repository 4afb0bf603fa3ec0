"""The metrics of the 001 paper's Sec. 5.1: SSIM, FID and KID through torchmetrics (as the paper computed
them), and pixel accuracy / IoU of a segmenter run on both the original and the generated image with
the original's prediction as the reference (the paper: Mask2Former trained on Cityscapes).

torchmetrics takes the feature extractor as a module: pytorch-fid's Inception (pool3, 2048 dims; the
same TF-FID Inception weights torchmetrics' default loads through torch-fidelity) for `fid`/`kid`, or
the suite's evaluator network for `fd_evalnet`/`kid_evalnet` on the embedded data (never shown as FID).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from repro.metrics.fd_evalnet import evalnet_features
from repro.metrics.frechet import feature_statistics, frechet_replicates
from repro.metrics.inception import FID_FEATURE_DIM, InceptionFeatures
from repro.metrics.segmentation import SegmentationScores
from repro.metrics.spread import resample_indices


def ssim_per_image(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """SSIM (001 Eq. 5.1) per image pair: Gaussian 11x11 window (sigma 1.5), k1 0.01, k2 0.03, data range 1
    (torchmetrics' structural_similarity_index_measure). The window shrinks to fit images below 11 px."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    k = min(11, *fake.shape[-2:])
    k -= 1 - k % 2
    return structural_similarity_index_measure(fake.float(), real.float(), gaussian_kernel=True, kernel_size=k,
                                               sigma=1.5 * k / 11, k1=0.01, k2=0.03, data_range=1.0,
                                               reduction="none")


class FeatureModule(nn.Module):
    """A features function (images [N, 3, H, W] in [0, 1] -> [N, D]) as the module torchmetrics expects."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], dim: int):
        super().__init__()
        self.fn, self.num_features = fn, int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x).double()


def feature_module(ctx, evaluator: nn.Module | None, probe: torch.Tensor, fid_weights: str | None
                   ) -> tuple[FeatureModule, tuple[str, str]]:
    """The spec's feature space and its metric names: pytorch-fid's Inception (weights file fid_weights)
    when the spec lists fid or kid (the paper's), else the evaluator's features (fd_evalnet, kid_evalnet)."""
    if "fid" in ctx.spec.metrics or "kid" in ctx.spec.metrics:
        ext = InceptionFeatures(fid_weights, ctx.device)
        return FeatureModule(lambda im: ext.features(im), FID_FEATURE_DIM), ("fid", "kid")
    dim = int(evalnet_features(evaluator, probe).shape[1])
    return FeatureModule(lambda im: evalnet_features(evaluator, im), dim), ("fd_evalnet", "kid_evalnet")


def mean_abs_laplacian(images: torch.Tensor) -> torch.Tensor:
    """Per image: the mean |4-neighbour Laplacian| of the grey image, a high-frequency (sharpness) measure."""
    grey = images.float().mean(1, keepdim=True)
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 3, 3)
    return torch.nn.functional.conv2d(grey, k).abs().mean(dim=(1, 2, 3))


@torch.no_grad()
def extract(features: "FeatureModule", images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """features(images) [N, D] in float64 on the CPU, in batches."""
    return torch.cat([features(images[i: i + batch_size].float()).double().cpu()
                      for i in range(0, images.shape[0], batch_size)])


def frechet_boot(real: torch.Tensor, fake: torch.Tensor, features: "FeatureModule", allow_rank_deficient: bool,
                 batch_size: int = 64) -> list[float]:
    """The Frechet distance's replicates over the shared paired resamples of the generated images
    (repro.metrics.spread.resample_indices; the real statistics fixed), what a cell stores as
    `<fid>_boot`: its spread over images, not its value (torchmetrics' number stays the value)."""
    mu, sigma = feature_statistics(extract(features, real, batch_size).numpy(), allow_rank_deficient)
    fake_f = extract(features, fake, batch_size)
    return frechet_replicates(fake_f, mu, sigma)


def miou_replicates(image_iou: list[list[float | None]]) -> list[float]:
    """`miou` (per class the mean of the per-image IoUs over the images the class occurs in, then the
    mean over classes; repro.metrics.segmentation.image_miou) over the shared paired resamples of the
    images: what a cell stores as `miou_boot`. Vectorised: [replicates, images, classes]."""
    m = np.array([[np.nan if v is None else v for v in row] for row in image_iou], dtype=np.float64)
    x = m[resample_indices(m.shape[0])]                            # [R, n, C]
    present = ~np.isnan(x)
    counts = present.sum(axis=1)                                   # [R, C]
    per_class = np.where(counts > 0, np.nansum(x, axis=1) / np.maximum(counts, 1), np.nan)
    return [float(v) for v in np.nanmean(per_class, axis=1)]


def fid_kid(real: torch.Tensor, fake: torch.Tensor, features: FeatureModule, subset_size: int, degree: int,
            seed: int, batch_size: int = 64) -> dict[str, float]:
    """torchmetrics' FrechetInceptionDistance and KernelInceptionDistance (subset_size, polynomial degree;
    001 Sec. 5.1.3: subset 100, degree 3, otherwise defaults) on one feature extractor."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    sub = min(subset_size, real.shape[0], fake.shape[0])
    fid = FrechetInceptionDistance(feature=features, normalize=True)
    kid = KernelInceptionDistance(feature=features, subset_size=sub, degree=degree, normalize=True)
    for metric in (fid, kid):
        for images, is_real in ((real, True), (fake, False)):
            for i in range(0, images.shape[0], batch_size):
                metric.update(images[i: i + batch_size].float(), real=is_real)
    with torch.random.fork_rng(devices=[]):   # KID's subsets come from torch's global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std), "kid_subset_size": sub}


@torch.no_grad()
def segment(evaluator: nn.Module, images: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, int]:
    """(argmax labels [N, H, W], number of classes the segmenter predicts)."""
    device = next(evaluator.parameters()).device
    evaluator.eval()
    preds, k = [], 0
    for i in range(0, images.shape[0], batch_size):
        logits = evaluator(images[i: i + batch_size].to(device).float())
        k = int(logits.shape[1])
        preds.append(logits.argmax(1).cpu())
    return torch.cat(preds), k


def original_vs_generated(evaluator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """001 Sec. 5.1.4: the segmenter's prediction on the original is the reference for its prediction on
    the generated image; pixel accuracy (Eq. 5.8), IoU (Eq. 5.9) per image and class, and dataset mIoU."""
    ref, k = segment(evaluator, real)
    pred, _ = segment(evaluator, fake)
    scores = SegmentationScores(k, None)
    scores.update(pred, ref)
    out = scores.compute()
    # no ignored pixels and equal image sizes: the mean of the per-image accuracies is pixel_acc
    per_image = (pred == ref).flatten(1).double().mean(1)
    return {"pixel_acc": out["pixel_acc"], "miou": out["miou"], "miou_dataset": out["miou_dataset"],
            "segmenter_classes": k, "pred_generated": pred, "pred_original": ref,
            "pixel_acc_per_image": per_image.tolist(), "image_iou": out["image_iou"]}


def mask_compliance(pred: torch.Tensor, masks: torch.Tensor, num_classes: int, ignore: int = 255) -> dict:
    """The segmenter's prediction on the generated image against the input mask (same class ids)."""
    scores = SegmentationScores(num_classes, ignore)
    scores.update(pred, masks.long())
    out = scores.compute()
    return {"pixel_acc_vs_mask": out["pixel_acc"], "miou_vs_mask": out["miou"]}
