"""KID and SSIM (001 paper Sec. 5.1 reports SSIM and KID with subset size 100).

KID is the unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / d + 1)^3
(Binkowski et al.), averaged over random subsets; on Inception pool3 features it is
the usual KID. The estimate on each subset is torchmetrics' own (torchmetrics.image.kid.poly_mmd,
what KernelInceptionDistance computes); the subsets are drawn here from an explicit generator.
SSIM is torchmetrics' structural_similarity_index_measure.
"""

from __future__ import annotations

import torch


def kid_from_features(
    features1: torch.Tensor,
    features2: torch.Tensor,
    subset_size: int = 1000,
    num_subsets: int = 100,
    generator: torch.Generator | None = None,
    degree: int = 3,
    coef: float = 1.0,
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `num_subsets` random subsets of `subset_size` rows each.

    Subsets are drawn without replacement within a subset, with `generator` (CPU).
    std is the population standard deviation over subsets, as torchmetrics reports it.
    """
    f1 = torch.as_tensor(features1).detach().to("cpu", torch.float64)
    f2 = torch.as_tensor(features2).detach().to("cpu", torch.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be [N,D] with equal D, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    if subset_size < 2 or subset_size > min(f1.shape[0], f2.shape[0]):
        raise ValueError(
            f"KID subset_size must be in [2, {min(f1.shape[0], f2.shape[0])}] (the smaller set size), got {subset_size}"
        )
    from torchmetrics.image.kid import poly_mmd

    scores = []
    for _ in range(num_subsets):
        idx1 = torch.randperm(f1.shape[0], generator=generator)[:subset_size]
        idx2 = torch.randperm(f2.shape[0], generator=generator)[:subset_size]
        scores.append(poly_mmd(f1[idx1], f2[idx2], degree=degree, coef=coef))
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


def ssim(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, kernel_size: int = 11) -> float:
    """Mean SSIM of image batches [N,C,H,W] via torchmetrics.

    The Gaussian window shrinks to the largest odd size that fits images smaller than it.
    """
    from torchmetrics.functional import structural_similarity_index_measure

    if preds.shape != target.shape or preds.ndim != 4:
        raise ValueError(f"preds and target must both be [N,C,H,W], got {tuple(preds.shape)} and {tuple(target.shape)}")
    fit = min(kernel_size, *preds.shape[-2:])
    fit -= 1 - fit % 2  # odd
    value = structural_similarity_index_measure(
        preds.float(), target.float(), data_range=data_range, kernel_size=fit, sigma=1.5 * fit / 11
    )
    return float(value)
