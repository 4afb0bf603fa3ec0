"""Optuna samplers from a sweep spec, seeded per worker and attempt.

A fixed sampler seed makes a restarted worker replay the first trial it drew before (Optuna 5.0);
each worker's seed is derived from the sweep's seed, the study, the host, the worker's index and
the attempt (how many trials the study held when the worker started), so workers and restarts
draw differently and the same history still gives the same draws.
"""
from __future__ import annotations

from typing import Any

from repro.rng import seed_for
from repro.sweeps.spec import CategoricalParam, GridParam


def worker_seed(sweep_seed: int, study: str, host: str, index: int, attempt: int) -> int:
    return seed_for("sweep-worker", sweep_seed, study, host, index, attempt) % (2 ** 32)


def make_sampler(kind: str, space: dict[str, Any], budget: int, seed: int, n_objectives: int):
    import optuna

    if kind == "grid":
        # The study's record of its grid; which point a trial gets is the queue's (queue.py).
        grid = {n: list(p.values if isinstance(p, GridParam) else p.choices) for n, p in space.items()
                if isinstance(p, (GridParam, CategoricalParam))}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "tpe":
        # Optuna's default of 10 random start-up trials is a whole small budget.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, budget // 3)),
                                          multivariate=n_objectives == 1)
    if kind == "nsga2":
        # Population 50 (the default) would make a budget of a few dozen one random generation.
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, budget // 3)))
    raise ValueError(f"unknown sampler {kind!r}")
