"""Noise encoding of the segmenter: log sigma(t) vs t as the 4th input channel (000 thesis Sec. 5.2.2).

One cell per encoding: a segmenter is trained with that encoding (or reused if already trained)
and the peak held-out mean IoU over its epochs is reported. Published after 100 epochs on
Cityscapes: ~0.212 (log sigma) vs ~0.213 (t), "no significant differences".

Per-image values (what the claims engine resamples) exist only for the weights the trainer saved,
its last epoch: when that epoch is the peak, the saved segmenter is scored again on the trainer's
own validation protocol (the same held-out images, t and noise per image) and its per-image counts
are stored for `peak_miou` too, after checking that they give the recorded peak.
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.data import dataset_info, load_dataset, stack
from repro.errors import UserError
from repro.experiments.semantic.scoring import compliance, map_counts, thesis_miou, unit_extras
from repro.trainers.noisy_segmenter import noise_level, parse, segmenter_input

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("final_miou", "peak_miou", "peak_pixel_acc")
GRID_KEYS = ("encoding",)


class Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Peak over the first `epochs` epochs (the thesis compared after 100); None = all epochs.
    # With Adam at a constant learning rate, a longer run's first 100 epochs are a 100-epoch run.
    epochs: int | None = Field(None, ge=1)


def prepare(ctx):
    missing = [e for e in ctx.spec.grid.get("encoding", []) if e not in ctx.spec.models]
    if missing:
        raise UserError(f"spec {ctx.spec.id}: no model named for encoding(s) {', '.join(map(str, missing))}; "
                        f"add them under `models`")
    return {}


def run_cell(ctx, state, cell, run):
    model = ctx.model(cell["encoding"])
    if model.meta["noise_encoding"] != cell["encoding"]:
        raise RuntimeError(f"model {model.name} is conditioned on {model.meta['noise_encoding']}, "
                           f"not {cell['encoding']}")
    full = model.meta["history"]
    history = full[: ctx.fixed.epochs]
    curve = [h.get("val_miou") for h in history]
    best = max(range(len(curve)), key=lambda i: curve[i])
    extra = {"epoch_of_peak": history[best]["epoch"], "epochs": len(history),
             "val_miou_curve": curve, "val_pixel_acc_curve": [h.get("val_pixel_acc") for h in history],
             "model": model.name, "model_hash": model.hash, "model_sha256": model.meta.get("sha256"),
             "sigma_max": model.meta["sigma_max"], "train_seconds": model.meta.get("train_seconds")}
    extra.update(_final_epoch_units(model, ctx.device, peak_is_final=best == len(full) - 1,
                                    recorded_miou=full[-1].get("val_miou")))
    return {
        "values": {"peak_miou": curve[best], "final_miou": curve[-1],
                   "peak_pixel_acc": max(h.get("val_pixel_acc", 0.0) for h in history)},
        "extra": extra,
    }


@torch.no_grad()
def held_out_predictions(model, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, predictions) of the saved segmenter on the trainer's validation protocol
    (repro.trainers.noisy_segmenter.train_model's on_epoch_end): its held-out images, t spread
    evenly over [0, t_max], noise from the seed + 1 stream in batches of 64."""
    net_cfg, ts = parse(model.resolved)
    cfg = model.resolved.config
    ds = cfg.dataset
    data = load_dataset(ds.name, split=ts.eval_split, resolution=ds.resolution, root=ds.root,
                        n=ts.eval_images, seed=ds.seed)
    images, labels = stack(data, limit=ts.eval_images)
    sigma_min, sigma_max = float(model.meta["sigma_min"]), float(model.meta["sigma_max"])
    t_all = torch.linspace(0.0, float(model.meta["t_max"]), images.shape[0])
    g = torch.Generator().manual_seed(cfg.seed + 1)
    net = model.net
    was = net.training
    net.eval()
    preds = []
    for i in range(0, images.shape[0], 64):
        x0, tt = images[i: i + 64].to(device), t_all[i: i + 64].to(device)
        x = segmenter_input(x0, tt, sigma_min, sigma_max, g)
        preds.append(net(x, noise_level(tt, net_cfg.noise_encoding, sigma_min, sigma_max)).argmax(1).cpu())
    net.train(was)
    return labels, torch.cat(preds)


def _final_epoch_units(model, device, peak_is_final: bool, recorded_miou: float | None) -> dict:
    """Per-image units of the last epoch (`final_miou`), and of `peak_miou` when the last epoch is the
    peak; nothing (with the reason) when the re-scored weights do not give the recorded mIoU."""
    info = dataset_info(model.resolved.config.dataset.name)
    labels, pred = held_out_predictions(model, device)
    counts = map_counts(pred, labels, info.num_classes, info.ignore_index)
    again = compliance(pred, labels, info.num_classes, info.ignore_index)["miou"]
    if recorded_miou is None or abs(again - recorded_miou) > 1e-6:
        return {"units_missing": f"the saved weights give held-out mIoU {again:.6g}, the trainer recorded "
                                 f"{recorded_miou} for its last epoch: no per-image values"}
    units = unit_extras(counts, "images")
    out = {"resample_unit": "images", "resample_n": units["resample_n"], "final_miou_boot": units["miou_boot"],
           "final_miou_rescored": float(f"{thesis_miou(counts):.6g}")}
    if peak_is_final:
        out["peak_miou_boot"] = units["miou_boot"]
    else:
        out["units_missing"] = ("the peak epoch is not the last one and the trainer keeps only the last "
                                "weights: no per-image values for peak_miou")
    return out
