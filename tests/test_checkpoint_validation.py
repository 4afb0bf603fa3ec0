"""Weights files checked before work starts (repro.checkpoints): keys and shapes against the network
built on the meta device; empty, truncated, foreign and wrong-architecture files are one line.

Oracles: a file saved from the very network the config builds passes; the same network at another
width, another network, an empty file, the first half of a good file, a text file and a pickled
module fail, each with the reason named. Large networks (DRN, Inception) are saved as expanded
one-element tensors: the file has every key and shape, and weighs a few kilobytes.
"""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from repro.checkpoints import TRUST_PICKLE_ENV, compare_state_dict, validate_inception_weights
from repro.errors import UserError
from repro.specs import resolve_model
from repro.trainers.weights import validate_model_files
from tests.conftest import cli_env

ADM = {"net.encoder": "adm", "net.adm_width": 32, "net.adm_depth": 1, "net.adm_head_channels": 32,
       "net.train_encoder": False}


def _adm_resolved(path: Path, **extra):
    return resolve_model("discriminator_digits", "test", {**ADM, "net.adm_classifier": str(path), **extra})


def _adm_state(**extra) -> dict[str, torch.Tensor]:
    from repro.trainers import discriminator

    return discriminator.build_net(_adm_resolved(Path("unused.pt"), **extra)).encoder.classifier.state_dict()


def _shaped_like(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every key and shape of `module`'s state dict, as stride-0 views of one element each."""
    return {k: torch.zeros(1, dtype=v.dtype).expand(v.shape) if v.dim() else torch.zeros((), dtype=v.dtype)
            for k, v in module.state_dict().items()}


def _one_line(fn, *patterns: str) -> str:
    with pytest.raises(UserError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    for p in patterns:
        assert p in msg, msg
    return msg


def test_the_adm_classifier_of_this_config_passes(tmp_path):
    path = tmp_path / "32x32_classifier.pt"
    torch.save(_adm_state(), path)
    validate_model_files(_adm_resolved(path))
    wrapped = tmp_path / "wrapped.pt"   # as DDP + a training script save it
    torch.save({"state_dict": {"module." + k: v for k, v in _adm_state().items()}}, wrapped)
    validate_model_files(_adm_resolved(wrapped))


def test_bad_adm_classifier_files_are_named(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(_adm_state(), good)
    cases = {
        "empty.pt": (b"", ["empty"]),
        "half.pt": (good.read_bytes()[: good.stat().st_size // 2], ["not a readable weights-only torch file"]),
        "text.pt": (b"this is not a checkpoint\n", ["not a readable weights-only torch file"]),
    }
    for name, (blob, patterns) in cases.items():
        (tmp_path / name).write_bytes(blob)
        _one_line(lambda: validate_model_files(_adm_resolved(tmp_path / name)),
                  "model discriminator_digits: net.adm_classifier", name, *patterns)
    wider = tmp_path / "wider.pt"    # the same architecture at another width: shapes differ
    torch.save(_adm_state(**{"net.adm_width": 64, "net.adm_head_channels": 64}), wider)
    _one_line(lambda: validate_model_files(_adm_resolved(wider)), "shape mismatch",
              "'time_embed.0.weight': file (256, 64), network (128, 32)")   # ADM: time embedding 4 x width
    other = tmp_path / "linear.pt"
    torch.save(nn.Linear(3, 3).state_dict(), other)
    _one_line(lambda: validate_model_files(_adm_resolved(other)), "missing key", "unexpected key(s), e.g. 'weight'")
    module = tmp_path / "module.pt"   # a pickled module, not weights only
    torch.save(nn.Linear(3, 3), module)
    _one_line(lambda: validate_model_files(_adm_resolved(module)), "not a readable weights-only")
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    _one_line(lambda: validate_model_files(_adm_resolved(listed)), "does not hold a state dict of tensors")
    _one_line(lambda: validate_model_files(_adm_resolved(tmp_path / "absent.pt")), "not found")


def test_compare_state_dict_counts_and_tolerates_old_batchnorm_files():
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    expected = {k: tuple(v.shape) for k, v in bn.state_dict().items()}
    old = {k: v for k, v in bn.state_dict().items() if not k.endswith("num_batches_tracked")}
    compare_state_dict(old, expected, "net")   # files before PyTorch 0.4.1
    bad = {**old, "0.weight": torch.zeros(2, 1, 5, 5), "extra": torch.zeros(1)}
    del bad["1.bias"]
    msg = _one_line(lambda: compare_state_dict(bad, expected, "net"))
    assert "1 missing key(s), e.g. '1.bias'" in msg and "1 unexpected key(s), e.g. 'extra'" in msg
    assert "'0.weight': file (2, 1, 5, 5), network (2, 1, 3, 3)" in msg


def test_drn_checkpoint_keys_and_shapes(tmp_path):
    from repro.trainers import pretrained_segmenter

    def resolved(path, arch="drn_d_22"):
        return resolve_model("drn_d_105_cityscapes", "paper", {"net.checkpoint": str(path), "net.arch": arch})

    good = tmp_path / "drn-d-22_cityscapes.pth"
    torch.save(_shaped_like(pretrained_segmenter.build_net(resolved(good)).drn), good)
    assert good.stat().st_size < 1_000_000
    validate_model_files(resolved(good))
    _one_line(lambda: validate_model_files(resolved(good, arch="drn_d_38")), "does not match fyu/drn's DRNSeg(drn_d_38")


class EDMPrecond(nn.Module):
    """Stands in for NVlabs' class of that name (the check reads its name and geometry)."""

    def __init__(self, img_resolution: int, img_channels: int):
        super().__init__()
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.lin = nn.Linear(1, 1)


def _edm_resolved(path: Path):
    return resolve_model("edm_digits", "test", {"train.pretrained": str(path)})


def test_edm_pickle_needs_trust_then_class_and_geometry(tmp_path, monkeypatch):
    from repro.trainers import edm

    res, channels = edm._geometry(_edm_resolved(tmp_path / "x.pkl"))
    good = tmp_path / "edm-good.pkl"
    good.write_bytes(pickle.dumps({"ema": EDMPrecond(res, channels)}))
    monkeypatch.delenv(TRUST_PICKLE_ENV, raising=False)
    _one_line(lambda: validate_model_files(_edm_resolved(good)), TRUST_PICKLE_ENV, "runs code")
    _one_line(lambda: edm.validate(_edm_resolved(good)), TRUST_PICKLE_ENV)   # ensure_model's check too
    monkeypatch.setenv(TRUST_PICKLE_ENV, "1")
    validate_model_files(_edm_resolved(good))
    cases = {
        "edm-size.pkl": ({"ema": EDMPrecond(res * 2, channels)}, f"{res * 2}x{res * 2}"),
        "edm-linear.pkl": ({"ema": nn.Linear(2, 2)}, "holds a Linear"),
        "edm-noema.pkl": ({"net": EDMPrecond(res, channels)}, "no 'ema' entry"),
    }
    for name, (obj, pattern) in cases.items():
        (tmp_path / name).write_bytes(pickle.dumps(obj))
        _one_line(lambda: validate_model_files(_edm_resolved(tmp_path / name)), "train.pretrained", name, pattern)
    (tmp_path / "edm-empty.pkl").write_bytes(b"")
    _one_line(lambda: validate_model_files(_edm_resolved(tmp_path / "edm-empty.pkl")), "empty")
    (tmp_path / "edm-cut.pkl").write_bytes(good.read_bytes()[:40])
    _one_line(lambda: validate_model_files(_edm_resolved(tmp_path / "edm-cut.pkl")), "not a readable")


def test_inception_weights_keys_and_shapes(tmp_path):
    from repro.metrics.inception import fid_inception_network

    good = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(_shaped_like(fid_inception_network()), good)
    validate_inception_weights(good)
    wrong = tmp_path / "inception-wrong.pth"
    torch.save(nn.Conv2d(3, 8, 3).state_dict(), wrong)
    _one_line(lambda: validate_inception_weights(wrong), "fid: fid weights", "does not match pytorch-fid's")
    (tmp_path / "empty.pth").write_bytes(b"")
    _one_line(lambda: validate_inception_weights(tmp_path / "empty.pth"), "empty")


@pytest.mark.slow
def test_repro_run_refuses_a_bad_checkpoint_before_training(workdir):
    """End to end: `repro run` with a wrong ADM classifier stops in preflight, exit 2, one line,
    nothing trained, no result, no MLflow run."""
    bad = workdir / "32x32_classifier.pt"
    torch.save(nn.Linear(3, 3).state_dict(), bad)
    sets = [f"models.discriminator.{k}={v}" for k, v in {**ADM, "net.adm_classifier": str(bad)}.items()]
    out = subprocess.run([sys.executable, "-m", "repro.cli", "run", "fig12_3", "--profile", "test", "--no-progress",
                          *[a for s in sets for a in ("--set", s)]],
                         cwd=workdir, env=cli_env(workdir), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "net.adm_classifier" in lines[0] and "does not match" in lines[0], out.stderr
    assert not (workdir / "results").exists() and not (workdir / "artifacts").exists()
    assert not (workdir / "mlflow.db").exists()
