"""What a semantic-synthesis run loads once: the maps, the three models (score, guide, evaluator),
the quality metric and the evaluator's score on the real images (the Oracle of thesis Tab. 5.4)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from repro.data import dataset_info
from repro.data.palette import palette
from repro.experiments.quality import prepare_scoring
from repro.experiments.semantic.scoring import compliance, map_counts, segment, unit_extras
from repro.experiments.label_maps import load_maps
from repro.experiments.semantic.synthesis import Guide, check_compatible, guide_for
from repro.guidance.segmentation import GuidanceSettings, segmentation_log_likelihood_grad
from repro.metrics.spread import compact
from repro.rng import randn
from repro.trainers.score_model import score_model_for


@dataclass
class SemanticState:
    score_model: Any
    guide: Guide
    evaluator: torch.nn.Module
    real: torch.Tensor          # the maps' own images [N, C, H, W]
    maps: torch.Tensor          # [N, H, W]
    colors: np.ndarray
    num_classes: int
    ignore_index: int | None
    scorer: Any = None          # FrechetScorer (fid / fd_evalnet) or None
    oracle: dict[str, float] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)   # provenance of each role's model
    indices: list[int] = field(default_factory=list)        # seed index of each map (its noise)
    norm_ratio: dict[str, float] = field(default_factory=dict)   # ||score|| / ||grad log p|| per t


def prepare_semantic(ctx, n_maps: int, quality: dict[str, Any] | None = None) -> SemanticState:
    """Load maps and models for the spec in ctx; `quality` = {n_reference, allow_rank_deficient} adds
    the Frechet metric the spec lists (fid / fd_evalnet) on real images of the spec's split."""
    ds = ctx.spec.dataset
    info = dataset_info(ds.name)
    real, maps = load_maps(ds, n_maps)
    scorer, floor = None, None
    if quality is not None:   # first: missing FID weights fail before any training
        scoring = prepare_scoring(ctx, n_reference=quality["n_reference"], n_samples=n_maps,
                                  allow_rank_deficient=quality["allow_rank_deficient"],
                                  floor_split=quality.get("floor_split"))
        scorer, floor = scoring["scorer"], scoring["floor"]
    trained = {role: ctx.model(role) for role in ("score", "guide", "evaluator")}
    score_model = score_model_for(trained["score"])
    guide = guide_for(trained["guide"])
    check_compatible(score_model, guide, maps)
    evaluator = trained["evaluator"].net
    oracle = compliance(segment(evaluator, real), maps, info.num_classes, info.ignore_index)
    colors, _ = palette(ds.name)
    models = {role: {"name": t.name, "hash": t.hash, "sha256": t.meta.get("sha256")} for role, t in trained.items()}
    models["score"]["sigma_max"] = trained["score"].meta["sde"].get("sigma_max")
    models["guide"].update(sigma_max=guide.noise.sigma_max, noise_encoding=guide.noise.encoding)
    return SemanticState(score_model, guide, evaluator, real, maps, colors, info.num_classes, info.ignore_index,
                         scorer, {"oracle_miou": oracle["miou"], "oracle_pixel_acc": oracle["pixel_acc"],
                                  "oracle_miou_dataset": oracle["miou_dataset"], "real_floor": floor}, models)


def score_guidance_norms(state: SemanticState, ts=(0.5, 0.6, 0.7), n: int = 16, seed: int = 0
                         ) -> dict[str, float]:
    """Median over real images perturbed to t (VE kernel) of ||score|| / ||grad log p_t(y | x)||,
    per t: how much s0 the guidance needs to matter at all (thesis Sec. 5.1: "around 1000 times
    smaller"). Measured once per run; it depends on the networks and the resolution."""
    sm, guide = state.score_model, state.guide
    device = next(guide.net.parameters()).device
    x0 = sm.from_images(state.real[:n]).to(device)
    y = state.maps[:n].to(device)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in ts:
        tt = torch.full((x0.shape[0],), float(t), device=device)
        x = x0 + sm.sde.sigma(tt).reshape(-1, 1, 1, 1) * randn(x0.shape, g, device)
        with torch.no_grad():
            score = sm.score_fn(x, tt)
        grad = segmentation_log_likelihood_grad(guide.net, x, y, guide.noise.channel(sm.sde.sigma(tt)),
                                                GuidanceSettings(), guide.ignore_index)
        ratio = score.flatten(1).norm(dim=1) / grad.flatten(1).norm(dim=1).clamp_min(1e-30)
        out[f"{t:g}"] = float(ratio.median())
    return out


def evaluate_images(state: SemanticState, images: torch.Tensor, maps: torch.Tensor | None = None,
                    unit: str = "maps") -> tuple[dict[str, float], dict[str, Any]]:
    """Metric values and extras of generated images for their maps (default: all the run's maps),
    with the per-unit values and replicates the claims engine resamples (`unit`: what one image is,
    the same one in every cell: a map, or a map with one noise draw)."""
    maps = state.maps if maps is None else maps
    pred = segment(state.evaluator, images)
    judged = compliance(pred, maps, state.num_classes, state.ignore_index)
    guide_view = compliance(state.guide.clean_labels(images), maps, state.num_classes, state.ignore_index)
    values = {"miou": judged["miou"], "pixel_acc": judged["pixel_acc"], "miou_dataset": judged["miou_dataset"]}
    extra = {"per_class_iou": judged["per_class_iou"], "guide_miou": guide_view["miou"],
             "guide_pixel_acc": guide_view["pixel_acc"], "metric": state.scorer.name if state.scorer else None,
             "n_maps": int(maps.shape[0]), **state.oracle, "models": state.models,
             "evaluator": state.models["evaluator"]["name"]}
    extra.update(unit_extras(map_counts(pred, maps, state.num_classes, state.ignore_index), unit))
    if state.scorer is not None:
        values[state.scorer.name], boot = state.scorer.with_replicates(images)
        extra[f"{state.scorer.name}_boot"] = compact(boot)
    return values, extra
