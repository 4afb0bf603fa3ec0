"""`repro sample ddpm --mask mask.png`: images from a test mask, an edited mask or a hand painting in
colour-book colours (001 paper Sec. 4.4, 5.2.2, 5.2.3), with the mask-guided DDPM that `bdd_metrics`
uses at the chosen profile and its sampling settings. The sheet shows the mask and the samples side by side."""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro import environment, results
from repro.atomic import atomic_write_text, check_writable
from repro.data.colorbook import ColorBook
from repro.environment import resolve_device
from repro.errors import UserError
from repro.experiments import resolve_spec
from repro.experiments.bdd.sampling import generate
from repro.guidance.classifier_free import Guidance
from repro.images import save_image_grid
from repro.sampling.ddpm import LOOPS
from repro.trainers.ensure import ensure_model
from repro.tracking.runs import Tracker
from repro.trainers.mask_ddpm import _size, mask_ddpm_for

SPEC = "bdd_metrics"


@dataclass
class FromMaskResult:
    out_dir: Path
    files: list[Path]
    notes: list[str]
    seconds: float
    record: dict


def sample_from_mask(mask_path: Path, *, profile: str, n: int, guidance: float | None, convention: str | None,
                     out_dir: Path, device: str, seed: int = 0, colorbook: Path | None = None,
                     loop: str | None = None, overrides: dict[str, Any] | None = None,
                     progress: bool = True) -> FromMaskResult:
    if n < 1:
        raise UserError(f"-n {n}: need at least one image")
    if seed < 0:
        raise UserError(f"--seed {seed}: must be 0 or more")
    if guidance is not None and not math.isfinite(guidance):
        raise UserError(f"--guidance {guidance}: must be a finite number")
    if convention is not None:
        Guidance(0.0, convention)   # an unknown convention is refused before any training
    if loop is not None and loop not in LOOPS:   # and so is an unknown loop
        raise UserError(f"--loop {loop!r}: use one of {', '.join(LOOPS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a folder")
    check_writable(out_dir, "--out")   # read-only or under a file: said now, not after training and sampling
    resolved = resolve_spec(SPEC, profile, overrides)
    f = resolved.spec.fixed
    book = ColorBook.load(colorbook)
    dev = resolve_device(device)
    name, model_overrides, inject = resolved.model_args("ddpm")
    size = _size(resolved.model("ddpm"))
    labels_np = book.read_mask(mask_path, None)   # read first: a bad mask fails before any training
    notes = []
    if labels_np.shape != size:
        notes.append(f"mask {Path(mask_path).name} is {labels_np.shape[1]}x{labels_np.shape[0]} (WxH); resized to "
                     f"{size[1]}x{size[0]} nearest-neighbour, the model's resolution")
        labels_np = book.read_mask(mask_path, size)
    t0 = time.perf_counter()
    trained = ensure_model(name, profile, overrides=model_overrides, inject=inject, device=dev, progress=progress)
    model = mask_ddpm_for(trained)
    if book.num_classes != model.num_classes:
        raise UserError(f"colour book {book.path} has {book.num_classes} classes, the model {model.num_classes}")
    g = Guidance(float(f["guidance"] if guidance is None else guidance), convention or f["guidance_convention"])
    use_loop = loop or f["loop"]
    labels = torch.from_numpy(labels_np).long().expand(n, *labels_np.shape).clone()
    gen = generate(model, labels, g, use_loop, batch_size=int(f["batch_size"]), seed=seed, device=dev)
    out_dir.mkdir(parents=True, exist_ok=True)
    mask_rgb = torch.from_numpy(book.to_rgb(labels_np)).permute(2, 0, 1).float()[None] / 255
    files = [save_image_grid(torch.cat([mask_rgb, gen.images]), out_dir / "sheet.png", nrow=n + 1, pad=2,
                             scale=max(1, 256 // size[0]))]
    book.write_mask(labels_np, out_dir / "mask.png")
    files.append(out_dir / "mask.png")
    for i in range(n):
        files.append(save_image_grid(gen.images[i: i + 1], out_dir / f"sample_{i}.png", pad=0))
    record = {"mask": str(mask_path), "profile": profile, "model": name, "model_hash": trained.hash, "n": n,
              "seed": seed, "loop": use_loop, "nfe": gen.nfe, "device": str(dev), "colorbook": str(book.path),
              "classes_present": sorted(int(c) for c in set(labels_np.ravel().tolist())),
              "seconds_sampling": gen.seconds, **g.record(), "notes": notes,
              "git_commit": results.git_commit(), "environment": environment.record()}
    atomic_write_text(out_dir / "info.json", json.dumps(record, indent=2))
    files.append(out_dir / "info.json")
    tags = {"repro.command": "sample ddpm", "repro.profile": profile, "repro.device": str(dev),
            "repro.dataset": resolved.spec.dataset.name, "repro.git_commit": results.git_commit(),
            "repro.host": platform.node()}
    params = {k: v for k, v in record.items() if k not in ("notes", "classes_present", "seconds_sampling")}
    with Tracker("sample-ddpm", f"{Path(mask_path).stem}-{profile}", tags=tags, params=params) as tr:
        if tr.parent is not None:
            tr.parent.log_metrics({"seconds": gen.seconds})
            for path in files:
                tr.parent.log_artifact(path)
        record["mlflow_run_id"] = tr.run_id
    return FromMaskResult(out_dir, files, notes, time.perf_counter() - t0, record)
