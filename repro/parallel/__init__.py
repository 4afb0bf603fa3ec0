"""Parallel runs of one spec, and what keeps their tracking store and results consistent.

- `ranks`: sharded cells under torchrun: every rank computes its share of a cell's work units
  (e.g. sampling batches), rank 0 gathers, computes the metrics and alone writes (`RunContext.shard`
  / `RunContext.gather`).
- `cells`: independent cells in parallel processes, one per device or CPU job
  (`repro run SPEC --jobs N` / `--devices cuda:0,cuda:1`), under one parent MLflow run.
- `launcher`: the one way the suite starts worker processes (cell workers and sweep workers).
- `store`: a fresh MLflow store initialised once, under a file lock, before anyone writes to it.
"""
