"""`repro evaluate`: score a folder of generated images against their label maps with table5_4_5's
evaluator and Frechet metric (thesis Sec. 5.4.5: every method judged by the same segmenter and
FID), as table5_4_5's own rows are judged (repro.experiments.semantic.folder_scoring)."""
from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro import results
from repro.atomic import atomic_write_text
from repro.data import dataset_info
from repro.engine.run import RunContext
from repro.environment import resolve_device
from repro.errors import UserError
from repro.experiments import resolve_spec
from repro.experiments.quality import quality_scorer, real_images
from repro.experiments.semantic.folder_scoring import judge, read_folder_pairs, read_image_folder
from repro.metrics.inception import require_inception_weights
from repro.tracking.runs import Tracker

SPEC = "table5_4_5"   # its profile's evaluator, reference set and metrics judge a folder
METRIC_NAMES = ("fid", "fd_evalnet", "miou", "pixel_acc")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass
class EvaluationResult:
    values: dict[str, float]
    path: Path
    mlflow_run_id: str | None
    record: dict[str, Any]


def parse_metrics(text: str | None, default: list[str]) -> list[str]:
    if text is None:
        return list(default)
    metrics = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown or not metrics:
        raise UserError(f"--metrics {text!r}: use a comma-separated subset of {', '.join(METRIC_NAMES)}")
    if "fid" in metrics and "fd_evalnet" in metrics:
        raise UserError("--metrics: give fid or fd_evalnet, not both (one Frechet distance per evaluation)")
    return metrics


def _name(name: str | None, images_dir: Path) -> str:
    if name is None:
        name = re.sub(r"[^a-z0-9_\-]+", "-", images_dir.resolve().name.lower()).strip("-") or "folder"
        if images_dir.resolve().name == "images" and images_dir.resolve().parent.name:
            name = re.sub(r"[^a-z0-9_\-]+", "-", images_dir.resolve().parent.name.lower()).strip("-") or name
    if not _NAME_RE.match(name):
        raise UserError(f"--name {name!r}: use lowercase letters, digits, '_' or '-'")
    return name


def evaluate_folder(images_dir: str | Path, maps_dir: str | Path, *, reference: str | Path | None = None,
                    metrics: str | None = None, name: str | None = None, profile: str = "smoke",
                    device: str = "auto", progress: bool = True,
                    overrides: dict[str, Any] | None = None) -> EvaluationResult:
    """Score a folder of generated images with table5_4_5's evaluator and Frechet metric at
    `profile`; writes results/evaluations/<name>-<profile>.json and an MLflow run."""
    t0 = time.perf_counter()
    images_dir, maps_dir = Path(images_dir), Path(maps_dir)
    resolved = resolve_spec(SPEC, profile, overrides)
    spec = resolved.spec
    chosen = parse_metrics(metrics, spec.metrics)
    name = _name(name, images_dir)
    info = dataset_info(spec.dataset.name)
    size = tuple(spec.dataset.resolution or info.default_resolution)
    pairs = read_folder_pairs(images_dir, maps_dir, spec.dataset.name, info.num_classes, size)   # before any work
    ref = read_image_folder(Path(reference), size) if reference is not None else None
    if "fid" in chosen:
        require_inception_weights(spec.fixed.get("fid_weights"))
    dev = resolve_device(device)
    ctx = RunContext(resolved=resolved, device=dev, progress=progress)
    trained = ctx.model("evaluator")
    evaluator = trained.net
    scorer = None
    if "fid" in chosen or "fd_evalnet" in chosen:
        real = ref if ref is not None else real_images(ctx, spec.fixed["n_reference"])
        scorer = quality_scorer(ctx, chosen, real, spec.fixed["allow_rank_deficient"])
    values, extra = judge(evaluator, scorer, pairs.images, pairs.maps, info.num_classes, info.ignore_index, chosen)
    record = {"name": name, "images": str(images_dir.resolve()), "maps": str(maps_dir.resolve()),
              "reference": str(Path(reference).resolve()) if reference is not None else
              f"{spec.dataset.name} {spec.dataset.split} (first {spec.fixed['n_reference']} images)",
              "profile": profile, "spec": SPEC, "metrics": chosen, "values": values, "extra": extra,
              "evaluator": {"name": trained.name, "hash": trained.hash}, "dataset": spec.dataset.name,
              "resolution": list(size), "files": pairs.names, "seconds": time.perf_counter() - t0,
              "device": str(dev), "git_commit": results.git_commit()}
    out = results.results_root() / "evaluations" / f"{name}-{profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=2, default=str))
    tags = {"repro.command": "evaluate", "repro.profile": profile, "repro.device": str(dev),
            "repro.dataset": spec.dataset.name, "repro.git_commit": results.git_commit(), "repro.host": platform.node()}
    params = {"images": record["images"], "maps": record["maps"], "reference": record["reference"],
              "metrics": ",".join(chosen), "evaluator": trained.name, "n_images": len(pairs.names)}
    with Tracker("evaluate", f"{name}-{profile}", tags=tags, params=params) as tr:
        if tr.parent is not None:
            tr.parent.log_metrics(values)
            tr.parent.log_artifact(out)
        run_id = tr.run_id
    return EvaluationResult(values, out, run_id, record)
