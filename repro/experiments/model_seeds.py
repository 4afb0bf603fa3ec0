"""One cell over several independently trained seeds of its models: training noise in the spread.

A claim judged on one trained copy of each model says "with these weights": another thread
count, CPU or seed trains other weights, and a verdict that rests on one copy can move with them
(table5_4_5's rank claims did, issue 26). A runner that computes a cell with K copies of its
models (the model config's `seed`, `seed + 1`, ... `seed + K - 1`; `repro train` makes that many
when the config's `replicas` says so) pools them here:

- the cell's values are the means over the K copies;
- `<metric>_by_model_seed` keeps, per copy, its value and the per-unit values or replicates the
  claims engine resamples (`per_sample` / `boot`, on the shared index sets of the units);
- repro.claims resamples in two stages: the K copies with replacement (shared index set j of K),
  then the units within each copy (index set j of the units), so that replicate j of every cell
  draws the same copies and the same maps.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

SPREAD_SUFFIXES = ("_per_sample", "_boot")   # what repro.claims resamples within one copy


def seed_overrides(base_seed: int, copy: int) -> dict[str, Any] | None:
    """The model settings of copy `copy` (0: the config as it is, else its seed moved by `copy`)."""
    return None if copy == 0 else {"seed": int(base_seed) + copy}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _mean_scalar(vals: list[Any]) -> Any:
    """Equal values stay as they are (counts, names); differing numbers become their mean, other
    differing values (a model's hash) the list of them, copy by copy."""
    if all(v == vals[0] for v in vals):
        return vals[0]
    if all(_is_number(v) for v in vals):
        return float(np.mean(vals))
    return list(vals)


def _mean_list(lists: list[list[Any]]) -> list[Any]:
    """Element-wise mean of equally long number lists (per-class IoUs; None: not present in a copy)."""
    out = []
    for items in zip(*lists):
        nums = [float(v) for v in items if _is_number(v) and not math.isnan(float(v))]
        out.append(float(np.mean(nums)) if nums else None)
    return out


def pool(per_copy: list[tuple[dict[str, float], dict[str, Any]]], seeds: list[int]
         ) -> tuple[dict[str, float], dict[str, Any]]:
    """(values, extra) of one cell computed with each copy of its models -> the cell's (values, extra)
    over the copies. One copy: returned as it is."""
    if len(per_copy) != len(seeds) or not per_copy:
        raise ValueError(f"{len(per_copy)} results for {len(seeds)} model seeds")
    if len(per_copy) == 1:
        return per_copy[0]
    values0, extra0 = per_copy[0]
    values = {m: float(np.mean([v[m] for v, _ in per_copy])) for m in values0}
    extra: dict[str, Any] = {}
    for key, v0 in extra0.items():
        if key.endswith(SPREAD_SUFFIXES):
            continue
        vals = [e.get(key) for _, e in per_copy]
        if isinstance(v0, list) and all(isinstance(v, list) and len(v) == len(v0) for v in vals) \
                and all(_is_number(x) or x is None for v in vals for x in v):
            extra[key] = _mean_list(vals)
        elif not isinstance(v0, (list, dict)):
            extra[key] = _mean_scalar(vals)
        else:
            extra[key] = v0
    spread = {key[: -len(suf)] for key in extra0 for suf in SPREAD_SUFFIXES if key.endswith(suf)}
    for metric in sorted(spread):
        extra[f"{metric}_by_model_seed"] = [
            {"seed": s, "value": v.get(metric, e.get(metric)), "n": e.get("resample_n"),
             **{suf[1:]: e[metric + suf] for suf in SPREAD_SUFFIXES if e.get(metric + suf) is not None}}
            for s, (v, e) in zip(seeds, per_copy)]
    extra["model_seeds"] = list(seeds)
    extra["values_by_model_seed"] = [{"seed": s, **v} for s, (v, _) in zip(seeds, per_copy)]
    return values, extra
