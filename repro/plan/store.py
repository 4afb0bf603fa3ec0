"""Calibrations stored per device: results/calibration/<device-slug>.json, with the device's
name and the date of every entry, so that a plan without --calibrate says which it used."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from repro.atomic import atomic_write_text
from repro.environment import cpu_model
from repro.results import results_root


def calibration_dir() -> Path:
    return results_root() / "calibration"


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def device_identity(device, start_cuda: bool = True) -> tuple[str, str]:
    """(slug, description) of a torch.device: the CPU model and thread count, or the CUDA device name.
    With start_cuda=False the CUDA name comes from NVML (no CUDA context in this process: the
    amp_benchmark arms measure device memory from a parent without one); ("", ...) when unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index or 0
        name = torch.cuda.get_device_name(index) if start_cuda else _nvml_name(index)
        if name is None:
            return "", f"cuda:{index} (name unknown without a CUDA context; nvidia-ml-py not installed)"
        return f"cuda-{slugify(name)}", f"cuda:{index} ({name})"
    model = cpu_model()
    threads = torch.get_num_threads()
    return f"cpu-{slugify(model)}-{threads}t", f"cpu ({model}; {threads} torch threads)"


def _nvml_name(index: int) -> str | None:
    """The name NVML gives the index-th visible CUDA device (CUDA_VISIBLE_DEVICES mapped), or None."""
    try:
        import pynvml
    except ImportError:
        return None
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    try:
        pynvml.nvmlInit()
        try:
            if visible:
                v = visible[index].strip()
                handle = (pynvml.nvmlDeviceGetHandleByUUID(v) if not v.isdigit()
                          else pynvml.nvmlDeviceGetHandleByIndex(int(v)))
            else:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
        finally:
            pynvml.nvmlShutdown()
    except Exception:   # noqa: BLE001 - any NVML failure: the name is unknown
        return None
    return name.decode() if isinstance(name, bytes) else str(name)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Calibration:
    """Measured seconds per call of (network, op, batch) on one device."""

    slug: str
    device: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def entry_key(net_key: str, op: str, batch: int) -> str:
        return f"{net_key}|{op}|{batch}"

    def put(self, net_key: str, op: str, batch: int, **measured: Any) -> None:
        self.entries[self.entry_key(net_key, op, batch)] = {"net": net_key, "op": op, "batch": int(batch),
                                                            "measured_at": now_iso(), **measured}

    def lookup(self, net_key: str, op: str, batch: int) -> tuple[dict[str, Any] | None, float | None]:
        """(entry, seconds per call at `batch`): the entry at this batch, else the nearest batch of the
        same network and op scaled per image (linear in the batch; marked by entry['batch'] != batch)."""
        hit = self.entries.get(self.entry_key(net_key, op, batch))
        if hit is not None:
            return hit, float(hit["seconds_per_call"])
        same = [e for e in self.entries.values() if e["net"] == net_key and e["op"] == op]
        if not same:
            return None, None
        near = min(same, key=lambda e: abs(e["batch"] - batch))
        return near, float(near["seconds_per_call"]) * batch / near["batch"]

    @property
    def latest(self) -> str | None:
        return max((e["measured_at"] for e in self.entries.values()), default=None)

    def to_json(self) -> str:
        return json.dumps({"device": self.device, "slug": self.slug, "updated": self.latest,
                           "entries": dict(sorted(self.entries.items()))}, indent=2)


def calibration_path(slug: str) -> Path:
    return calibration_dir() / f"{slug}.json"


def load_calibration(slug: str, device: str = "") -> Calibration:
    """The stored calibration of a device (empty when there is none)."""
    path = calibration_path(slug)
    if not path.exists():
        return Calibration(slug, device)
    doc = json.loads(path.read_text())
    return Calibration(doc.get("slug", slug), doc.get("device", device), doc.get("entries", {}))


def save_calibration(cal: Calibration) -> Path:
    """Merge `cal` into the stored file (newer entries replace older ones of the same key)."""
    stored = load_calibration(cal.slug, cal.device)
    stored.entries.update(cal.entries)
    stored.device = cal.device or stored.device
    path = calibration_path(cal.slug)
    atomic_write_text(path, stored.to_json())
    return path


def calibrations_newest_first() -> list[Calibration]:
    """Every stored calibration, the one with the most recent entry first."""
    folder = calibration_dir()
    cals = [load_calibration(p.stem) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted((c for c in cals if c.latest), key=lambda c: c.latest, reverse=True)


def latest_calibration() -> Calibration | None:
    """The calibration file with the most recent entry, of any device."""
    cals = calibrations_newest_first()
    return cals[0] if cals else None
