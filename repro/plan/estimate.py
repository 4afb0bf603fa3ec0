"""Work x calibration -> estimated wall time and device memory."""
from __future__ import annotations

from dataclasses import dataclass, field

from repro.plan.store import Calibration
from repro.work import CellWork


@dataclass
class Estimate:
    seconds: float = 0.0                 # of the items the calibration covers
    missing: list[str] = field(default_factory=list)   # networks / ops it does not cover
    unknown: list[str] = field(default_factory=list)   # work that could not be counted
    scaled: int = 0                      # items timed at another batch and scaled per image
    peak_memory_mb: float | None = None
    memory_kind: str | None = None
    dominant: tuple[str, str, float] | None = None   # (network, op, images/s) of the costliest item

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unknown


def estimate(work: CellWork, cal: Calibration | None) -> Estimate:
    est = Estimate(unknown=list(dict.fromkeys(work.unknown)))
    dominant_s = 0.0
    for w in work.items:
        entry, per_call = (None, None) if cal is None else cal.lookup(w.net.key, w.op, w.batch)
        if entry is None:
            tag = f"{w.net.key} {w.op}"
            if tag not in est.missing:
                est.missing.append(tag)
            continue
        seconds = per_call * w.images / w.batch
        est.seconds += seconds
        if seconds > 0 and (est.dominant is None or seconds > dominant_s):
            est.dominant, dominant_s = (w.net.name, w.op, w.batch / per_call), seconds
        est.scaled += entry["batch"] != w.batch
        mem = entry.get("peak_memory_mb")
        if mem is not None and (est.peak_memory_mb is None or mem > est.peak_memory_mb):
            est.peak_memory_mb, est.memory_kind = float(mem), entry.get("memory_kind")
    return est


def fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def fmt_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"
