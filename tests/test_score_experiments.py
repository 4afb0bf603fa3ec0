"""Score-SDE experiments at the `test` profile: the score_sde model kind, snr_study, sampler_table,
milstein_study end to end, and the pieces they share (sampler settings, grids, mean ± std)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from repro import results


@pytest.fixture(scope="module")
def shared_artifacts(tmp_path_factory) -> Path:
    """One artifacts folder for the module: each model is trained once and reused by every test."""
    return tmp_path_factory.mktemp("score_artifacts")


@pytest.fixture
def env(workdir, shared_artifacts, monkeypatch) -> Path:
    monkeypatch.setenv("REPRO_ARTIFACTS", str(shared_artifacts))
    return workdir


def _ve_model():
    from repro.trainers.ensure import ensure_model

    return ensure_model("ncsnpp_digits_ve", "test", progress=False)


# ----------------------------------------------------------------------------- model kind

def test_score_sde_trainer_learns_and_reproduces(env, tmp_path, monkeypatch):
    from repro.data import load_dataset, stack
    from repro.trainers.ensure import ensure_model
    from repro.trainers.score_sde import build_net, dsm_eval
    from repro.trainers.score_model import score_model_for, to_model_space

    trained = _ve_model()
    meta = trained.meta
    assert meta["sde"]["name"] == "ve" and meta["sde"]["sigma_max_estimated"]
    assert 1.0 < meta["sde"]["sigma_max"] < 16.0  # digits 16x16 in [0, 1]: at most sqrt(256) apart
    assert meta["weights"] == "ema" and meta["sample_shape"] == [1, 16, 16]
    assert (trained.path / "preview.png").exists()

    # The learned score beats an untrained network in held-out DSM loss (thesis Eq. 4.14), fresh draws.
    sm = score_model_for(trained)
    x0 = to_model_space(stack(load_dataset("digits", split="val", resolution=(16, 16), n=64, seed=0))[0], False)
    learned = dsm_eval(trained.net, sm.sde, x0, seed=123)
    untrained = dsm_eval(build_net(trained.resolved).eval(), sm.sde, x0, seed=123)
    assert learned < 0.97 * untrained, (learned, untrained)

    # Same seed and config -> bit-identical weights (a second training in another folder).
    monkeypatch.setenv("REPRO_ARTIFACTS", str(tmp_path / "again"))
    again = ensure_model("ncsnpp_digits_ve", "test", progress=False)
    assert again.meta["sha256"] == meta["sha256"]
    assert again.meta["sde"]["sigma_max"] == meta["sde"]["sigma_max"]


def test_score_model_for_vp_is_centered_and_scores_have_the_data_shape(env):
    from repro.diffusion.sde import VPSDE
    from repro.trainers.ensure import ensure_model
    from repro.trainers.score_model import score_model_for

    sm = score_model_for(ensure_model("ncsnpp_digits_vp", "test", progress=False))
    assert isinstance(sm.sde, VPSDE) and sm.centered
    x = torch.randn(3, *sm.shape)
    s = sm.score_fn(x, torch.full((3,), 0.5))
    assert s.shape == x.shape and torch.isfinite(s).all()
    images = torch.rand(2, *sm.shape)
    assert torch.allclose(sm.to_images(sm.from_images(images)), images, atol=1e-6)
    assert sm.from_images(images).min() < 0  # VP works on [-1, 1]


def test_score_sde_trains_on_street_scenes_non_square(env):
    from repro.trainers.ensure import ensure_model
    from repro.trainers.score_model import score_model_for

    trained = ensure_model("ncsnpp_cityscapes", "test", progress=False)
    sm = score_model_for(trained)
    assert sm.shape == (3, 16, 32) and trained.meta["sde"]["sigma_max"] > 1.0
    assert math.isfinite(trained.meta["val_dsm"])


def test_bad_resolution_is_a_user_error(env):
    from repro.errors import UserError
    from repro.trainers.ensure import ensure_model

    with pytest.raises(UserError, match="divisible"):
        ensure_model("ncsnpp_digits_ve", "test", overrides={"dataset.resolution": [15, 15]}, progress=False)


# ----------------------------------------------------------------------------- shared pieces

def test_budget_labels_map_to_the_slides_samplers():
    from repro.errors import UserError
    from repro.experiments.score.sampling import budget_setting

    p = budget_setting("P2000", "ancestral", 0.01, 0.16)
    assert (p.method, p.steps, p.predictor, p.corrector) == ("pc", 20, "ancestral", "none")
    c = budget_setting("C2000", "ancestral", 1.0, 0.16)
    assert (c.steps, c.predictor, c.corrector) == (2000, "none", "langevin")
    pc = budget_setting("PC1000", "probability_flow", 0.002, 0.1)
    assert (pc.steps, pc.predictor, pc.corrector, pc.snr) == (2, "probability_flow", "langevin", 0.1)
    with pytest.raises(UserError):
        budget_setting("Q10", "ancestral", 1.0, 0.16)


def test_mean_std_and_image_grid(tmp_path):
    from PIL import Image

    from repro.experiments.score.sampling import mean_std
    from repro.images import save_image_grid

    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    path = save_image_grid(torch.rand(5, 1, 4, 6), tmp_path / "g.png", nrow=3, pad=1)
    im = Image.open(path)
    assert im.size == (3 * 7 + 1, 2 * 5 + 1)  # 3 columns x 2 rows of 4x6 images, 1-pixel padding


# ----------------------------------------------------------------------------- specs end to end

def test_snr_study_end_to_end(env):
    from repro.engine.run import run_spec
    from repro.reporting.render import report

    s = run_spec("snr_study", "test", device="cpu", progress=False)
    assert len(s.ran) == 3
    cells = results.read_cells("snr_study", "test")
    assert sorted(c["cell"]["snr"] for c in cells) == [0.05, 0.1, 0.2]
    for c in cells:
        v, x = c["values"], c["extra"]
        assert x["metric"] == "fd_evalnet" and "fid" not in v  # never shown as the Inception FID
        assert v["fd_evalnet"] >= 0 and v["fd_evalnet_std"] >= 0 and len(x["fd_evalnet_runs"]) == 2
        assert v["nfe"] == 6  # 3 steps x (1 corrector + 1 predictor)
        assert 0.0 <= v["class_entropy"] <= math.log(10) + 1e-9 and 0.1 - 1e-9 <= v["confidence"] <= 1.0
        assert (results.results_root() / x["strip_png"]).exists()
    # common random numbers: every snr starts from the same prior draw, so runs differ only by snr
    runs = {c["cell"]["snr"]: c["extra"]["fd_evalnet_runs"] for c in cells}
    assert runs[0.05] != runs[0.2]
    path = report(["snr_study"])[0]
    text = path.read_text()
    assert "snr = 0.1" in text and "no published number" in text
    assert (path.parent / "snr_study_test_curve.png").exists() and (path.parent / "snr_study_test_samples.png").exists()


def test_milstein_study_shows_milstein_equals_em(env):
    from repro.engine.run import run_spec
    from repro.reporting.render import report

    run_spec("milstein_study", "test", device="cpu", progress=False)
    cells = {c["cell"]["solver"]: c for c in results.read_cells("milstein_study", "test")}
    assert set(cells) == {"euler_maruyama", "milstein", "pc", "probability_flow_ode"}
    mil, em = cells["milstein"]["values"], cells["euler_maruyama"]["values"]
    assert mil["max_abs_diff_vs_em"] == 0.0
    assert mil["fd_evalnet"] == em["fd_evalnet"]  # identical samples -> identical metric
    assert cells["pc"]["values"]["nfe"] == 2 * em["nfe"] == 6
    assert cells["probability_flow_ode"]["values"]["nfe"] >= 6  # RK45: at least one step of 6 stages
    for c in cells.values():
        assert c["values"]["seconds"] > 0 and c["extra"]["ms_per_sample"] > 0
    text = report(["milstein_study"])[0].read_text()
    assert "coincides with Euler-Maruyama" in text and "milstein_study_test_bars.png" in text


def test_sampler_table_end_to_end(env):
    from repro.engine.run import run_spec
    from repro.reporting.render import report
    from repro.specs import load_spec

    s = run_spec("sampler_table", "test", device="cpu", progress=False)
    assert s.total == 12
    cells = {(c["cell"]["sde"], c["cell"]["predictor"], c["cell"]["sampler"]): c
             for c in results.read_cells("sampler_table", "test")}
    # C2000 has no predictor: run once per SDE, in the reverse-diffusion row (as the slides list it)
    for sde in ("ve", "vp"):
        assert cells[(sde, "probability_flow", "C2000")]["values"] == {}
        assert "not_applicable" in cells[(sde, "probability_flow", "C2000")]["extra"]
        nfe = {k[2]: c["values"]["nfe"] for k, c in cells.items() if k[0] == sde and k[1] == "reverse_diffusion"}
        assert nfe == {"P1000": 2, "C2000": 4, "PC1000": 4}  # step_scale 0.002
        for k, c in cells.items():
            if c["values"]:
                assert c["values"]["fd_evalnet"] >= 0 and len(c["extra"]["fd_evalnet_runs"]) == 2
    assert cells[("vp", "reverse_diffusion", "P1000")]["extra"]["sde"] == "vp"
    # the published table: 20 cells with standard deviations, C2000 only for reverse diffusion
    pub = load_spec("sampler_table").paper.cells
    assert len(pub) == 20 and all("fid_std" in p for p in pub)
    assert {p["predictor"] for p in pub if p["sampler"] == "C2000"} == {"reverse_diffusion"}
    text = report(["sampler_table"])[0].read_text()
    assert "4.98" in text and "times 0.002" in text and "sampler_table_test_bars.png" in text


def test_fid_without_inception_weights_fails_before_training(env, tmp_path, monkeypatch):
    from repro.engine.run import run_spec
    from repro.metrics.inception import FIDUnavailable

    monkeypatch.setenv("REPRO_ARTIFACTS", str(tmp_path / "untouched"))
    monkeypatch.setenv("REPRO_FID_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(FIDUnavailable):
        run_spec("snr_study", "test", overrides={"metrics": ["fid", "fid_std"]}, device="cpu", progress=False)
    assert results.read_cells("snr_study", "test") == []
    assert not (tmp_path / "untouched" / "ncsnpp_digits_ve").exists()  # no score model was trained for nothing
