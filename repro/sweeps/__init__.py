"""Optuna sweeps over the cells of an experiment spec (`repro sweep NAME`).

A sweep spec (`experiments/sweeps/<name>.yaml`, schema in `spec.py`) names a base experiment
spec, a search space over the names its cells vary, a sampler and the objectives. Every trial is
one cell of the base spec computed by the engine that `repro run` uses (or reused from the
results store when `repro run` or an earlier trial already computed it).

Modules: `spec` (schema, validation against the base spec), `storage` (Optuna storages, the
journal's file lock, the study's identity), `liveness` (how a trial left RUNNING by a dead worker
is found), `queue` (grid points enqueued once, popped by one worker each), `trial` (one trial:
cell, reuse or compute, tracking), `worker` (the loop one worker process runs), `runner` (one
`repro sweep` invocation: validation, workers), `studies` (best trials, trials.json / best.json),
`status`, `report`.
"""
