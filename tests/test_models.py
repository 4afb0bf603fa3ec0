"""Model artifacts: trained once per resolved config, reproducible whatever ran before."""
from __future__ import annotations

import torch

from repro.models import artifact_dir

from repro.trainers.ensure import ensure_model
from repro.specs import resolve_model


def test_same_config_trains_the_same_weights_whatever_the_process_drew_before(workdir, monkeypatch):
    monkeypatch.setenv("REPRO_NO_MLFLOW", "1")
    torch.rand(1000)  # consume the global RNG differently before each training
    a = ensure_model("evaluator_digits", "test", progress=False)
    first = a.meta["sha256"]
    monkeypatch.setenv("REPRO_ARTIFACTS", str(workdir / "other"))
    torch.rand(7)
    b = ensure_model("evaluator_digits", "test", progress=False)
    assert b.path != a.path and b.meta["sha256"] == first
    # Reuse: a second call loads the stored weights instead of training again.
    c = ensure_model("evaluator_digits", "test", progress=False)
    assert c.meta["sha256"] == first
    assert (artifact_dir(resolve_model("evaluator_digits", "test")) / "meta.json").exists()
    for p, q in zip(b.net.parameters(), c.net.parameters()):
        assert torch.equal(p, q)
