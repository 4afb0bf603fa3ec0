"""Pixel accuracy and mean IoU of predicted label maps (thesis Sec. 5.4.2, Eqs. 5.8 and 5.9).

Two mIoU definitions are reported side by side:
- `miou`: the thesis code's definition: IoU per image and class (only classes present in
  that image's prediction or target), averaged over images per class, then over classes.
- `miou_dataset`: the standard dataset-level mIoU from the accumulated confusion matrix
  (what torchmetrics' MulticlassJaccardIndex(average="macro") returns).
The dataset-level numbers (confusion matrix, pixel accuracy, per-class IoU) are torchmetrics'
own (MulticlassConfusionMatrix, MulticlassAccuracy(average="micro"), MulticlassJaccardIndex);
the thesis's per-image mIoU is computed here from per-image confusion matrices.
Pixels whose target is `ignore_index` count nowhere.
"""

from __future__ import annotations

import torch


class SegmentationScores:
    """Streaming pixel accuracy, per-image mIoU and dataset mIoU over batches of label maps."""

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex

        c, ii = self.num_classes, self.ignore_index
        # labels are checked in update; the scores are this process's own: under torchrun rank 0 evaluates
        # alone, and a sync across ranks would wait for ranks that are not evaluating (a deadlock)
        kw = dict(num_classes=c, ignore_index=ii, validate_args=False, sync_on_compute=False)
        self._tm_confusion = MulticlassConfusionMatrix(**kw)
        self._tm_accuracy = MulticlassAccuracy(average="micro", **kw)
        self._tm_iou = MulticlassJaccardIndex(average="none", **kw)
        self.confusion = torch.zeros(c, c, dtype=torch.int64)  # rows: target, cols: prediction
        self.image_iou_sum = torch.zeros(c, dtype=torch.float64)
        self.image_iou_count = torch.zeros(c, dtype=torch.int64)
        self.image_iou: list[list[float | None]] = []   # per image and class; None: class not in that image
        self.n_images = 0

    def _counted_classes(self) -> torch.Tensor:
        """Classes that may enter a mean: all but an in-range ignore label (as torchmetrics)."""
        counted = torch.ones(self.num_classes, dtype=torch.bool)
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            counted[self.ignore_index] = False
        return counted

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: pred and target are integer label maps of shape [N,H,W]."""
        if pred.shape != target.shape or pred.ndim != 3:
            raise ValueError(f"pred and target must both be [N,H,W]; got {tuple(pred.shape)} and {tuple(target.shape)}")
        c = self.num_classes
        pred = pred.long().cpu().reshape(pred.shape[0], -1)
        target = target.long().cpu().reshape(target.shape[0], -1)
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
        if ((target < 0) | (target >= c))[valid].any():
            raise ValueError(f"target has labels outside [0, {c}) other than ignore_index={self.ignore_index}")
        if ((pred < 0) | (pred >= c))[valid].any():
            raise ValueError(f"pred has labels outside [0, {c})")

        flat_pred, flat_target = pred.reshape(-1), target.reshape(-1)
        for metric in (self._tm_confusion, self._tm_accuracy, self._tm_iou):
            metric.update(flat_pred, flat_target)
        self.confusion = self._tm_confusion.compute().to(torch.int64)

        # thesis mIoU: one confusion matrix per image, via a single bincount with an image offset
        n = pred.shape[0]
        image = torch.arange(n).unsqueeze(1).expand_as(target)
        index = (image * c * c + target * c + pred)[valid]
        per_image = torch.bincount(index, minlength=n * c * c).reshape(n, c, c)
        self.n_images += n

        # thesis Eq. 5.9 per image: |A_i n B_i| / |A_i u B_i| for classes present in that image
        intersection = per_image.diagonal(dim1=1, dim2=2)
        union = per_image.sum(1) + per_image.sum(2) - intersection
        present = union > 0
        iou = intersection.double() / union.clamp(min=1).double()
        self.image_iou_sum += torch.where(present, iou, torch.zeros_like(iou)).sum(0)
        self.image_iou_count += present.sum(0)
        self.image_iou += [[float(v) if ok else None for v, ok in zip(row, keep)]
                           for row, keep in zip(iou.tolist(), present.tolist())]

    def compute(self) -> dict:
        """{"pixel_acc", "miou", "miou_dataset", "per_class_iou", "image_iou", "n_images", "n_pixels"}.

        per_class_iou is the dataset-level IoU per class, None for classes that never
        occurred (in prediction or target) or for the ignore label. image_iou is each image's
        IoU per class (None where the class is in neither map): `image_miou` of it is `miou`,
        and of a resample of its rows the resampled images' mIoU.
        """
        conf = self.confusion.double()
        n_pixels = int(self.confusion.sum())
        if n_pixels == 0:
            raise ValueError("no valid (non-ignored) pixels were accumulated")
        counted = self._counted_classes()

        # thesis Eq. 5.8 read as multi-class accuracy: correct pixels / valid pixels
        pixel_acc = float(self._tm_accuracy.compute())

        intersection = conf.diagonal()
        union = conf.sum(0) + conf.sum(1) - intersection
        occurred = (union > 0) & counted   # classes never predicted nor present enter no mean
        dataset_iou = self._tm_iou.compute().double()
        miou_dataset = float(dataset_iou[occurred].mean()) if occurred.any() else float("nan")

        seen = (self.image_iou_count > 0) & counted
        per_class_mean = self.image_iou_sum / self.image_iou_count.clamp(min=1)
        miou = float(per_class_mean[seen].mean()) if seen.any() else float("nan")

        per_class_iou = [float(v) if ok else None for v, ok in zip(dataset_iou.tolist(), occurred.tolist())]
        return {
            "pixel_acc": pixel_acc,
            "miou": miou,
            "miou_dataset": miou_dataset,
            "per_class_iou": per_class_iou,
            "image_iou": [[v if ok else None for v, ok in zip(row, counted.tolist())] for row in self.image_iou],
            "n_images": self.n_images,
            "n_pixels": n_pixels,
        }


def image_miou(image_iou, rows=None) -> float:
    """The thesis mIoU (`miou`) from per-image class IoUs (SegmentationScores' image_iou; None:
    the class is absent from that image): per class the mean over the images it occurs in, then
    the mean over classes. `rows` picks (and may repeat) images, e.g. a bootstrap resample."""
    rows = range(len(image_iou)) if rows is None else rows
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for r in rows:
        for k, v in enumerate(image_iou[r]):
            if v is not None:
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
    return sum(sums[k] / counts[k] for k in sums) / len(sums) if sums else float("nan")


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> dict:
    """One-shot SegmentationScores on a single batch of label maps [N,H,W]."""
    scores = SegmentationScores(num_classes, ignore_index)
    scores.update(pred, target)
    return scores.compute()
