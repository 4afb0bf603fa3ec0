"""Metrics on tensors: FID/FD, KID, SSIM, pixel accuracy, mIoU.

Light to import: scipy, pytorch_fid and torchmetrics are imported inside the functions
that need them.
"""

from repro.metrics.frechet import (
    InsufficientSamples,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)
from repro.metrics.image_quality import kid_from_features, ssim
from repro.metrics.inception import (
    FID_WEIGHTS_FILENAME,
    FIDUnavailable,
    InceptionFeatures,
    fid_from_images,
    inception_weights_path,
)
from repro.metrics.segmentation import SegmentationScores, segmentation_scores

__all__ = [
    "FID_WEIGHTS_FILENAME",
    "FIDUnavailable",
    "InceptionFeatures",
    "InsufficientSamples",
    "SegmentationScores",
    "feature_statistics",
    "fid_from_images",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_weights_path",
    "kid_from_features",
    "segmentation_scores",
    "ssim",
]
