"""Work units of the mixed-precision benchmark (amp_benchmark), before the run."""
from __future__ import annotations

from repro.data.split_sizes import split_size
from repro.experiments.cost import KindEstimator, SpecContext, add_sigma_max_pairs, add_training_loop
from repro.trainers.score_sde import parse
from repro.work import TRAIN, CellWork, training_steps


def _batch(ctx: SpecContext, device_type: str) -> tuple[int, str]:
    if ctx.fixed["batch_size"] is not None:
        return int(ctx.fixed["batch_size"]), "fixed.batch_size"
    _, ts = parse(ctx.model("score"))
    if device_type == "cuda":
        return ts.batch_size, "searched on CUDA at run time; estimated at the model's train.batch_size"
    return ts.batch_size, "the model's train.batch_size"


def _prepare(ctx: SpecContext) -> CellWork:
    work = CellWork()
    net, _ = parse(ctx.model("score"))
    if ctx.fixed["sigma_max"] is None and net.sigma_max is None:   # estimated once, in prepare
        add_sigma_max_pairs(work, ctx.model("score"), net.sigma_max_pairs)
    return work


def _amp_benchmark(ctx: SpecContext, cell: dict) -> CellWork:
    f, work = ctx.fixed, CellWork()
    precision = str(cell.get("precision", "fp32"))
    device_type = ctx.device_type
    if precision == "fp16" and device_type != "cuda":
        return CellWork(notes=["fp16 + GradScaler needs CUDA: recorded as unavailable, nothing runs"])
    model = ctx.model("score")
    md = model.config.dataset
    n = split_size(md.name, md.split, f["n_train"] or md.n_train, md.seed)
    batch, source = _batch(ctx, device_type)
    if n is None:
        return CellWork(unknown=["training-set size unknown before loading"])
    steps = training_steps(f["epochs"], n, batch, f["max_steps"])
    work.add(ctx.ref("score"), TRAIN, steps * batch, batch,
             f"{precision} arm: {f['epochs']} epochs x ceil({n} / {batch}) = {steps} steps x {batch} images "
             f"(batch: {source})")
    add_training_loop(work, md.name, ctx.ref("score").resolution, steps, batch)
    if precision != "fp32":
        work.notes.append(f"{precision} arm timed as fp32 by the calibration (mixed precision is usually faster)")
    if f["batch_size"] is None and device_type == "cuda":
        work.unknown.append("largest-batch search (grow, bisect) on CUDA")
    return work


def _no_roles(ctx: SpecContext) -> list[str]:
    return []


ESTIMATORS: dict[str, KindEstimator] = {
    "amp_benchmark": KindEstimator(_amp_benchmark, _prepare, _no_roles),
}
