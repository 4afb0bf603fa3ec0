"""The one verdict engine: a document's claim (a spec's `claims:` entry) judged on cell results
against the spread the suite measures.

The rule (README "How to read a verdict"): the claim's comparison is recomputed on
RESAMPLES = 1000 paired resamples of the units its cells store (maps, images, samples: the
`<metric>_per_sample` values or the runner's `<metric>_boot` replicates; seeds / repeats: the
`<metric>_runs` values). Replicate j of every cell resamples the same units (index set j of
repro.metrics.spread.resample_indices), so cells that share their maps or latents are compared
pair by pair. `share` is the fraction of resamples in which the comparison comes out as claimed:

    held           share >= 0.9
    did not hold   share <= 0.1
    inconclusive   otherwise, and whenever a cell stores no spread for the metric
    not judged     a cell or metric the claim needs was not measured at this profile

A cell computed with several trained copies of its models (repro.experiments.model_seeds) stores
`<metric>_by_model_seed`: replicate j then draws the copies with replacement (index set j of the
copies) and the units within each copy (index set j of the units), a two-stage resample in which
training noise is part of the spread, the copies' deviation widened for their small number
(copy_scale); the claim's detail names the number of copies.

Unit `none` marks a measurement without sampling noise (peak memory): its point value decides,
share 1 or 0. With `across`, the claim is judged in every group of those grid keys: held when
every group held, did not hold when any group did not hold, else inconclusive; `share` is then the
fraction of resamples in which every group agrees at once. A side whose `where` names an `across`
key keeps that value in every group (a fixed reference, e.g. plain EDM against each DG weight).

Pure functions on cell records ({"cell", "values", "extra"} dicts, as repro.results reads them);
nothing here reads files or imports a runner.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.stats import norm as normal
from scipy.stats import rankdata
from scipy.stats import t as student_t

from repro.metrics.spread import RESAMPLES, bootstrap_means, resample_indices
from repro.specs import CellSelector, Claim, match_cell

HELD_SHARE = 0.9          # held when at least this share of resamples agrees with the claim
INTERVAL = (5.0, 95.0)    # the percentiles of the resampled effect shown beside it
SEED_UNITS = ("seeds", "repeats")

Records = Sequence[Mapping[str, Any]]


class NotJudged(Exception):
    """A cell or a metric the claim needs is missing at this profile (the message says which)."""


@dataclass(frozen=True)
class Measured:
    """One cell's (or one picked side's) metric: its value and its aligned resampled replicates."""
    point: float
    reps: np.ndarray | None     # [RESAMPLES], or None: no spread stored
    n_units: int | None
    model_seeds: int = 1        # trained copies of the cell's models resampled with the units


@dataclass(frozen=True)
class Verdict:
    verdict: str                       # held | did not hold | inconclusive | not judged
    effect: float | None               # the claim's statistic on the cells' values
    interval: tuple[float, float] | None
    share: float | None                # fraction of resamples agreeing with the claim
    unit: str
    n_units: int | None
    n_resamples: int
    detail: str
    groups: tuple[tuple[str, "Verdict"], ...] = field(default_factory=tuple)
    metric: str = ""                   # the metric judged (the first of the claim's alternatives measured)


def word(share: float) -> str:
    """The verdict a share of agreeing resamples carries."""
    if share >= HELD_SHARE:
        return "held"
    if share <= 1 - HELD_SHARE:
        return "did not hold"
    return "inconclusive"


# ---- reading a cell's metric -----------------------------------------------------------------------

def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) else float(v)


def measure(record: Mapping[str, Any], metric: str, unit: str) -> Measured:
    """The metric of one cell record with the replicates its `unit` calls for."""
    values, extra = record.get("values") or {}, record.get("extra") or {}
    point = _number(values.get(metric, extra.get(metric)))
    copies = extra.get(f"{metric}_by_model_seed")
    if unit not in SEED_UNITS and unit != "none" and isinstance(copies, list) and copies:
        return _over_model_seeds(copies, metric, unit, record.get("cell") or {})
    if unit in SEED_UNITS:
        runs = extra.get(f"{metric}_runs")
        if isinstance(runs, list) and runs:
            point = float(np.mean(runs)) if point is None else point
            return Measured(point, bootstrap_means(runs) if len(runs) > 1 else None, len(runs))
    elif unit != "none":
        boot = extra.get(f"{metric}_boot")
        if isinstance(boot, list) and len(boot) >= RESAMPLES and point is not None:
            # a statistic recomputed on resamples with repeated units sits off its value (a Frechet
            # distance above it): the replicates are centred on the value, their spread kept
            reps = np.asarray(boot[:RESAMPLES], float)
            return Measured(point, reps - np.nanmean(reps) + point, extra.get("resample_n"))
        per = extra.get(f"{metric}_per_sample")
        if isinstance(per, list) and per:
            point = float(np.mean(per)) if point is None else point
            return Measured(point, bootstrap_means(per) if len(per) > 1 else None, len(per))
    if point is None:
        raise NotJudged(f"{metric} not measured in cell {_label(record.get('cell') or {})}")
    return Measured(point, None, None)


def _over_model_seeds(copies: list[Mapping[str, Any]], metric: str, unit: str,
                      cell: Mapping[str, Any]) -> Measured:
    """A cell pooled over K trained copies of its models: its value is the copies' mean; replicate j
    is the mean over the copies drawn by index set j of K of each drawn copy's replicate j."""
    ms = []
    for c in copies:
        extra = {f"{metric}_{k}": c[k] for k in ("per_sample", "boot") if c.get(k) is not None}
        ms.append(measure({"cell": cell, "values": {metric: c.get("value")}, "extra": {**extra, "resample_n": c.get("n")}},
                          metric, unit))
    point = float(np.mean([m.point for m in ms]))
    if any(m.reps is None for m in ms):
        return Measured(point, None, ms[0].n_units, len(ms))
    stacked = np.stack([m.reps for m in ms])                  # [K, RESAMPLES]
    drawn = resample_indices(len(ms), stacked.shape[1])       # [RESAMPLES, K]: the copies of replicate j
    every = stacked.mean(axis=0)                              # replicate j over all K copies
    picked = stacked[drawn, np.arange(stacked.shape[1])[:, None]].mean(axis=1)
    reps = every + copy_scale(len(ms)) * (picked - every)
    return Measured(point, reps, ms[0].n_units, len(ms))


def copy_scale(k: int) -> float:
    """How far the copies' resampled mean is pushed from the mean of all K copies: a bootstrap of K
    values spreads their mean by sqrt((K-1)/K) of its standard error and by normal, not Student-t,
    quantiles, so with K = 3 it calls a claim held at share >= 0.9 about twice as often as it should
    when the cells are equal (tests/test_model_seeds.py simulates it). Scaled by
    sqrt(K/(K-1)) * t_{K-1}(0.9) / z(0.9) (K = 3: 1.80, K = 5: 1.34, K = 10: 1.14), the share is the
    one-sided Student-t test's at the held threshold."""
    if k < 2:
        return 1.0
    q = HELD_SHARE
    return math.sqrt(k / (k - 1)) * float(student_t.ppf(q, k - 1) / normal.ppf(q))


def _label(cell: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items()) or "(the only cell)"


# ---- selecting cells -------------------------------------------------------------------------------

def _matches(cell: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Every key of `where` names the cell's grid value (a list: any of them), numbers compared as
    the specs compare grid values (repro.specs.match_cell)."""
    return all(any(match_cell(cell, {key: w}) for w in (want if isinstance(want, list) else [want]))
               for key, want in where.items())


def select(cells_by_spec: Mapping[str, Records], spec_id: str, selector: CellSelector | None,
           group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The records a selector names within one group (grid values of the `across` keys)."""
    spec = (selector.spec if selector else None) or spec_id
    where = dict(selector.where) if selector else {}
    if spec not in cells_by_spec:
        raise NotJudged(f"no results of spec {spec}")
    own_group = {k: v for k, v in group.items() if k not in where}
    return [r for r in cells_by_spec[spec] if _matches(r.get("cell") or {}, where)
            and _matches(r.get("cell") or {}, own_group)]


def side(cells_by_spec: Mapping[str, Records], spec_id: str, selector: CellSelector, group: Mapping[str, Any],
         metric: str, unit: str, name: str) -> Measured:
    """One side of a comparison: its single cell, or the best of several (pick min / max), re-picked in
    every resample so that the choice is part of the spread."""
    records = select(cells_by_spec, spec_id, selector, group)
    if not records:
        raise NotJudged(f"no finished cell matches {name} ({_label(selector.where)}"
                        + (f"; {_label(group)}" if group else "") + ")")
    if len(records) > 1 and selector.pick == "only":
        raise NotJudged(f"{name} matches {len(records)} cells; the claim needs pick: min or max")
    ms = [measure(r, metric, unit) for r in records]
    if len(ms) == 1:
        return ms[0]
    choose = np.min if selector.pick == "min" else np.max
    points = [m.point for m in ms]
    reps = None if any(m.reps is None for m in ms) else choose(np.stack([m.reps for m in ms]), axis=0)
    return Measured(float(choose(points)), reps, ms[0].n_units, max(m.model_seeds for m in ms))


# ---- the comparison kinds: (point statistic, replicated statistic, agreement) ---------------------

def _sign(claim: Claim) -> int:
    return 1 if claim.direction in ("higher", "increasing") else -1


def _spearman(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman's rho of x [k] with each row of ys [b, k] (average ranks for ties)."""
    rx = rankdata(x)
    ry = rankdata(ys, axis=1)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ry * rx).sum(axis=1) / np.where(den > 0, den, 1), 0.0)


def _stack(ms: list[Measured]) -> tuple[np.ndarray, np.ndarray | None]:
    points = np.array([m.point for m in ms], float)
    reps = None if any(m.reps is None for m in ms) else np.stack([m.reps for m in ms], axis=1)
    return points, reps


def _units(ms: Sequence[Measured]) -> tuple[int | None, int]:
    """(units resampled, most trained model copies resampled with them) of the cells compared."""
    return ms[0].n_units, max(m.model_seeds for m in ms)


def _judge_group(claim: Claim, cells_by_spec: Mapping[str, Records], spec_id: str, group: Mapping[str, Any]):
    """(effect, replicated effects or None, agreement of the point, agreement per replicate or None,
    (n_units, model copies))."""
    m, unit, s = claim.metric, claim.unit, _sign(claim)
    get = lambda sel, name: side(cells_by_spec, spec_id, sel, group, m, unit, name)  # noqa: E731
    if claim.kind in ("trend", "rank"):
        records = select(cells_by_spec, spec_id, claim.cells, group)
        key = claim.over if claim.kind == "trend" else claim.among
        records = [r for r in records if key in (r.get("cell") or {})]
        if len(records) < 2:
            raise NotJudged(f"{len(records)} finished cell(s) over {key}; a {claim.kind} needs two or more")
        records = sorted(records, key=lambda r: r["cell"][key])
        ms = [measure(r, m, unit) for r in records]
        points, reps = _stack(ms)
        if claim.kind == "trend":
            x = np.array([float(r["cell"][key]) for r in records])
            eff, effs = float(_spearman(x, points[None])[0]), None if reps is None else _spearman(x, reps)
            return eff, effs, s * eff > 0, None if effs is None else s * effs > 0, _units(ms)
        idx = next((i for i, r in enumerate(records) if _matches(r["cell"], claim.a.where)), None)
        if idx is None:
            raise NotJudged(f"the ranked row a ({_label(claim.a.where)}) is not among the cells over {key}")
        def rank_of(v: np.ndarray) -> np.ndarray:   # 1 + rows strictly better than row idx
            better = v < v[..., [idx]] if s < 0 else v > v[..., [idx]]
            return 1 + better.sum(axis=-1)
        eff = float(rank_of(points[None])[0])
        effs = None if reps is None else rank_of(reps).astype(float)
        return eff, effs, eff == claim.rank, None if effs is None else effs == claim.rank, _units(ms)
    a = get(claim.a, "a")
    if claim.kind == "threshold":
        eff, effs = a.point, a.reps
        agree = lambda v: s * (v - claim.value) > 0  # noqa: E731
        return eff, effs, bool(agree(eff)), None if effs is None else agree(effs), _units([a])
    b = get(claim.b, "b")
    sides = [a, b]
    both = a.reps is not None and b.reps is not None
    if claim.kind in ("better", "equal"):
        eff, effs = a.point - b.point, (a.reps - b.reps) if both else None
        agree = (lambda v: s * v > 0) if claim.kind == "better" else (lambda v: np.abs(v) <= claim.within)
    elif claim.kind == "ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            eff, effs = a.point / b.point, (a.reps / b.reps) if both else None
        def agree(v):   # a ratio of the other sign never agrees
            v = np.asarray(v, float)
            with np.errstate(divide="ignore", invalid="ignore"):
                return (v > 0) & (np.abs(np.log(np.where(v > 0, v, 1.0) / claim.published))
                                  <= math.log(max(claim.within, 1 / claim.within)))
    else:  # gain_contrast: relative change a vs b against c vs d
        c, d = get(claim.c, "c"), get(claim.d, "d")
        sides = [a, b, c, d]
        eff = (a.point - b.point) / b.point - (c.point - d.point) / d.point
        four = both and c.reps is not None and d.reps is not None
        effs = ((a.reps - b.reps) / b.reps - (c.reps - d.reps) / d.reps) if four else None
        agree = lambda v: s * v > 0  # noqa: E731
    return float(eff), effs, bool(agree(eff)), None if effs is None else agree(effs), _units(sides)


# ---- the verdict -----------------------------------------------------------------------------------

def groups_of(claim: Claim, cells_by_spec: Mapping[str, Records], spec_id: str) -> list[dict[str, Any]]:
    """The distinct values of the `across` keys among the cells the claim reads (one empty group without)."""
    if not claim.across:
        return [{}]
    first = claim.cells if claim.kind in ("trend", "rank") else claim.a
    seen: list[dict[str, Any]] = []
    for r in select(cells_by_spec, spec_id, first, {}):
        cell = r.get("cell") or {}
        if all(k in cell for k in claim.across):
            g = {k: cell[k] for k in claim.across}
            if g not in seen:
                seen.append(g)
    if not seen:
        raise NotJudged(f"no finished cell has the grid keys {', '.join(claim.across)}")
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return sorted(seen, key=lambda g: [(0, float(v), "") if numeric(v) else (1, 0.0, str(v)) for v in g.values()])


def _one(claim: Claim, eff: float, effs, point_ok: bool, agree, units: tuple[int | None, int]) -> Verdict:
    n_units, copies = units
    if claim.unit == "none":
        share = 1.0 if point_ok else 0.0
        return Verdict(word(share), eff, None, share, "none", None, 0,
                       "a measurement without sampling noise: its value decides")
    if effs is None or agree is None:
        return Verdict("inconclusive", eff, None, None, claim.unit, n_units, 0,
                       f"no spread measured: the cells store no per-{claim.unit.rstrip('s')} values of {claim.metric}")
    finite = np.isfinite(effs)
    lo, hi = (np.percentile(effs[finite], INTERVAL) if finite.any() else (math.nan, math.nan))
    share = float(np.mean(agree))
    trained = f" and of {copies} trained copies of the models" if copies > 1 else ""
    return Verdict(word(share), eff, (float(lo), float(hi)), share, claim.unit, n_units, len(effs),
                   f"{share:.0%} of {len(effs)} paired resamples of the {claim.unit}{trained} agree")


def metric_of(claim: Claim, cells_by_spec: Mapping[str, Records], spec_id: str) -> str:
    """`fid|fd_evalnet`: the first alternative that the spec's cells measure (a profile on the
    embedded data measures fd_evalnet where the paper profile measures fid)."""
    options = claim.metric.split("|")
    for m in options:
        for r in cells_by_spec.get(spec_id, []):
            values, extra = r.get("values") or {}, r.get("extra") or {}
            if m in values or m in extra or any(f"{m}_{s}" in extra for s in ("runs", "boot", "per_sample")):
                return m
    return options[0]


def judge(claim: Claim, cells_by_spec: Mapping[str, Records], spec_id: str) -> Verdict:
    """The verdict on one claim from the cell records of its spec (and of the specs it names)."""
    metric = metric_of(claim, cells_by_spec, spec_id)
    if metric != claim.metric:
        claim = claim.model_copy(update={"metric": metric})
    return replace(_judge(claim, cells_by_spec, spec_id), metric=metric)


def _judge(claim: Claim, cells_by_spec: Mapping[str, Records], spec_id: str) -> Verdict:
    try:
        groups = groups_of(claim, cells_by_spec, spec_id)
        judged = [(g, _judge_group(claim, cells_by_spec, spec_id, g)) for g in groups]
    except NotJudged as e:
        return Verdict("not judged", None, None, None, claim.unit, None, 0, str(e))
    verdicts = [(g, _one(claim, *j)) for g, j in judged]
    if len(verdicts) == 1 and not claim.across:
        return verdicts[0][1]
    words = [v.verdict for _, v in verdicts]
    overall = ("held" if all(w == "held" for w in words) else
               "did not hold" if "did not hold" in words else "inconclusive")
    agrees = [j[3] for _, j in judged]   # per group: agreement in each resample (None: no spread)
    if claim.unit == "none":
        joint = float(all(j[2] for _, j in judged))
    elif any(a is None for a in agrees):
        joint = None
    else:
        joint = float(np.mean(np.logical_and.reduce(np.stack(agrees))))
    effects = [v.effect for _, v in verdicts if v.effect is not None and math.isfinite(v.effect)]
    counts = ", ".join(f"{words.count(w)} {w}" for w in ("held", "did not hold", "inconclusive") if w in words)
    return Verdict(overall, float(np.median(effects)) if effects else None, None, joint, claim.unit,
                   verdicts[0][1].n_units, verdicts[0][1].n_resamples,
                   f"{len(verdicts)} groups of {', '.join(claim.across)}: {counts}; effect: the median over groups",
                   tuple((_label(g), v) for g, v in verdicts))
