"""Classifier guidance (thesis Eq. 4.22, 5.6), the noise-conditional classifier, and `sec5_1_digits`
end to end at the `test` profile."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from repro import results


@pytest.fixture(scope="module")
def shared_artifacts(tmp_path_factory) -> Path:
    """One artifacts folder for the module: each model is trained once and reused by every test."""
    return tmp_path_factory.mktemp("class_conditional_artifacts")


@pytest.fixture
def env(workdir, shared_artifacts, monkeypatch) -> Path:
    monkeypatch.setenv("REPRO_ARTIFACTS", str(shared_artifacts))
    return workdir


# ----------------------------------------------------------------------------- guidance term

def _tiny_wrn():
    from repro.nets.wide_resnet import NoiseConditionalWideResNet

    torch.manual_seed(0)
    return NoiseConditionalWideResNet(in_channels=1, num_classes=10, depth=10, widen_factor=1, base_channels=2,
                                      embedding_size=4).double().eval()


def test_guidance_equals_finite_differences_per_sample():
    from repro.diffusion.sde import VESDE
    from repro.guidance.classifier import ClassifierGuidance

    net, sde = _tiny_wrn(), VESDE(0.01, 5.0)
    g = torch.Generator().manual_seed(1)
    x = 0.5 + 0.3 * torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 3, 7])
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    scale = 2.5
    got = ClassifierGuidance(net, labels, scale, sde)(x, t)
    assert got.shape == x.shape and got.dtype == x.dtype

    def log_p(xx):
        with torch.no_grad():
            return torch.log_softmax(net(xx, sde.sigma(t)), 1)[torch.arange(3), labels]

    h = 1e-6
    for _ in range(3):  # directional derivatives along random directions, every sample at once
        v = torch.randn(x.shape, generator=g, dtype=torch.float64)
        fd = (log_p(x + h * v) - log_p(x - h * v)) / (2 * h)
        assert torch.allclose((got * v).flatten(1).sum(1), scale * fd, rtol=1e-5, atol=1e-8)
    # one sample at a time gives the same gradients: nothing leaks between the samples of a batch
    for i in range(3):
        one = ClassifierGuidance(net, labels[i: i + 1], scale, sde)(x[i: i + 1], t[i: i + 1])
        assert torch.allclose(one[0], got[i], rtol=1e-10, atol=1e-12)
    # a scale that is a function of t multiplies each sample's gradient by its own s(t)
    timed = ClassifierGuidance(net, labels, lambda tt: 2.0 * tt, sde)(x, t)
    assert torch.allclose(timed, got / scale * (2.0 * t).view(-1, 1, 1, 1), rtol=1e-10, atol=1e-12)
    assert torch.equal(ClassifierGuidance(net, labels, 0.0, sde)(x, t), torch.zeros_like(x))


class _BayesClassifier(torch.nn.Module):
    """The exact p_t(y | x) of a mixture of N(mu_k, s^2 I) under the VE SDE: p_t(x | k) = N(mu_k, (s^2 + sigma^2) I)."""

    def __init__(self, mus: torch.Tensor, s: float, priors: torch.Tensor):
        super().__init__()
        self.mus, self.s, self.log_priors = mus, s, priors.log()

    def variance(self, sigma):
        return self.s ** 2 + sigma ** 2

    def forward(self, x, sigma):
        v = self.variance(sigma).view(-1, 1)
        d2 = ((x.flatten(1)[:, None, :] - self.mus[None]) ** 2).sum(-1)  # [B, K]
        return self.log_priors[None] - d2 / (2 * v)


def _mixture_scores(clf: _BayesClassifier, x, sigma):
    """(class-conditional scores [K, B, D], marginal score [B, D]) in closed form."""
    v = clf.variance(sigma).view(1, -1, 1)
    per_class = -(x.flatten(1)[None] - clf.mus[:, None, :]) / v
    w = torch.softmax(clf(x, sigma), 1).T[:, :, None]  # posterior p(k | x), [K, B, 1]
    return per_class, (w * per_class).sum(0)


def test_guidance_is_class_score_minus_marginal_score_for_a_gaussian_mixture():
    """grad log p_t(y | x) = grad log p_t(x | y) - grad log p_t(x) (Bayes; thesis Eq. 4.22)."""
    from repro.diffusion.sde import VESDE
    from repro.guidance.classifier import ClassifierGuidance, guidance_norms

    sde = VESDE(0.01, 4.0)
    mus = torch.tensor([[1.0, 0.0, -0.5, 0.2, 0.0], [-1.0, 0.5, 0.5, 0.0, 1.0]], dtype=torch.float64)
    clf = _BayesClassifier(mus, 0.3, torch.tensor([0.3, 0.7], dtype=torch.float64))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    for t_val in (0.05, 0.4, 0.9):
        t = torch.full((64,), t_val, dtype=torch.float64)
        sigma = sde.sigma(t)
        per_class, marginal = _mixture_scores(clf, x, sigma)
        for y in (0, 1):
            labels = torch.full((64,), y)
            got = ClassifierGuidance(clf, labels, 1.0, sde)(x, t)
            assert torch.allclose(got, per_class[y] - marginal, rtol=1e-9, atol=1e-12)
        labels = torch.randint(0, 2, (64,), generator=g)
        norms = guidance_norms(lambda xx, tt: _mixture_scores(clf, xx, sde.sigma(tt))[1], clf, sde, x, labels, t_val)
        want = (per_class[labels, torch.arange(64)] - marginal).norm(dim=1)
        assert torch.allclose(norms["class_grad"], want, rtol=1e-9)
        assert torch.allclose(norms["score"], marginal.norm(dim=1), rtol=1e-9)
        ok = want > 1e-6  # a saturated posterior has (almost) no gradient: the ratio is huge there
        assert ok.any() and torch.allclose(norms["ratio"][ok], (marginal.norm(dim=1) / want)[ok], rtol=1e-9)


def test_guided_pc_sampling_of_a_mixture_lands_in_the_requested_class():
    from repro.diffusion.sde import VESDE
    from repro.guidance.classifier import ClassifierGuidance
    from repro.sampling.predictor_corrector import predictor_corrector_sample

    sde = VESDE(0.01, 6.0)
    mus = torch.tensor([[1.5, 0.0, 0.0, 0.0], [-1.5, 0.0, 0.0, 0.0]], dtype=torch.float64)
    clf = _BayesClassifier(mus, 0.2, torch.tensor([0.7, 0.3], dtype=torch.float64))
    score = lambda xx, tt: _mixture_scores(clf, xx, sde.sigma(tt))[1]  # noqa: E731
    n = 200
    labels = torch.ones(n, dtype=torch.long)  # the rarer class (prior 0.3)

    def fraction_in_class_1(guidance):
        g = torch.Generator().manual_seed(3)
        x = sde.prior_sample((n, 4), generator=g, dtype=torch.float64)
        out = predictor_corrector_sample(score, sde, x, steps=200, generator=g, snr=0.16, guidance=guidance)
        return float((out.samples[:, 0] < 0).double().mean())

    assert fraction_in_class_1(ClassifierGuidance(clf, labels, 1.0, sde)) > 0.97
    assert 0.15 < fraction_in_class_1(None) < 0.45  # unguided: the prior's 0.3


# ----------------------------------------------------------------------------- the classifier

def test_classifier_learns_on_the_score_models_sde(env):
    from repro.data import load_dataset, stack
    from repro.trainers.ensure import ensure_model
    from repro.trainers.noisy_classifier import accuracy_at
    from repro.trainers.score_model import make_sde

    clf = ensure_model("noisy_classifier_digits", "test", progress=False)
    score = ensure_model("ncsnpp_digits_ve", "test", progress=False)
    # the same SDE as the score model: sigma_min and the estimated sigma_max
    assert clf.meta["sde"] == score.meta["sde"] and score.meta["sde"]["sigma_max_estimated"]
    assert clf.meta["score_model"] == {"name": "ncsnpp_digits_ve", "hash": score.hash,
                                       "sha256": score.meta["sha256"]}
    sde = make_sde(clf.meta["sde"])
    assert sde.sigma_min == 0.01 and sde.sigma_max == score.meta["sde"]["sigma_max"]
    # held-out accuracy at low noise beats chance (0.1) by far; near t = 1 it is no better than guessing
    images, labels = stack(load_dataset("digits", split="val", resolution=(16, 16), n=200, seed=0))
    g = torch.Generator().manual_seed(99)
    low = accuracy_at(clf.net, sde, images, labels, 0.05, g)
    high = accuracy_at(clf.net, sde, images, labels, 1.0, g)
    assert low > 0.3, low
    assert high < low


def test_classifier_sigma_follows_the_score_model_settings(env):
    from repro.trainers.ensure import ensure_model

    clf = ensure_model("noisy_classifier_digits", "test", progress=False,
                       overrides={"train.score_model_overrides": {"net.sigma_max": 5.0}, "train.epochs": 1})
    assert clf.meta["sde"]["sigma_max"] == 5.0 and clf.meta["sde"]["sigma_max_estimated"] is False


def test_classifier_on_other_data_than_its_score_model_is_a_user_error(env):
    from repro.errors import UserError
    from repro.trainers.ensure import ensure_model

    with pytest.raises(UserError, match="differs from score model ncsnpp_digits_ve"):
        ensure_model("noisy_classifier_digits", "test", overrides={"dataset.resolution": [8, 8]}, progress=False)
    with pytest.raises(UserError, match="net.depth"):
        ensure_model("noisy_classifier_digits", "test", overrides={"net.depth": 12}, progress=False)


# ----------------------------------------------------------------------------- the spec

def test_sec5_1_digits_end_to_end(env):
    from repro.engine.run import run_spec
    from repro.reporting.render import report

    s = run_spec("sec5_1_digits", "test", progress=False)
    assert s.total == 6 and len(s.ran) == 6
    cells = {c["cell"]["scale"]: c for c in results.read_cells("sec5_1_digits", "test")}
    assert sorted(cells) == [0, 1, 10, 100, 1000, 3000]
    norms = cells[0]["extra"]["norm_over_t"]
    for scale, c in cells.items():
        v, x = c["values"], c["extra"]
        assert x["n_samples"] == 10 and x["classes"] == list(range(10))
        for m in ("accuracy", "requested_prob", "guide_accuracy"):
            assert 0.0 <= v[m] <= 1.0
        assert v["fd_evalnet"] >= 0 and "fid" not in v
        assert v["nfe"] == 6 and v["guide_evaluations"] == (0 if scale == 0 else 6)  # 3 x (corrector + predictor)
        assert x["norm_over_t"] == norms  # measured once, the same in every cell
        assert (results.results_root() / x["strip_png"]).exists()
    assert len(norms["t"]) == 3 and norms["t"][-1] == pytest.approx(1.0)
    assert all(r > 0 and math.isfinite(r) for r in norms["ratio"])
    assert norms["sigma"][-1] == pytest.approx(cells[0]["extra"]["sigma_max"], rel=1e-5)
    # a rerun skips every finished cell
    assert run_spec("sec5_1_digits", "test", progress=False).ran == []
    path = report(["sec5_1_digits"])[0]
    text = path.read_text()
    assert "Spearman" in text and "1000" in text and "Caution" in text
    for fig in ("accuracy", "norm_ratio", "samples"):
        assert (path.parent / f"sec5_1_digits_test_{fig}.png").exists(), fig


@pytest.mark.parametrize("key,value,match", [
    ("fixed.snr", 2.0, "fixed.snr"),
    ("fixed.steps", 0, "fixed.steps"),
    ("fixed.n_per_class", 0, "fixed.n_per_class"),
    ("fixed.predictor", "heun", "fixed.predictor"),
    ("fixed.norm_times", 1, "fixed.norm_times"),
])
def test_bad_fixed_values_are_user_errors(key, value, match):
    from repro.errors import UserError
    from repro.experiments import resolve_spec

    with pytest.raises(UserError, match=match):
        resolve_spec("sec5_1_digits", "test", {key: value})


def test_inconsistent_models_and_grid_fail_before_training(env, tmp_path, monkeypatch):
    from repro.errors import UserError
    from repro.engine.run import run_spec

    monkeypatch.setenv("REPRO_ARTIFACTS", str(tmp_path / "untouched"))
    with pytest.raises(UserError, match="score model is ncsnpp_digits_ve"):
        run_spec("sec5_1_digits", "test", overrides={"models.guide.train.score_model": "ncsnpp_digits_vp"},
                 progress=False)
    with pytest.raises(UserError, match="scale values must be numbers >= 0"):
        run_spec("sec5_1_digits", "test", overrides={"grid.scale": [-1.0, 0.0]}, progress=False)
    with pytest.raises(UserError, match="fixed.classes"):
        run_spec("sec5_1_digits", "test", overrides={"fixed.classes": [3, 10]}, progress=False)
    assert not (tmp_path / "untouched").exists()  # nothing was trained
