"""Frechet distance between two Gaussians fitted to feature sets (thesis Eq. 5.7).

d^2 = ||mu1 - mu2||^2 + Tr(C1 + C2 - 2 sqrt(C1 C2)). Which features are used decides
the metric's name: Inception pool3 -> `fid`; the suite's evaluator net -> `fd_evalnet`.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch

from repro.errors import UserError
from repro.metrics.spread import resample_indices


class InsufficientSamples(UserError):
    """Too few samples for a full-rank covariance of the features."""


def require_more_samples_than_dims(n: int, dim: int, what: str = "features") -> None:
    """Raise InsufficientSamples unless n > dim (a full-rank covariance is possible)."""
    if n <= dim:
        raise InsufficientSamples(
            f"Frechet distance on {dim}-dim {what} needs at least {dim + 1} samples per set, got {n}; "
            f"use more samples or a smaller feature layer"
        )


def feature_statistics(features, allow_rank_deficient: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D,D] of features [N,D], in float64.

    Refuses N <= D unless allow_rank_deficient (only to mirror a published protocol that
    did so, e.g. thesis Tab. 5.3's FID on 100 samples; the caller must label the result).
    """
    f = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be [N,D], got shape {tuple(f.shape)}")
    if not allow_rank_deficient:
        require_more_samples_than_dims(f.shape[0], f.shape[1])
    if f.shape[0] < 2:
        raise InsufficientSamples(f"a covariance needs at least 2 samples, got {f.shape[0]}")
    f = f.numpy()
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (thesis Eq. 5.7):
    pytorch-fid's own `calculate_frechet_distance` (sqrtm of the product; eps I added to both
    covariances when the product is singular; a large imaginary part is an error)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        # pytorch-fid 0.3 passes scipy's deprecated sqrtm(disp=False) (pyproject bounds scipy < 1.18)
        # and prints its singular-product notice; the notice becomes a warning here.
        warnings.simplefilter("ignore", DeprecationWarning)
        from scipy import linalg

        # a singular product (dead feature dimensions) still has a finite root; disp=False meant
        # "do not warn" before SciPy 1.17; non-finite roots are retried by pytorch-fid itself
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        value = calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps)
    if printed.getvalue().strip():
        warnings.warn(printed.getvalue().strip(), RuntimeWarning, stacklevel=2)
    return float(value)


def frechet_distance_from_features(features1, features2, allow_rank_deficient: bool = False) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N1,D] and [N2,D]."""
    mu1, sigma1 = feature_statistics(features1, allow_rank_deficient)
    mu2, sigma2 = feature_statistics(features2, allow_rank_deficient)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def frechet_replicates(features, mu_ref, sigma_ref, index_sets: np.ndarray | None = None,
                       device: str | torch.device = "cpu") -> list[float]:
    """The Frechet distance (thesis Eq. 5.7) of each resampled feature set features[idx] (one row of
    `index_sets`; default the shared paired resamples, repro.metrics.spread.resample_indices) to the
    fixed reference N(mu_ref, sigma_ref).

    Tr sqrt(C_ref C) = Tr sqrt(A C A) with A = C_ref^(1/2) (similar matrices), so one symmetric
    eigendecomposition per replicate and no sqrtm: the spread of a cell's distance over its
    samples, not its value (the cell's value stays pytorch-fid's, `frechet_distance`). A resample's
    covariance is X^T diag(w) X over the draw counts w (BLAS matrix products, float64, on `device`):
    at 2048 Inception dimensions one replicate costs about one d x d eigendecomposition."""
    f = torch.as_tensor(features).detach().to(device, torch.float64)
    mu_ref = torch.as_tensor(np.asarray(mu_ref, np.float64), device=device)
    sigma_ref = torch.as_tensor(np.asarray(sigma_ref, np.float64), device=device)
    w, v = torch.linalg.eigh(sigma_ref)
    root = (v * w.clamp_min(0).sqrt()) @ v.T
    n, d = f.shape
    if index_sets is None:
        index_sets = resample_indices(int(f.shape[0]))
    idx = torch.as_tensor(np.asarray(index_sets), device=device)
    trace_ref = torch.trace(sigma_ref)
    chunk = max(1, int(2e7 // (n * d + d * d)))   # replicates at a time: bounded memory at 2048 dims
    out: list[float] = []
    for start in range(0, idx.shape[0], chunk):
        rows = idx[start:start + chunk]
        counts = torch.zeros(rows.shape[0], n, dtype=torch.float64, device=device)
        counts.scatter_add_(1, rows, torch.ones_like(rows, dtype=torch.float64))   # draws of each unit
        mu = counts @ f / n                                                         # [b, d]
        second = (f.T[None] * counts[:, None, :]) @ f                               # X^T diag(w) X, [b, d, d]
        cov = (second - n * mu[:, :, None] * mu[:, None, :]) / max(n - 1, 1)
        ev = torch.linalg.eigvalsh(root @ cov @ root)
        d2 = ((mu - mu_ref) ** 2).sum(1) + trace_ref + cov.diagonal(dim1=1, dim2=2).sum(1) - 2 * ev.clamp_min(0).sqrt().sum(1)
        out += d2.tolist()
    return out
