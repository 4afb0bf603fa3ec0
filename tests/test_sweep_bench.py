"""The sweep workers benchmark as a `pytest -m bench` target (excluded from `make test`)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_sweep_workers.py"


@pytest.mark.bench
def test_two_workers_take_at_most_0_6_of_one_workers_time_on_a_16_trial_grid():
    spec = importlib.util.spec_from_file_location("bench_sweep_workers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main([])
    if out["machine_two_process_headroom"] < 1.7:   # other processes hold the cores: no sweep could meet it
        pytest.skip(f"two CPU-bound processes get only {out['machine_two_process_headroom']}x one's throughput here "
                    f"now (ratio measured {out['ratio']}); rerun on idle cores")
    assert out["trials"] >= 8 and out["ratio"] <= 0.6, out
