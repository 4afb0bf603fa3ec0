"""`repro sample semantic --map drawing.png`: images from a drawn colour map with the trained
models of a profile (those `table5_3` uses at that profile, with its sampling settings)."""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro import environment, results
from repro.atomic import atomic_write_text, check_writable
from repro.data import dataset_info
from repro.data.palette import palette, read_map
from repro.engine.run import preflight
from repro.environment import resolve_device
from repro.errors import UserError
from repro.experiments import resolve_spec
from repro.experiments.semantic.guidance_scale_sweep import Fixed
from repro.experiments.semantic.scoring import compliance, segment, triptych_sheet
from repro.experiments.semantic.settings import synthesis_setting
from repro.experiments.semantic.synthesis import check_compatible, guide_for, synthesize
from repro.images import save_image_grid
from repro.trainers.ensure import ensure_model
from repro.tracking.runs import Tracker
from repro.trainers.score_model import score_model_for

SPEC = "table5_3"   # the models and sampling settings of the s0 sweep (kind guidance_scale_sweep) at the profile


@dataclass
class FromMapResult:
    out_dir: Path
    files: list[Path]
    notes: list[str]
    miou: list[float]
    pixel_acc: list[float]
    mlflow_run_id: str | None
    seconds: float


def _map_resolution(resolved) -> tuple[int, int]:
    res = resolved.spec.dataset.resolution
    if res is None:
        res = dataset_info(resolved.spec.dataset.name).default_resolution
    return int(res[0]), int(res[1])


def sample_from_map(map_path: Path, *, profile: str, n: int, s0: float | None, out_dir: Path, device: str,
                    seed: int = 0, overrides: dict[str, Any] | None = None, progress: bool = True) -> FromMapResult:
    if n < 1:
        raise UserError(f"-n {n}: need at least one image")
    if s0 is not None and not (s0 >= 0 and s0 < float("inf")):
        raise UserError(f"--s0 {s0}: must be a finite number >= 0")
    if seed < 0:
        raise UserError(f"--seed {seed}: must be 0 or more")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a folder")
    check_writable(out_dir, "--out")   # read-only or full: said now, not after sampling
    resolved = resolve_spec(SPEC, profile, overrides)
    dataset = resolved.spec.dataset.name
    labels, note = read_map(map_path, dataset, _map_resolution(resolved))   # bad colours fail here, before work
    dev = resolve_device(device)
    preflight(resolved)
    fixed = Fixed.model_validate(resolved.spec.fixed)
    if s0 is not None:
        fixed = fixed.model_copy(update={"s0": s0})
    setting = synthesis_setting(fixed, {})

    def trained_model(role: str):
        name, settings, inject = resolved.model_args(role)
        return ensure_model(name, profile, overrides=settings, inject=inject, device=dev, progress=progress)

    trained = {role: trained_model(role) for role in ("score", "guide", "evaluator")}
    score_model, guide = score_model_for(trained["score"]), guide_for(trained["guide"])
    maps = torch.as_tensor(labels, dtype=torch.long).unsqueeze(0).repeat(n, 1, 1)
    check_compatible(score_model, guide, maps)
    out = synthesize(score_model, guide, maps, setting, list(range(n)), (seed, "sample-semantic"),
                     fixed.batch_size, dev)
    info = dataset_info(dataset)
    pred = segment(trained["evaluator"].net, out.images)
    per = [compliance(pred[i: i + 1], maps[i: i + 1], info.num_classes, info.ignore_index) for i in range(n)]
    colors, _ = palette(dataset)

    out_dir.mkdir(parents=True, exist_ok=True)
    files = [save_image_grid(out.images[i: i + 1], out_dir / f"sample_{i:03d}.png", nrow=1) for i in range(n)]
    files.append(triptych_sheet(None, maps[:1], [out.images[i: i + 1] for i in range(n)], colors,
                                out_dir / "sheet.png"))
    record = {"map": str(map_path), "profile": profile, "n": n, "seed": seed, "dataset": dataset,
              "resized": note, "setting": setting.record(), "seconds": out.seconds,
              "evaluator": trained["evaluator"].name,
              "miou": [p["miou"] for p in per], "pixel_acc": [p["pixel_acc"] for p in per],
              "models": {r: {"name": t.name, "hash": t.hash} for r, t in trained.items()},
              "git_commit": results.git_commit(), "environment": environment.record()}
    info_path = out_dir / "samples.json"
    atomic_write_text(info_path, json.dumps(record, indent=2, default=str))
    files.append(info_path)
    tags = {"repro.command": "sample semantic", "repro.profile": profile, "repro.device": str(dev),
            "repro.dataset": dataset, "repro.git_commit": results.git_commit(), "repro.host": platform.node()}
    params = {"map": str(map_path), "n": n, "seed": seed, **setting.record()}
    with Tracker("sample-semantic", f"{Path(map_path).stem}-{profile}", tags=tags, params=params) as tr:
        if tr.parent is not None:
            tr.parent.log_metrics({"miou_mean": sum(record["miou"]) / n, "pixel_acc_mean": sum(record["pixel_acc"]) / n,
                                   "seconds": out.seconds})
            for f in files:
                tr.parent.log_artifact(f)
        run_id = tr.run_id
    return FromMapResult(out_dir, files, [note] if note else [], record["miou"], record["pixel_acc"], run_id,
                         out.seconds)
