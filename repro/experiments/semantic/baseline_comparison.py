"""Baselines of semantic image synthesis against the guided score model (000 thesis Sec. 5.4.5,
Tab. 5.4 mIoU / pixel accuracy, Tab. 5.5 FID): one cell per method, every method judged on the
same label maps by the same evaluator segmenter and Frechet metric as table5_3.

Rows: `spade` and `pix2pixhd` are trained by the suite (model roles of the same names), `ncsnpp`
is the suite's NCSN++ guided by the noise-conditional U-Net at s0 (0.002) and snr (0.1) with
table5_3's sampler, `oracle` is the evaluator on the maps' real images. A method whose released
outputs are given in `fixed.folders` is scored from that folder instead (as `repro evaluate`
does); a method with neither (CRN: the suite has no cascaded refinement network) is "published
only". Every generated image is written as an 8-bit PNG pair under the cell's artifacts
(images/, maps/) and judged as stored, so `repro evaluate` on that folder gives the same numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.data import dataset_info
from repro.data.palette import palette
from repro.errors import UserError
from repro.experiments.quality import prepare_scoring
from repro.experiments.semantic.folder_scoring import judge, quantize, read_folder_pairs, write_pairs
from repro.experiments.semantic.prepare import SemanticState, prepare_semantic
from repro.experiments.semantic.scoring import compliance, segment, triptych_sheet
from repro.experiments.label_maps import load_maps
from repro.experiments.model_seeds import pool, seed_overrides
from repro.experiments.semantic.settings import SynthesisFixed, synthesis_setting
from repro.experiments.semantic.synthesis import guide_for, synthesize
from repro.images import save_image_grid
from repro.nets.spade import one_hot_map
from repro.results import relative_to_results
from repro.specs import cell_key
from repro.trainers.score_model import score_model_for

# what its cells measure: a spec's `metrics` names some of them (checked by validate_spec_for_kind)
METRICS = ("fd_evalnet", "fid", "miou", "pixel_acc")
GRID_KEYS = ("method",)
# model roles every spec of this kind names, and the model kinds each takes
ROLES = {"evaluator": ("evaluator", "pretrained_segmenter")}
METHODS = ("crn", "pix2pixhd", "spade", "ncsnpp", "oracle")
GAN_ROLES = ("spade", "pix2pixhd")
SEEDED_ROLES = ("spade", "pix2pixhd", "score", "guide")   # trained per model seed (the evaluator judges: one copy)
LABELS = {"crn": "CRN", "pix2pixhd": "pix2pixHD", "spade": "SPADE", "ncsnpp": "NCSN++", "oracle": "Oracle"}


class FolderRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: str
    maps: str


class Fixed(SynthesisFixed):
    n_maps: int = Field(500, ge=2, description="label maps of the spec's split, the same for every method "
                                               "(Tab. 5.4/5.5: all 500 Cityscapes validation maps)")
    n_reference: int = Field(500, ge=2, description="real images of the spec's split for the Frechet distance")
    allow_rank_deficient: bool = Field(False, description="fewer samples than feature dims")
    floor_split: str | None = Field(None, description="split whose n_maps real images give the real-vs-real floor")
    sheet_maps: int = Field(4, ge=1)
    folders: dict[str, FolderRow] = Field(default_factory=dict,
                                          description="method -> folder pair of released outputs to score")
    model_seeds: int = Field(1, ge=1, description="independently trained copies of each trained row's models "
                                                  "(seeds seed .. seed + K - 1 of SPADE, pix2pixHD, and NCSN++ "
                                                  "with its guide; not the evaluator): each row is the mean over "
                                                  "them and its claims resample them (repro.experiments.model_seeds)")


def prepare(ctx):
    f = ctx.fixed
    methods = list(ctx.spec.grid.get("method", []))
    unknown = [m for m in methods + list(f.folders) if m not in METHODS]
    if unknown:
        raise UserError(f"spec {ctx.spec.id}: unknown method {unknown[0]!r}; methods: {', '.join(METHODS)}")
    quality = {"n_reference": f.n_reference, "floor_split": f.floor_split,
               "allow_rank_deficient": f.allow_rank_deficient}
    if "ncsnpp" in methods and "ncsnpp" not in f.folders:
        state = prepare_semantic(ctx, f.n_maps, quality)   # table5_3's maps, models, scorer, oracle
    else:
        state = _judging_state(ctx, f.n_maps, quality)
    k = min(f.sheet_maps, f.n_maps)
    d = ctx.artifacts_dir("maps")
    triptych_sheet(state.real[:k], state.maps[:k], [], state.colors, d / "maps.png")
    save_image_grid(state.real[:k], d / "real_strip.png", nrow=k, scale=2)
    return state


def _judging_state(ctx, n_maps: int, quality: dict[str, Any]):
    """The maps, evaluator, scorer and Oracle without the score model and guide."""
    ds = ctx.spec.dataset
    info = dataset_info(ds.name)
    real, maps = load_maps(ds, n_maps)
    scoring = prepare_scoring(ctx, n_samples=n_maps, **quality)
    trained = ctx.model("evaluator")
    oracle = compliance(segment(trained.net, real), maps, info.num_classes, info.ignore_index)
    colors, _ = palette(ds.name)
    models = {"evaluator": {"name": trained.name, "hash": trained.hash, "sha256": trained.meta.get("sha256")}}
    return SemanticState(None, None, trained.net, real, maps, colors, info.num_classes, info.ignore_index,
                         scoring["scorer"], {"oracle_miou": oracle["miou"], "oracle_pixel_acc": oracle["pixel_acc"],
                                             "oracle_miou_dataset": oracle["miou_dataset"],
                                             "real_floor": scoring["floor"]}, models)


@torch.no_grad()
def generate_with(generator: torch.nn.Module, maps: torch.Tensor, num_classes: int, batch_size: int,
                  device: torch.device) -> torch.Tensor:
    """A GAN generator's images in [0, 1] for label maps [N, H, W] (eval mode: batch-norm running
    statistics, as the releases' test scripts)."""
    generator.eval()
    out = [(generator(one_hot_map(maps[i: i + batch_size].to(device), num_classes)).float().cpu() + 1) / 2
           for i in range(0, maps.shape[0], batch_size)]
    return torch.cat(out).clamp_(0, 1)


def run_cell(ctx, state, cell, run):
    f = ctx.fixed
    method = cell["method"]
    metrics = list(ctx.spec.metrics)
    unit: str | None = "maps"   # what the claims engine resamples, paired with the other rows map by map
    extra: dict[str, Any] = {"method_label": LABELS[method], "n_maps": int(state.maps.shape[0]), **state.oracle,
                             "evaluator": state.models["evaluator"]["name"], "models": state.models}
    key = cell_key(cell)
    maps = state.maps
    if method in f.folders:
        row = f.folders[method]
        res = ctx.spec.dataset.resolution
        pairs = read_folder_pairs(Path(row.images), Path(row.maps), ctx.spec.dataset.name, state.num_classes,
                                  tuple(res) if res else None)
        images, maps = pairs.images, pairs.maps
        # map i pairs with map i of the other rows (the claims engine's paired resamples) only when the
        # folder holds the spec's own maps in the same order
        aligned = maps.shape == state.maps.shape and bool(torch.equal(maps, state.maps))
        extra.update(source="evaluated folder", folder_images=row.images, folder_maps=row.maps,
                     n_maps=len(pairs.names), units_aligned=aligned)
        if not aligned:   # no per-map values: pairing them with other maps would be wrong
            unit = None
            extra["units_missing"] = "the folder's maps are not the spec's maps in the same order"
    elif method == "oracle":
        images = state.real
        extra.update(source="suite run", judged="the evaluator on the maps' real images")
    elif method == "ncsnpp" or (method in GAN_ROLES and method in ctx.spec.models):
        return _generated_row(ctx, state, f, method, key, extra, metrics)
    else:
        extra.update(source="published only",
                     reason=("the suite has no CRN (cascaded refinement network); give its released outputs "
                             "in fixed.folders.crn" if method == "crn" else
                             f"no model role {method!r} in this spec and no folder in fixed.folders"))
        return {"values": {}, "extra": extra, "artifacts": []}

    images = quantize(images)
    values, judged = judge(state.evaluator, state.scorer if method != "oracle" else None, images, maps,
                           state.num_classes, state.ignore_index, metrics, unit=unit)
    if method == "oracle":    # Tab. 5.5 has no FID for the real images; the real-vs-real floor is an extra
        judged["metric"] = state.scorer.name if state.scorer is not None else None
    extra.update(judged)
    d = ctx.artifacts_dir(key)
    if method != "oracle":
        img_dir, _ = write_pairs(images, maps, d / "folder")
        extra["folder_png"] = relative_to_results(img_dir)
    artifacts = _sheets(ctx, state, f, d, images, maps, real=method not in f.folders, extra=extra)
    return {"values": values, "extra": extra, "artifacts": artifacts}


def _generated_row(ctx, state, f: Fixed, method: str, key: str, extra: dict[str, Any], metrics: list[str]):
    """A row the suite generates (a GAN, or the guided NCSN++) with each of fixed.model_seeds trained
    copies of its models, judged copy by copy on the same maps and pooled (model_seeds.pool)."""
    d = ctx.artifacts_dir(key)
    per_copy, seeds, first = [], [], None
    for copy in range(f.model_seeds):
        if method == "ncsnpp":
            images, more = _ncsnpp_images(ctx, state, f, copy)
            seed = more["model_seed"]
        else:
            trained = ctx.model(method, seed_overrides(ctx.resolved.model(method).config.seed, copy))
            images = generate_with(trained.net, state.maps, state.num_classes, f.batch_size, ctx.device)
            more, seed = _gan_extras(trained), trained.resolved.config.seed
        images = quantize(images)
        values, judged = judge(state.evaluator, state.scorer, images, state.maps, state.num_classes,
                               state.ignore_index, metrics, unit="maps")
        folder = d / ("folder" if copy == 0 else f"folder_seed{seed}")
        img_dir, _ = write_pairs(images, state.maps, folder)
        per_copy.append((values, {**more, **judged, "folder_png": relative_to_results(img_dir)}))
        seeds.append(seed)
        first = images if first is None else first
    values, pooled = pool(per_copy, seeds)
    extra.update(source="suite run", **pooled)
    artifacts = _sheets(ctx, state, f, d, first, state.maps, real=True, extra=extra)
    return {"values": values, "extra": extra, "artifacts": artifacts}


def _gan_extras(trained) -> dict[str, Any]:
    """Which release and training produced a GAN row (the report's line for it)."""
    meta = trained.meta
    return dict(model=trained.name, model_hash=trained.hash, model_seed=trained.resolved.config.seed,
                model_train_seconds=meta.get("train_seconds"), model_steps=meta.get("steps"),
                model_update=meta.get("update"), model_adversarial=meta.get("adversarial"),
                model_vgg_loss=meta.get("vgg_loss"), model_betas=meta.get("betas"),
                model_lr_g=meta.get("lr_g"), model_lr_d=meta.get("lr_d"),
                model_parameters_generator=meta.get("parameters_generator"),
                model_modulation=(meta.get("net") or {}).get("modulation"))


def _sheets(ctx, state, f: Fixed, d: Path, images: torch.Tensor, maps: torch.Tensor, real: bool,
            extra: dict[str, Any]) -> list[Path]:
    """The row's triptych sheet and strip (the first model copy's images)."""
    k = min(f.sheet_maps, images.shape[0])
    sheet = triptych_sheet(state.real[:k] if real else None, maps[:k], [images[:k]], state.colors, d / "sheet.png")
    strip = save_image_grid(images[:k], d / "strip.png", nrow=k, scale=2)
    extra.update(sheet_png=relative_to_results(sheet), strip_png=relative_to_results(strip),
                 maps_png=relative_to_results(ctx.artifacts_dir("maps") / "maps.png"),
                 rank_deficient=f.allow_rank_deficient)
    return [sheet, strip]


def _ncsnpp_images(ctx, state, f: Fixed, copy: int = 0) -> tuple[torch.Tensor, dict[str, Any]]:
    """The guided score model's images for the maps, table5_3's sampler at fixed.s0 / fixed.snr, with
    model copy `copy` of the score model and its guide (0: the ones prepare loaded). Every copy
    samples from the same latents (map i's noise is drawn from the map index)."""
    score_model, guide = state.score_model, state.guide
    hashes = {role: state.models[role]["hash"] for role in ("score", "guide")}
    if copy:
        trained = {role: ctx.model(role, seed_overrides(ctx.resolved.model(role).config.seed, copy))
                   for role in ("score", "guide")}
        score_model, guide = score_model_for(trained["score"]), guide_for(trained["guide"])
        hashes = {role: t.hash for role, t in trained.items()}
    setting = synthesis_setting(f, {})
    n = state.maps.shape[0]
    out = synthesize(score_model, guide, state.maps, setting, list(range(n)),
                     (ctx.spec.seed, "semantic"), f.batch_size, ctx.device)
    guide_view = compliance(guide.clean_labels(out.images), state.maps, state.num_classes, state.ignore_index)
    more = {**setting.record(), "s0_scale": f.s0_scale, "nfe_per_sample": out.nfe,
            "seconds_sampling": out.seconds, "ms_per_image": 1000 * out.seconds / n,
            "guide_miou": guide_view["miou"], "guide_pixel_acc": guide_view["pixel_acc"],
            "model_seed": ctx.resolved.model("score").config.seed + copy,
            "score_hash": hashes["score"], "guide_hash": hashes["guide"]}
    return out.images, more
