"""repro plan (issue 13): work units against hand-counted cases and the samplers' own counters,
finished cells and stored models, calibration, estimates, the run guard and the report's cost line."""
from __future__ import annotations

import json
import math

import pytest
import torch

from repro.errors import UserError


# ----------------------------------------------------------------------------- hand-counted work units

@pytest.mark.parametrize("n, b", [(2, 12), (18, 500), (35, 7)])
def test_heun_of_n_steps_on_b_samples_is_2n_minus_1_times_b(n, b):
    from repro.work import edm_nfe

    assert edm_nfe(n, "heun") * b == (2 * n - 1) * b   # hand count: N Euler + (N - 1) corrections
    assert edm_nfe(n, "euler") * b == n * b


def test_heun_count_matches_the_edm_sampler_itself():
    from repro.work import edm_nfe
    from repro.sampling.edm import edm_sample

    calls = []

    def denoiser(x, sigma):
        calls.append(x.shape[0])
        return x * 0.5

    out = edm_sample(denoiser, torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)), steps=5,
                     solver="heun")
    assert out.nfe == len(calls) == edm_nfe(5, "heun") == 9


def test_spec_cell_work_heun_hand_counted():
    """table12_1 at test: Heun, 2 steps, 12 samples per cell -> (2*2 - 1) * 12 = 36 EDM evaluations."""
    from repro.plan.build import plan_spec

    plan = plan_spec("table12_1", "test")
    for c in plan.cells:
        edm = [w for w in c.work.items if w.op == "eval" and w.net.name == "edm_digits"]
        assert sum(w.images for w in edm) == 36
        assert edm[0].batch == 12


def test_guided_pc_step_adds_one_guide_pass_per_score_evaluation():
    """table5_3 at test: 3 PC steps (1 corrector + 1 predictor each) on 4 maps; times
    linspace(1, 1e-5, 3) = 1, 0.500005, 1e-5; Eq. 5.5 (t_start 0.8, t_decay 0.45) is off at t = 1 and
    on at the other two: 2 guided times x 2 evaluations x 4 maps = 16 guide passes; s0 = 0: none."""
    from repro.plan.build import plan_spec

    plan = plan_spec("table5_3", "test")
    by = {c.cell["s0"]: c.work for c in plan.cells}
    for s0, work in by.items():
        evals = sum(w.images for w in work.items if w.op == "eval" and w.net.name == "ncsnpp_cityscapes")
        grads = sum(w.images for w in work.items if w.op == "grad")
        assert evals == 3 * 2 * 4
        assert grads == (0 if s0 == 0 else 2 * 2 * 4)


def test_guided_count_matches_the_guidance_counter_of_the_sampler():
    """Count the segmenter passes the real guided PC sampler makes (SegmentationGuidance.calls)."""
    from repro.diffusion.sde import VESDE
    from repro.guidance.segmentation import ScaleSchedule, SegmentationGuidance, SegmenterNoise
    from repro.experiments.semantic.cost import guided_pc_evaluations
    from repro.sampling.predictor_corrector import predictor_corrector_sample

    class Seg(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x, level):
            return self.conv(x)

    sde, steps = VESDE(0.01, 5.0), 7
    sched = ScaleSchedule("eq5_5", s0=0.01, t_start=0.8, t_decay=0.45)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    guide = SegmentationGuidance(Seg(), target, sched, sde.sigma, SegmenterNoise("log_sigma", 0.01, 5.0))
    g = torch.Generator().manual_seed(0)
    predictor_corrector_sample(lambda x, t: -x, sde, torch.randn(2, 3, 4, 4, generator=g), steps=steps,
                               generator=g, guidance=guide)
    counted = guided_pc_evaluations(sched, steps, sde.default_eps, 2)
    assert guide.calls == counted > 0


@pytest.mark.parametrize("e, d, b", [(1, 50, 32), (10, 1438, 64), (3, 64, 64), (600, 2975, 8)])
def test_training_of_e_epochs_over_d_images_at_batch_b(e, d, b):
    from repro.work import training_steps
    from repro.train.sampler import DeterministicBatchSampler

    assert training_steps(e, d, b) == e * math.ceil(d / b)
    assert training_steps(e, d, b) == e * DeterministicBatchSampler(d, b, 0, 0, 1).batches_per_epoch()
    assert training_steps(e, d, b, max_steps=5) == min(5, e * math.ceil(d / b))


def test_model_training_work_hand_counted():
    """evaluator_digits at smoke: 10 epochs over the digits train split (1797 images, 20 % held out per
    class -> 1438) at batch 64 -> 10 x 23 = 230 steps of 64 images; with n_train 50 at test: 1 x 2."""
    from repro.plan.training import training_work
    from repro.specs import resolve_model

    def train_images(resolved):
        return sum(w.images for w in training_work(resolved).items if w.op == "train")

    assert train_images(resolve_model("evaluator_digits", "smoke")) == 10 * 23 * 64
    assert train_images(resolve_model("evaluator_digits", "test", {"dataset.n_train": 50})) == 1 * 2 * 32


def test_digits_split_sizes_match_the_loader():
    from repro.data.digits import split_indices
    from repro.data.split_sizes import split_size

    assert split_size("digits", "train") == len(split_indices("train", 0))
    assert split_size("digits", "val") == len(split_indices("val", 0))
    assert split_size("street_scenes", "train", 1024) == 1024
    assert split_size("cityscapes", "train") == 2975


def test_discriminator_counts_its_generated_data():
    """discriminator_digits at test: 16 generated images by edm_digits' Heun of 2 steps (3 evaluations),
    then 2 epochs over 16 - round(16 * 0.25) = 12 pairs at batch 8 -> 2 x 2 steps x 16 images."""
    from repro.plan.training import training_work, upstream_models
    from repro.specs import resolve_model

    r = resolve_model("discriminator_digits", "test")
    work = training_work(r)
    gen = [w for w in work.items if w.net.name == "edm_digits"]
    assert sum(w.images for w in gen) == 16 * 3
    assert sum(w.images for w in work.items if w.op == "train") == 2 * 2 * 16
    assert upstream_models(r)[0][0] == "edm_digits"


def test_every_spec_plans_at_every_profile_without_building_networks():
    from repro.plan.build import plan_spec
    from repro.specs import PROFILES, list_spec_ids

    for spec_id in list_spec_ids():
        for profile in PROFILES:
            plan = plan_spec(spec_id, profile)
            assert plan.cells and len(plan.todo) <= len(plan.cells)
            assert plan.work_all().items or plan.unknown_kind or plan.kind == "noise_encoding_comparison"


def test_unknown_kind_is_listed_not_guessed(monkeypatch):
    from repro.experiments.semantic import cost as semantic_cost
    from repro.plan.build import plan_spec
    from repro.plan.render import plan_lines

    monkeypatch.delitem(semantic_cost.ESTIMATORS, "segmenter_timesteps")
    plan = plan_spec("fig5_9", "test")
    assert plan.unknown_kind
    assert "work units unknown for kind segmenter_timesteps" in "\n".join(plan_lines(plan, None))


def test_finished_cells_and_stored_models_are_recognised(workdir):
    from repro import results
    from repro.models import artifact_dir
    from repro.plan.build import plan_spec
    from repro.experiments import resolve_spec

    resolved = resolve_spec("fig5_9", "test")
    first = resolved.cells()[0]
    from repro.specs import cell_key

    results.write_cell("fig5_9", "test", cell_key(first), {"cell": first, "spec_hash": resolved.hash, "values": {}})
    results.write_cell("fig5_9", "test", cell_key(resolved.cells()[1]),
                       {"cell": resolved.cells()[1], "spec_hash": "stale", "values": {}})
    folder = artifact_dir(resolved.model("segmenter"))
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    plan = plan_spec("fig5_9", "test")
    assert [c.finished for c in plan.cells] == [True, False, False, False]
    assert [m.present for m in plan.models] == [True]
    assert not any(w.op == "train" for w in plan.work_to_do().items)   # the model is there
    assert any(w.op == "train" for w in plan.work_all().items)


# ----------------------------------------------------------------------------- calibration and estimates

def test_calibrate_store_and_estimate(workdir):
    from repro.plan.build import plan_spec
    from repro.plan.calibrate import calibrate
    from repro.plan.estimate import estimate
    from repro.plan.store import Calibration, latest_calibration, load_calibration, save_calibration

    plan = plan_spec("fig5_9", "test")
    work = plan.work_all()
    cal = calibrate(work, "cpu", Calibration("cpu-test", "cpu (test)"), budget_s=0.01)
    assert {e["op"] for e in cal.entries.values()} == {"eval", "train"}
    path = save_calibration(cal)
    assert path.parent.name == "calibration" and json.loads(path.read_text())["device"] == "cpu (test)"
    stored = load_calibration("cpu-test")
    assert latest_calibration().slug == "cpu-test"
    est = estimate(work, stored)
    assert est.complete and est.seconds > 0 and est.memory_kind.startswith("cpu peak RSS")
    expected = 0.0   # seconds per call x calls, summed by hand over the items
    for w in work.items:
        entry, per_call = stored.lookup(w.net.key, w.op, w.batch)
        expected += per_call * w.images / w.batch
    assert est.seconds == pytest.approx(expected)


def test_lookup_scales_per_image_from_another_batch():
    from repro.plan.store import Calibration

    cal = Calibration("x", "x")
    cal.put("net", "eval", 8, seconds_per_call=0.4)
    assert cal.lookup("net", "eval", 8)[1] == pytest.approx(0.4)
    assert cal.lookup("net", "eval", 32)[1] == pytest.approx(1.6)   # 0.05 s per image x 32
    assert cal.lookup("net", "grad", 8) == (None, None)


def _fake_calibration(plan, seconds_per_call: float):
    from repro.plan.store import Calibration, device_identity, save_calibration

    slug, name = device_identity("cpu")
    cal = Calibration(slug, name)
    for w in plan.work_all().items:
        cal.put(w.net.key, w.op, w.batch, seconds_per_call=seconds_per_call, peak_memory_mb=1.0, memory_kind="x")
    save_calibration(cal)


def test_run_guard_requires_yes_above_the_threshold(workdir, monkeypatch):
    from repro.experiments import resolve_spec
    from repro.plan import run_guard
    from repro.plan.build import plan_spec

    _fake_calibration(plan_spec("fig5_9", "test"), seconds_per_call=1000.0)
    said = []
    with pytest.raises(UserError, match="--yes"):
        run_guard([resolve_spec("fig5_9", "test")], "cpu", yes=False, echo=said.append, interactive=True)
    run_guard([resolve_spec("fig5_9", "test")], "cpu", yes=False, echo=said.append, interactive=False)
    assert "not a terminal" in said[-1]
    run_guard([resolve_spec("fig5_9", "test")], "cpu", yes=True, echo=said.append, interactive=True)
    assert "--yes" in said[-1]
    said.clear()
    run_guard([resolve_spec("fig5_9", "test")], "cpu", yes=False, echo=said.append, interactive=True, max_hours=1e6)
    assert said == []
    monkeypatch.setenv("REPRO_PLAN_WARN_HOURS", "nope")
    with pytest.raises(UserError, match="REPRO_PLAN_WARN_HOURS"):
        run_guard([resolve_spec("fig5_9", "test")], "cpu", yes=False, echo=said.append, interactive=True)


def test_run_guard_without_calibration_says_the_cost_is_unknown(workdir):
    from repro.experiments import resolve_spec
    from repro.plan import run_guard

    said = []
    run_guard([resolve_spec("fig5_9", "test")], "cpu", yes=False, echo=said.append, interactive=True)
    assert "cost is unknown" in said[0]


def test_plan_command_lists_cells_models_and_units(workdir):
    from repro.plan import plan_command

    out = []
    plan_command(["table12_1"], "test", {}, "cpu", False, out.append)
    text = "\n".join(out)
    assert "3 cells, 0 finished, 3 to run" in text
    assert "model edm_digits (edm, role edm): to train" in text
    assert "no stored calibration" in text
    with pytest.raises(UserError):
        plan_command(["table12_1"], "nope", {}, "cpu", False, out.append)


def test_report_cost_line_from_the_recorded_run(workdir):
    from repro.plan.render import paper_estimate_line, report_cost_lines
    from repro.results import last_run, record_run

    record_run("fig5_9", "test", "abc", "cpu", 125.0, 20.0, 4)
    assert last_run("fig5_9", "test", "abc")["seconds"] == 125.0
    line = report_cost_lines("fig5_9", "test", "abc", [1.0])[0]
    assert "2.1 min wall time on cpu" in line and "4 cell(s)" in line
    assert "sum of their own times" in report_cost_lines("fig5_9", "test", "other", [1.0, 2.0])[0]
    assert "no calibration stored" in paper_estimate_line("fig5_9")


def test_new_kinds_are_counted():
    """bdd_metrics at test: 4 masks, the appendix loop's T - 1 DDPM calls, classifier-free guidance
    doubling the rows (lerp s = 3); table5_4_5: published-only CRN runs nothing, SPADE's generator once per map."""
    from repro.plan.build import plan_spec
    from repro.specs import resolve_model

    T = int(resolve_model("mask_ddpm_bdd", "test").config.net.get("T", 1000))
    plan = plan_spec("bdd_metrics", "test")
    ddpm = [w for w in plan.cells[0].work.items if w.net.name == "mask_ddpm_bdd"]
    assert sum(w.images for w in ddpm) == 4 * (T - 1) * 2
    plan = plan_spec("table5_4_5", "test")
    by = {c.cell["method"]: c.work for c in plan.cells}
    assert not by["crn"].items
    assert sum(w.images for w in by["spade"].items if w.net.name == "spade_cityscapes") == 4


def test_pretrained_models_cost_no_training():
    from repro.plan.training import training_work
    from repro.specs import resolve_model

    for name in ("ncsnpp_digits_ve", "edm_digits"):
        work = training_work(resolve_model(name, "test", {"train.pretrained": "/some/checkpoint"}))
        assert not work.items and "no training" in work.notes[0]


def test_sigma_max_estimate_is_counted_and_timed():
    """noisy_unet at test estimates sigma_max from 2000 random pairs (train.sigma_max null)."""
    from repro.plan.calibrate import calibrate
    from repro.plan.store import Calibration
    from repro.plan.training import training_work
    from repro.work import SIGMA_PAIRS
    from repro.specs import resolve_model

    work = training_work(resolve_model("noisy_unet", "test"))
    pairs = [w for w in work.items if w.net.name == SIGMA_PAIRS]
    assert sum(w.images for w in pairs) == 2000 and pairs[0].net.resolution == (3, 16, 32)
    pairs_only = type(work)(items=pairs)
    cal = calibrate(pairs_only, "cpu", Calibration("t", "t"), budget_s=0.01)
    assert len(cal.entries) == 1


def test_inference_timing_hand_counted():
    """bdd_table2 at test: 0 warm-up + 2 timed runs (repeats, the claims' unit) of 6 steps; conditional
    (lerp s = 3) doubles the rows."""
    from repro.plan.build import plan_spec

    by = {c.key: c.work for c in plan_spec("bdd_table2", "test").cells}
    cond = by["batch_size=2__mode=conditional__variant=fp32"].items[0]
    uncond = by["batch_size=2__mode=unconditional__variant=fp32"].items[0]
    assert (cond.images, cond.batch) == (2 * 6 * 4, 4)
    assert (uncond.images, uncond.batch) == (2 * 6 * 2, 2)
