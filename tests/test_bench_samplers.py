"""Sampler overhead benchmarks (excluded from the default run: `pytest -m bench`, `make bench`)."""
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.bench
def test_sampler_overhead_goal():
    out = _load("bench_sampler_overhead").main(["--steps", "10", "--repeats", "2"])
    for name, r in out["samplers"].items():
        # the sampler's own work, measured with a free score function, must stay within 5 %
        assert r["overhead_direct"] <= 1.05, (name, r)
        assert r["overhead"] < 1.25, (name, r)  # wall-clock ratio: noisy on a shared machine


@pytest.mark.bench
def test_edm_heun_overhead_and_dg_cost_goal():
    """Issue 4: Heun wall <= 1.05 x NFE x the denoiser's own time; DG costs one discriminator
    forward + backward per guided evaluation (H100 figures in the closing note)."""
    out = _load("bench_edm_overhead").main(["--batch", "16", "--steps", "18", "--repeats", "2", "--threads", "1"])
    assert out["nfe"] == 35 and out["guided_evals"] > 0
    assert out["overhead_inrun_cpu"] <= 1.05, out   # CPU time: what machine load affects least
    assert 0.7 <= out["dg_inrun_over_fb"] <= 1.4, out   # about one forward + backward, no second one


@pytest.mark.bench
def test_guided_score_cost_goal():
    """Issue 8: a segmentation-guided score evaluation costs at most one score evaluation plus one
    segmenter forward + backward (batch 16, smoke network sizes), and the sampler makes exactly one
    segmenter pass per score evaluation inside Eq. 5.5's window."""
    out = _load("bench_guided_score").main(["--batch", "16", "--repeats", "3", "--threads", "1"])
    assert out["ratio"] <= 1.05, out
    assert out["segmenter_passes"] == out["evaluations_inside_window"] < out["sampler_nfe"], out
