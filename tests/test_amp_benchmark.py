"""Mixed-precision benchmark (thesis Sec. 5.3.1, Tab. 5.1, 5.2, Fig. 5.6): batch search, divergence, specs."""
from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from repro.errors import UserError
from repro.experiments.amp.arm import loss_curve, timing_summary
from repro.train.batch_finder import largest_batch_that_fits
from repro.train.config import TrainConfig
from repro.train.loop import TrainingDiverged, train


# ---------------------------------------------------------------- batch search on a fake allocator

class FakeAllocator:
    """A device with `capacity` units; a try of batch b allocates b units step by step and raises
    OOM when full, leaving what it got allocated until the cleanup frees it (like cached blocks)."""

    def __init__(self, capacity: int):
        self.capacity, self.held, self.cleanups, self.held_at_start = capacity, 0, 0, []

    def fits(self, batch: int) -> None:
        self.held_at_start.append(self.held)
        for _ in range(batch):
            if self.held + 1 > self.capacity:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 1 unit ({batch})")
            self.held += 1
        self.held = 0  # a try that fits frees its tensors when it returns

    def cleanup(self) -> None:
        self.cleanups += 1
        self.held = 0


@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 6, 7, 8, 9, 100, 255])
def test_batch_search_grows_then_bisects_to_the_exact_largest_batch(capacity):
    dev = FakeAllocator(capacity)
    found = largest_batch_that_fits(dev.fits, limit=256, cleanup=dev.cleanup)
    assert found.batch_size == capacity and not found.capped
    tried = [b for b, _ in found.tries]
    first_fail = next(i for i, (_, ok) in enumerate(found.tries) if not ok)
    # doubling up to the first failure: 1, 2, 4, ... each a power of two
    assert tried[: first_fail + 1] == [2**i for i in range(first_fail + 1)]
    # then bisection strictly inside (largest fit, smallest fail)
    lo, hi = tried[first_fail] // 2, tried[first_fail]
    for b, ok in found.tries[first_fail + 1:]:
        assert lo < b < hi
        lo, hi = (b, hi) if ok else (lo, b)
    assert hi - lo == 1 and lo == capacity
    assert all(ok == (b <= capacity) for b, ok in found.tries)
    # every out-of-memory try was cleaned up before the next one started from an empty device
    assert dev.cleanups == sum(not ok for _, ok in found.tries)
    assert dev.held_at_start == [0] * len(found.tries)
    assert len(found.tries) <= 2 * math.ceil(math.log2(capacity + 1)) + 1


def test_batch_search_cap_first_failure_and_other_errors():
    dev = FakeAllocator(1000)
    capped = largest_batch_that_fits(dev.fits, limit=48, cleanup=dev.cleanup)
    assert capped.batch_size == 48 and capped.capped and [b for b, _ in capped.tries] == [1, 2, 4, 8, 16, 32, 48]
    with pytest.raises(UserError, match="even batch size 1 does not fit"):
        largest_batch_that_fits(FakeAllocator(0).fits, cleanup=lambda: None)

    def broken(b):
        raise ValueError("a bug, not out-of-memory")

    with pytest.raises(ValueError, match="a bug"):
        largest_batch_that_fits(broken, cleanup=lambda: None)
    # cuDNN's allocation failures are out-of-memory too
    def cudnn(b):
        if b > 3:
            raise RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED")

    assert largest_batch_that_fits(cudnn, cleanup=lambda: None).batch_size == 3


# ---------------------------------------------------------------- the loop's divergence guard

class Toy(torch.utils.data.Dataset):
    def __init__(self, n=16):
        self.x = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i]}


def test_non_finite_loss_stops_training_with_the_step_and_the_last_finite_loss(tmp_path):
    calls, logged = {"n": 0}, {}

    def loss_fn(model, batch, g):
        calls["n"] += 1
        loss = ((model(batch["image"].flatten(1)) - batch["image"].flatten(1)) ** 2).mean()
        return loss * float("inf") if calls["n"] == 5 else loss

    def log(metrics, step):
        if "step_loss" in metrics:
            logged[step] = metrics["step_loss"]

    cfg = TrainConfig(epochs=3, batch_size=4, log_every=1, ema_decay=None)
    with pytest.raises(TrainingDiverged) as info:
        train(nn.Linear(16, 16), loss_fn, Toy(), cfg, tmp_path, log_metrics=log, progress=False)
    err = info.value
    assert isinstance(err, RuntimeError) and "at step 5 (epoch 1, batch 0)" in str(err)
    assert (err.reason, err.step, err.epoch) == ("non_finite_loss", 5, 1)  # 4 steps per epoch
    assert math.isinf(err.loss) and err.last_finite_loss == logged[4] and sorted(logged) == [1, 2, 3, 4]


def test_fp16_autocast_on_the_cpu_is_refused(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=4, amp=True, amp_dtype="float16")
    with pytest.raises(UserError, match="float16 .* needs CUDA"):
        train(nn.Linear(16, 16), lambda m, b, g: m(b["image"].flatten(1)).mean(), Toy(), cfg, tmp_path,
              progress=False)


# ---------------------------------------------------------------- timing and curves

def test_timing_leaves_out_warm_up_and_epoch_boundaries():
    # 2 epochs of 4 steps; step gaps 1.0 s except step 6 (2 s); epoch 0's steps and step 1 are warm-up
    times = [0.0, 10.0, 11.0, 12.0, 100.0, 102.0, 103.0, 104.0]
    steps = [{"step": i + 1, "t": t, "epoch": i // 4, "session": 0, "loss": 1.0} for i, t in enumerate(times)]
    history = [{"epoch": 0, "seconds": 50.0}, {"epoch": 1, "seconds": 6.0}]
    out = timing_summary(steps, history, batch_size=8, warmup_epochs=1, warmup_steps=2, steps_per_epoch=4)
    # gaps counted: steps 3, 4 (epoch 0, after warm-up step 2), 6, 7, 8: 1 + 1 + 2 + 1 + 1 = 6 over 5
    assert out["seconds_per_step"] == pytest.approx(6.0 / 5)
    assert out["images_per_second"] == pytest.approx(8 / 1.2)
    assert out["seconds_per_epoch"] == 6.0 and out["epochs_timed"] == 1
    # no epoch after the warm-up: per step x steps per epoch
    out = timing_summary(steps, history[:1], 8, warmup_epochs=1, warmup_steps=2, steps_per_epoch=4)
    assert out["seconds_per_epoch"] == pytest.approx(4 * 1.2)
    # steps of another process (a resumed arm) are never differenced with this one's
    resumed = [dict(s, session=1 if s["step"] > 6 else 0) for s in steps]
    assert timing_summary(resumed, history, 8, 1, 2, 4)["steps_timed"] == 4


def test_loss_curve_bins_consecutive_steps():
    steps = [{"step": i, "loss": float(i)} for i in range(1, 11)]
    xs, ys = loss_curve(steps, points=4)  # bins of 3: [1..3], [4..6], [7..9], [10]
    assert xs == [3, 6, 9, 10] and ys == [2.0, 5.0, 8.0, 10.0]
    assert loss_curve(steps, points=100) == (list(range(1, 11)), [float(i) for i in range(1, 11)])


# ---------------------------------------------------------------- specs end to end

def _cells(spec, profile="test"):
    from repro import results

    return {r["key"]: r for r in results.read_cells(spec, profile)}


def test_table5_1_at_test_fresh_process_per_arm_cpu_memory_and_ratio_report(workdir):
    from repro.engine.run import run_spec
    from repro.reporting.render import report

    summary = run_spec("table5_1", "test", progress=False)
    assert sorted(summary.ran) == ["precision=bf16", "precision=fp32"] and not summary.failed
    cells = _cells("table5_1")
    fp32, bf16 = cells["precision=fp32"], cells["precision=bf16"]
    for rec in (fp32, bf16):
        v = rec["values"]
        assert rec["extra"]["isolated_process"] is True
        assert v["cpu_peak_rss_mb"] >= v["cpu_training_peak_rss_mb"] >= v["cpu_rss_at_start_mb"] > 50  # torch > 50 MB
        assert v["cpu_rss_increase_mb"] == v["cpu_training_peak_rss_mb"] - v["cpu_rss_at_start_mb"]
        assert not any(k.startswith(("cuda_", "nvml_")) for k in v)           # never shown as accelerator memory
        assert v["batch_size"] == 4 and rec["extra"]["steps_completed"] == 2 * 4
    assert fp32["extra"]["seed"] == bf16["extra"]["seed"]   # same data order, noise and initial weights
    # same seed and data: the first step's loss differs only by bf16 rounding
    assert fp32["extra"]["loss_curve"][0] == pytest.approx(bf16["extra"]["loss_curve"][0], rel=0.05)
    report(["table5_1"])
    md = (workdir / "reports" / "table5_1.md").read_text()
    ratio = bf16["values"]["cpu_training_peak_rss_mb"] / fp32["values"]["cpu_training_peak_rss_mb"]
    assert f"CPU figure: peak RSS of the arm's fresh process during training: {ratio:.3f}" in md
    assert "RTX 2080 Ti 0.946, A100 0.755" in md          # 7367/7791 and 29481/39039 (thesis Tab. 5.1)
    assert "Device: CPU" in md and (workdir / "reports" / "table5_1_test_ratios.png").stat().st_size > 1000


def test_table5_2_and_fig5_6_at_test_render_time_ratios_and_loss_curves(workdir):
    from repro.engine.run import run_spec
    from repro.reporting.render import report

    run_spec("table5_2", "test", progress=False)
    run_spec("fig5_6", "test", progress=False)
    t = _cells("table5_2")
    ratio = t["precision=bf16"]["values"]["seconds_per_epoch"] / t["precision=fp32"]["values"]["seconds_per_epoch"]
    f = _cells("fig5_6")
    assert sorted(f) == ["precision=bf16__repeat=0", "precision=bf16__repeat=1", "precision=fp32__repeat=0",
                         "precision=fp32__repeat=1"]
    seeds = {k: r["extra"]["seed"] for k, r in f.items()}
    assert seeds["precision=fp32__repeat=0"] == seeds["precision=bf16__repeat=0"] != seeds["precision=fp32__repeat=1"]
    report(["table5_2", "fig5_6"])
    md2 = (workdir / "reports" / "table5_2.md").read_text()
    assert f"mean time per epoch after warm-up: {ratio:.3f}" in md2 and "RTX 2080 Ti 0.807, A100 1.023" in md2
    md6 = (workdir / "reports" / "fig5_6.md").read_text()
    assert (workdir / "reports" / "fig5_6_test_loss_curves.png").exists()
    for p in ("fp32", "bf16"):   # each arm's run-to-run range, described (the claims table judges)
        spread = abs(f[f"precision={p}__repeat=0"]["values"]["loss_last_quarter"]
                     - f[f"precision={p}__repeat=1"]["values"]["loss_last_quarter"])
        assert f"(range over 2 repeats {spread:.2g})" in md6
    assert "bf16 - fp32, mean late-training loss:" in md6 and "thesis Fig. 5.6" in md6


def test_injected_nan_stops_the_arm_marks_it_failed_and_the_report_leaves_it_out(workdir):
    from repro.results import read_failed_cells
    from repro.engine.run import run_spec
    from repro.reporting.render import report
    from repro.tracking.runs import iter_runs

    summary = run_spec("table5_2", "test", overrides={"fixed.inject_nonfinite": {"bf16": 3}}, progress=False)
    assert summary.ran == ["precision=fp32"] and summary.failed == ["precision=bf16"]
    assert list(_cells("table5_2")) == ["precision=fp32"]           # no results file for the diverged arm
    (failed,) = read_failed_cells("table5_2", "test")
    f = failed["failed"]
    assert (f["reason"], f["step"], f["precision"]) == ("non_finite_loss", 3, "bf16")
    assert math.isnan(f["loss"]) and math.isfinite(f["last_finite_loss"]) and f["last_finite_loss"] > 0
    runs = {r.data.tags.get("repro.cell"): r for r in iter_runs("table5_2")}
    assert runs["precision=bf16"].info.status == "FAILED" and runs["precision=fp32"].info.status == "FINISHED"
    assert runs["precision=bf16"].data.tags["repro.failure.step"] == "3"
    assert runs["precision=bf16"].data.metrics["failure_last_finite_loss"] == pytest.approx(f["last_finite_loss"])
    assert runs[None].info.status == "FINISHED"                       # the spec's run goes on past the arm

    report(["table5_2"])
    md = (workdir / "reports" / "table5_2.md").read_text()
    results = md.split("## Reproduction at profile `test`")[1].split("### Claims")[0]   # not the claims table
    rows = [line for line in results.splitlines() if line.startswith("|")]
    assert any(r.startswith("| fp32") for r in rows) and not any("bf16" in r for r in rows)
    assert "**diverged** (non_finite_loss) at step 3" in md and "left out of every table" in md
    assert "bf16 autocast (no scaler) / fp32" not in md              # no ratio from the diverged arm

    # a rerun without the fault retries the failed arm only and supersedes its failure
    again = run_spec("table5_2", "test", overrides={"fixed.inject_nonfinite": {}}, progress=False)
    assert sorted(again.ran) == ["precision=bf16", "precision=fp32"]   # another spec hash: all cells anew
    assert read_failed_cells("table5_2", "test") == [] and sorted(_cells("table5_2")) == ["precision=bf16",
                                                                                           "precision=fp32"]


def test_bad_settings_are_one_line_user_errors(workdir):
    from repro.engine.run import run_spec

    with pytest.raises(UserError, match="inject_nonfinite: unknown precision 'fp8'"):
        run_spec("table5_2", "test", overrides={"fixed.inject_nonfinite": {"fp8": 1}}, progress=False)
    with pytest.raises(UserError, match="fixed.clip_order"):
        run_spec("table5_2", "test", overrides={"fixed.clip_order": "sometimes"}, progress=False)
    assert not (workdir / "results" / "table5_2" / "test" / "cells").exists()


# ---------------------------------------------------------------- CUDA (skipped without a GPU)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_table5_1_searches_the_batch_and_reports_allocator_memory(workdir):
    from repro.engine.run import run_spec

    over = {"fixed.batch_size": None, "fixed.batch_limit": 8, "fixed.find_amp_batch": True,
            "grid.precision": ["fp32", "fp16", "bf16"]}
    summary = run_spec("table5_1", "test", overrides=over, device="cuda", progress=False)
    assert not summary.failed
    cells = _cells("table5_1")
    for rec in cells.values():
        v = rec["values"]
        assert v["batch_size"] == 8 and rec["extra"]["batch_search"]["capped"]   # a tiny net fits the cap
        assert v["cuda_max_memory_reserved_mb"] >= v["cuda_max_memory_allocated_mb"] > 0
        assert "cpu_peak_rss_mb" not in v
    search = json.loads((workdir / "results" / "table5_1" / "test" / "batch_search_fp32.json").read_text())
    assert [b for b, _ in search["search"]["tries"]] == [1, 2, 4, 8]


@cuda
def test_cuda_loss_scale_collapse_stops_the_fp16_arm(tmp_path):
    def loss_fn(model, batch, g):
        return (model(batch["image"].flatten(1)) ** 2).mean() * 1e30   # overflows fp16 every step

    cfg = TrainConfig(epochs=3, batch_size=4, amp=True, amp_dtype="float16", device="cuda", min_loss_scale=1e3,
                      ema_decay=None)
    with pytest.raises(TrainingDiverged) as info:
        train(nn.Linear(16, 16), loss_fn, Toy(), cfg, tmp_path, progress=False)
    # the scale halves from 65536 at every overflowing step: 65536 / 2^7 = 512 < 1000 after step 7
    assert (info.value.reason, info.value.step, info.value.loss_scale) == ("loss_scale_collapse", 7, 512.0)
    assert math.isfinite(info.value.last_finite_loss)


def test_cpu_rss_peak_sees_what_the_block_allocates():
    from repro.train.probes import CpuRssPeak

    with CpuRssPeak() as rss:
        block = torch.ones(64 * 2**20 // 4)   # 64 MiB, touched
        block += 1
        # keep it until the poller has run (a loaded CI box may not schedule it for a while; it once saw
        # 54 of the 64 MiB while the pages were still being touched); a dead poller times out here
        deadline = time.monotonic() + 10
        while rss.start_mb is not None and rss.peak_mb - rss.start_mb < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
    if rss.start_mb is None:
        pytest.skip("no /proc/self/statm on this system")
    assert rss.peak_mb - rss.start_mb >= 60
