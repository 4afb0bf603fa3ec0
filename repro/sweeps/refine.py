"""The refinement stage of a grid sweep: one name searched between the grid neighbours of the best point.

dg-epsilon: after the w_DG_1st x b grid, b is searched (TPE) between the grid values on either
side of the best cell's b, with w_DG_1st fixed at the best cell's. The refine study is
`<study>-refine`; its search space is part of its identity, so a grid whose best point moved
gets a new refine study rather than mixing two ranges.
"""
from __future__ import annotations

import math
from typing import Any

from repro.errors import UserError
from repro.sweeps.spec import CategoricalParam, FloatParam, GridParam, ResolvedSweep


def refine_study_name(main_study: str) -> str:
    return f"{main_study}-refine"


def refine_space(rs: ResolvedSweep, main_study) -> dict[str, Any]:
    """The refine stage's space from the grid study's best COMPLETE trial."""
    from optuna.trial import TrialState

    cfg = rs.sweep.refine
    if cfg is None:
        raise UserError(f"sweep {rs.id} has no refine stage")
    if len(rs.metrics) != 1:
        raise UserError(f"sweep {rs.id}: refine needs one objective, the sweep has {len(rs.metrics)}")
    done = main_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise UserError(f"sweep {rs.id}: the grid study {main_study.study_name!r} has no finished trial to refine "
                        f"around; run `repro sweep {rs.id} --profile {rs.profile}` first")
    best = main_study.best_trial
    p = rs.space[cfg.param]
    values = sorted(float(v) for v in (p.values if isinstance(p, GridParam) else p.choices))
    center = float(best.params[cfg.param])
    i = values.index(min(values, key=lambda v: abs(v - center)))
    left = values[i - 1] if i > 0 else center - (values[1] - values[0])
    right = values[i + 1] if i + 1 < len(values) else center + (values[-1] - values[-2])
    step = _round_step((right - left) / cfg.lattice)
    low, high = math.ceil(left / step) * step, math.floor(right / step) * step
    space: dict[str, Any] = {n: CategoricalParam(type="categorical", choices=[best.params[n]])
                             for n in rs.space if n != cfg.param}
    space[cfg.param] = FloatParam(type="float", low=float(f"{low:.12g}"), high=float(f"{high:.12g}"),
                                  step=step)
    return space


def _round_step(raw: float) -> float:
    """A step of 1, 2 or 5 x 10^k not above raw, so lattice values print exactly."""
    k = math.floor(math.log10(raw))
    for m in (5, 2, 1):
        if m * 10 ** k <= raw:
            return float(f"{m * 10 ** k:.1e}")
    return float(f"{10 ** k:.1e}")
