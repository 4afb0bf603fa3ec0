"""Evaluating one sampler setting on a trained score model: repeated sampling runs, the quality
metric's mean and standard deviation over runs (as the slides report), NFE, wall time, grids, and
the per-unit values the claims engine resamples (repro.claims; DESIGN.md, issue 26)."""
from __future__ import annotations

from typing import Any

import torch

from repro.experiments.score.sampling import Draw, SamplerSetting, cell_outputs, draw_sharded, mean_std
from repro.metrics.spread import compact
from repro.metrics.spread import bootstrap_statistic


def evaluate_setting(ctx, scoring: dict[str, Any], model, setting: SamplerSetting, key: str,
                     fixed) -> tuple[dict[str, float], dict[str, Any], list, Draw] | None:
    """`fixed`: the runner's typed settings (n_runs, n_samples, batch_size, grid_samples, grid_nrow).
    Sample `n_runs` times (run r's batch j has the same seed in every cell: common random
    numbers), score each run; returns (values, extra, artifacts, the first run's draw). Under
    torchrun each rank draws its share of every run's batches and rank 0 alone scores and returns;
    the other ranks get None (repro.engine.ranks: the same numbers for any number of ranks)."""
    scorer = scoring["scorer"]
    scores, seconds, nfes, classes, first, units = [], [], [], [], None, {}
    for r in range(fixed.n_runs):
        with torch.no_grad():
            draw = draw_sharded(ctx, model, setting, fixed.n_samples, fixed.batch_size, r)
        if draw is None:   # not rank 0: its batches went to rank 0
            continue
        if r == 0:   # run 0's samples are the resampled units (see sample_units)
            score, units = sample_units(scorer, draw.images)
            scores.append(score)
        else:
            scores.append(scorer(draw.images))
        classes.append(scorer.class_statistics(draw.images))
        seconds.append(draw.seconds)
        nfes.append(draw.nfe)
        first = first or draw
    if first is None:
        return None
    mean, std = mean_std(scores)
    values = {scorer.name: mean, f"{scorer.name}_std": std, "nfe": sum(nfes) / len(nfes),
              "seconds": sum(seconds) / len(seconds)}
    for k in classes[0]:  # class entropy / confidence, averaged over runs
        values[k] = sum(c[k] for c in classes) / len(classes)
    artifacts, extra = cell_outputs(ctx, key, first, fixed.grid_samples, fixed.grid_nrow)
    extra.update(units)
    extra.update({"metric": scorer.name, f"{scorer.name}_runs": compact(scores), "fid_inputs": scorer.inputs, "seconds_runs": seconds,
                  "n_runs": fixed.n_runs, "n_samples": fixed.n_samples, "n_reference": scorer.n_real,
                  "sampler_setting": setting.label(), "discretisation": setting.discretisation if setting.method != "ode" else None,
                  "predictor_steps": setting.steps if setting.method != "ode" else None,
                  "ms_per_sample": 1000.0 * sum(seconds) / (len(seconds) * fixed.n_samples),
                  "real_floor": scoring["floor"],
                  **{f"real_{k}": v for k, v in scoring.get("real_classes", {}).items()}})
    return values, extra, artifacts, first


def model_extra(trained) -> dict[str, Any]:
    meta = trained.meta
    return {"model": trained.name, "model_hash": trained.hash, "model_sha256": meta.get("sha256"),
            "sde": meta["sde"]["name"], "sigma_max": meta["sde"].get("sigma_max"),
            "model_val_dsm": meta.get("val_dsm"), "model_parameters": meta.get("parameters")}



def sample_units(scorer, images: torch.Tensor) -> tuple[float, dict[str, Any]]:
    """(the Frechet distance of `images`, the per-unit values a claim resamples over the samples).

    The units are the samples of run 0 (sample i has the same seed in every cell: common random
    numbers, so the engine's resamples are paired across cells). Stored: the Frechet distance's
    replicates on the shared index sets (`<metric>_boot`, FrechetScorer.with_replicates) and, with a
    classifying evaluator, the class entropy's replicates (`class_entropy_boot`: entropy of the mean
    predicted distribution, not a mean of per-sample values) and each sample's top-class
    probability (`confidence_per_sample`). Replicates of run 0, not of the run average: the value
    in `values` averages the runs, whose spread over seeds is `<metric>_runs`; replicates of every
    run would cost n_runs times the eigendecompositions (2048-dim at the paper profile)."""
    score, boot = scorer.with_replicates(images)
    n = int(images.shape[0])
    units: dict[str, Any] = {f"{scorer.name}_boot": compact(boot), "resample_unit": "samples", "resample_n": n}
    if scorer.classify is not None:
        with torch.no_grad():
            probs = torch.softmax(scorer.classify(images).double(), dim=1)

        def entropy(idx) -> float:
            mean = probs[torch.as_tensor(idx)].mean(0)
            return float(-(mean * mean.clamp_min(1e-12).log()).sum())

        units["class_entropy_boot"] = compact(bootstrap_statistic(n, entropy))
        units["confidence_per_sample"] = compact(probs.max(1).values.tolist())
    return score, units
