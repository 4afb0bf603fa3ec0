"""Loaders for NVlabs/edm pickles and DG discriminator state dicts, on files the tests write."""
import pickle
import sys
import types

import pytest
import torch

from repro.errors import UserError
from repro.nets.discriminator import small_discriminator
from repro.nets.official import load_discriminator_checkpoint, load_edm_network, load_state_dict_file


def test_edm_pickle_loads_the_ema_network(tmp_path):
    path = tmp_path / "edm-tiny.pkl"
    with open(path, "wb") as f:
        pickle.dump({"ema": torch.nn.Linear(2, 2), "augment_pipe": None}, f)
    net = load_edm_network(path)
    assert isinstance(net, torch.nn.Linear) and not net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_edm_pickle_needing_the_authors_code_says_so(tmp_path):
    name = "torch_utils_fake_for_repro_test"
    mod = types.ModuleType(name)
    exec("import torch\nclass Persistent(torch.nn.Module):\n    pass\n", mod.__dict__)
    mod.Persistent.__module__ = name
    sys.modules[name] = mod
    try:
        blob = pickle.dumps({"ema": mod.Persistent()})
    finally:
        del sys.modules[name]
    path = tmp_path / "edm-cifar10-32x32-uncond-vp.pkl"
    path.write_bytes(blob)
    with pytest.raises(UserError, match="NVlabs/edm.*PYTHONPATH") as e:
        load_edm_network(path)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_edm_pickle_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="not found.*missing.pkl"):
        load_edm_network(tmp_path / "missing.pkl")
    p = tmp_path / "no-ema.pkl"
    p.write_bytes(pickle.dumps({"ema_old": 1}))
    with pytest.raises(UserError, match="no 'ema' entry"):
        load_edm_network(p)
    bad = tmp_path / "garbage.pkl"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="not a readable"):
        load_edm_network(bad)


def test_discriminator_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    src = small_discriminator(in_channels=3, channels=8)
    path = tmp_path / "discriminator_60.pt"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, path)   # as saved under DDP
    dst = load_discriminator_checkpoint(small_discriminator(in_channels=3, channels=8), path)
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k
    x, tau = torch.randn(2, 3, 8, 8), torch.tensor([0.1, 0.9])
    assert torch.equal(src(x, tau), dst(x, tau))


def test_discriminator_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match="discriminator checkpoint not found"):
        load_state_dict_file(tmp_path / "nope.pt", what="discriminator checkpoint")
    whole = tmp_path / "module.pt"
    torch.save(small_discriminator(channels=8), whole)        # a pickled module, not weights only
    with pytest.raises(UserError, match="weights-only"):
        load_state_dict_file(whole)
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), other)
    with pytest.raises(UserError, match="does not match"):
        load_discriminator_checkpoint(small_discriminator(channels=8), other)
