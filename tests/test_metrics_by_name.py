"""repro.metrics.by_name: the one place a Frechet metric's name is read (fid / fd_evalnet)."""
from __future__ import annotations

import types

import pytest
import torch

from repro.errors import UserError
from repro.metrics.by_name import FRECHET_METRICS, frechet_features
from repro.metrics.fd_evalnet import evalnet_features
from repro.nets.evaluator import DigitsClassifier


def test_unknown_name_is_a_user_error_naming_the_known_ones():
    with pytest.raises(UserError, match="unknown Frechet metric 'kid'.*fid, fd_evalnet"):
        frechet_features("kid", "cpu")
    assert FRECHET_METRICS == ("fid", "fd_evalnet")


def test_fd_evalnet_needs_the_evaluator():
    with pytest.raises(UserError, match="fd_evalnet.*evaluator"):
        frechet_features("fd_evalnet", "cpu")


def test_fd_evalnet_is_the_evaluators_features_on_float_images():
    torch.manual_seed(0)
    net = DigitsClassifier(feature_dim=8)
    trained = types.SimpleNamespace(net=net, name="evaluator_x", hash="abc", meta={"feature_dim": 8})
    m = frechet_features("fd_evalnet", "cpu", evaluator=lambda: trained)
    images = torch.rand(5, 1, 8, 8)
    assert torch.equal(m.features(images), evalnet_features(net, images))
    assert (m.name, m.inputs, m.network) == ("fd_evalnet", "float", net)
    assert m.protocol == "evaluator evaluator_x (8 dims, hash abc) on float images"


def test_fid_without_the_inception_weights_is_unavailable(monkeypatch, tmp_path):
    from repro.metrics.inception import FIDUnavailable

    monkeypatch.setenv("REPRO_FID_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(FIDUnavailable):
        frechet_features("fid", "cpu")
