"""Spec schema, profiles, --set overrides and hashing."""
from __future__ import annotations

import shutil

import pytest

from repro.errors import UserError
from repro.specs import PROFILES, cell_key, grid_cells, list_model_ids, list_spec_ids, load_spec, match_cell, parse_set, resolve_model
from repro.experiments import resolve_spec


def test_every_spec_and_model_resolves_at_every_profile():
    assert {"fig5_9", "sec5_2_2"} <= set(list_spec_ids())
    for spec_id in list_spec_ids():
        spec = load_spec(spec_id)
        assert spec.source.document.endswith(".txt")
        for profile in PROFILES:
            r = resolve_spec(spec_id, profile)
            assert r.profile == profile and len(r.hash) == 12
            for name in r.spec.models.values():
                assert name in list_model_ids()
                resolve_model(name, profile)


def test_profiles_change_dataset_and_hash():
    paper, smoke, test = (resolve_spec("fig5_9", p) for p in ("paper", "smoke", "test"))
    assert paper.spec.dataset.name == "cityscapes" and tuple(paper.spec.dataset.resolution) == (256, 512)
    assert smoke.spec.dataset.name == "street_scenes" and tuple(smoke.spec.dataset.resolution) == (16, 32)
    assert len(paper.cells()) == 45  # 41 timesteps in [0, 0.8] and 4 beyond
    assert len({paper.hash, smoke.hash, test.hash}) == 3
    assert resolve_spec("fig5_9", "smoke").hash == smoke.hash  # stable


def test_set_overrides_are_type_checked():
    r = resolve_spec("fig5_9", "test", parse_set(["fixed.n_images=3", "grid.t=[0.1, 0.2]"]))
    assert r.spec.fixed["n_images"] == 3
    assert [c["t"] for c in r.cells()] == [0.1, 0.2]
    assert r.hash != resolve_spec("fig5_9", "test").hash
    with pytest.raises(UserError, match="expected int"):
        resolve_spec("fig5_9", "test", parse_set(["fixed.n_images=many"]))
    with pytest.raises(UserError, match="unknown key"):
        resolve_spec("fig5_9", "test", parse_set(["fixed.n_imgs=3"]))
    with pytest.raises(UserError, match="unknown key"):
        resolve_spec("fig5_9", "test", parse_set(["nothing.here=3"]))
    with pytest.raises(UserError, match="greater than or equal"):
        resolve_spec("fig5_9", "test", parse_set(["fixed.n_images=0"]))
    with pytest.raises(UserError, match="cannot be overridden"):
        resolve_spec("fig5_9", "test", parse_set(["paper.notes=x"]))
    with pytest.raises(UserError, match="key=value"):
        parse_set(["fixed.n_images"])


def test_model_overrides_change_the_artifact_identity():
    a = resolve_model("noisy_unet", "test")
    b = resolve_model("noisy_unet", "test", {"net.noise_encoding": "t"})
    c = resolve_model("noisy_unet", "test", {"net.noise_encoding": "log_sigma"})
    assert a.hash != b.hash and a.hash == c.hash
    # A config with `base:` is its base with its own values merged over it.
    t = resolve_model("noisy_unet_t", "test")
    assert t.config.net["noise_encoding"] == "t" and t.config.net["base_channels"] == a.config.net["base_channels"]
    assert t.config.train == a.config.train and t.hash != a.hash


def test_run_level_model_settings_per_role():
    """`--set models.<role>.<key>=v` sets the role's model config (e.g. a checkpoint path) for this run."""
    plain = resolve_spec("fig12_3", "test")
    r = resolve_spec("fig12_3", "test", parse_set(["models.discriminator.train.epochs=3",
                                                   "models.discriminator.net.head_channels=16"]))
    assert r.model_overrides == {"discriminator": {"train.epochs": 3, "net.head_channels": 16}}
    assert r.spec == plain.spec and r.hash != plain.hash   # the results depend on the model
    m = r.model("discriminator")
    assert m.config.train["epochs"] == 3 and m.hash != plain.model("discriminator").hash
    assert r.model("edm").hash == plain.model("edm").hash
    with pytest.raises(UserError, match="no model role 'critic'; its roles: "):
        resolve_spec("fig12_3", "test", parse_set(["models.critic.train.epochs=3"]))
    with pytest.raises(UserError, match="expected int"):
        resolve_spec("fig12_3", "test", parse_set(["models.discriminator.train.epochs=many"]))
    with pytest.raises(UserError, match="unknown key"):
        resolve_spec("fig12_3", "test", parse_set(["models.discriminator.train.epoch=3"]))
    swapped = resolve_spec("fig12_3", "test", parse_set(["models.discriminator=discriminator_digits"]))
    assert swapped.model_overrides == {} and swapped.hash == plain.hash


def test_run_context_hands_the_role_settings_to_the_model(monkeypatch):
    import torch

    from repro.engine import context as engine
    seen = {}
    monkeypatch.setattr("repro.trainers.ensure.ensure_model",
                        lambda name, profile, overrides=None, inject=None, **kw: seen.setdefault(name, overrides))
    r = resolve_spec("fig12_3", "test", parse_set(["models.discriminator.train.epochs=3"]))
    ctx = engine.RunContext(r, torch.device("cpu"), progress=False)
    ctx.model("discriminator", {"train.select_epoch": 1})
    ctx.model("edm")
    assert seen == {"discriminator_digits": {"train.epochs": 3, "train.select_epoch": 1}, "edm_digits": None}


def test_unknown_spec_profile_and_bad_names():
    with pytest.raises(UserError, match="unknown spec 'nope'"):
        resolve_spec("nope")
    with pytest.raises(UserError, match="unknown profile"):
        resolve_spec("fig5_9", "huge")
    with pytest.raises(UserError, match="invalid spec name"):
        resolve_spec("../etc/passwd")


def test_malformed_and_invalid_yaml(tmp_path, monkeypatch):
    from repro.specs import experiments_dir

    exp = tmp_path / "experiments"
    shutil.copytree(experiments_dir(), exp)
    monkeypatch.setenv("REPRO_EXPERIMENTS", str(exp))
    (exp / "broken.yaml").write_text("id: broken\ntitle: [unclosed\n")
    with pytest.raises(UserError, match="malformed YAML in spec broken.yaml line"):
        load_spec("broken")
    (exp / "wrongtype.yaml").write_text((exp / "fig5_9.yaml").read_text().replace("id: fig5_9", "id: wrongtype")
                                        .replace("n_images: 500", "n_images: lots"))
    with pytest.raises(UserError, match="fixed.n_images"):
        resolve_spec("wrongtype", "paper")
    (exp / "extra.yaml").write_text((exp / "fig5_9.yaml").read_text().replace("id: fig5_9", "id: extra")
                                    + "\nunexpected_key: 1\n")
    with pytest.raises(UserError, match="unexpected_key"):
        load_spec("extra")


def test_cells_and_keys():
    cells = grid_cells({"s0": [0.001, 0.002], "snr": [0.1]})
    assert cells == [{"s0": 0.001, "snr": 0.1}, {"s0": 0.002, "snr": 0.1}]
    assert cell_key(cells[0]) == "s0=0.001__snr=0.1"
    assert cell_key({}) == "all"
    assert cell_key({"encoding": "log_sigma"}) == "encoding=log_sigma"
    assert match_cell({"s0": 0.0010000000001, "fid": 3.0}, {"s0": 0.001})
    assert not match_cell({"s0": 0.002}, {"s0": 0.001})


def test_a_discriminator_sees_the_generator_this_run_uses():
    """DG's discriminator learns the samples of the spec's EDM: settings given to the `edm` role
    (e.g. NVlabs' checkpoint) reach the discriminator's generator and change its identity."""
    from repro.trainers.discriminator import parse

    plain = resolve_spec("fig12_3", "test")
    r = resolve_spec("fig12_3", "test", parse_set(["models.edm.train.epochs=2"]))
    disc = r.model("discriminator")
    assert disc.config.train["generator_overrides"] == {"train.epochs": 2}
    assert disc.hash != plain.model("discriminator").hash
    assert "generator_overrides" not in plain.model("discriminator").config.train   # hashes as before
    assert parse(disc)[1].generator_overrides == {"train.epochs": 2}
    assert r.model("edm").hash == resolve_model("edm_digits", "test", {"train.epochs": 2}).hash


def test_every_key_repro_show_prints_can_be_set():
    """fixed.eps (a runner default the YAML leaves out) and dataset.root, as `repro show` prints them
    and the missing-data error tells users to set them; the hash without them is unchanged."""
    from repro.experiments import resolve_spec
    from repro.specs import parse_set

    plain = resolve_spec("table5_3", "test")
    assert "eps" not in (plain.data.get("fixed") or {}) and "eps" in plain.spec.fixed   # shown, not written
    r = resolve_spec("table5_3", "test", parse_set(["fixed.eps=1e-3", "dataset.root=/data/cityscapes"]))
    assert r.spec.fixed["eps"] == 0.001 and r.spec.dataset.root == "/data/cityscapes" and r.hash != plain.hash
    assert plain.spec.fixed["eps"] is None
    assert resolve_spec("table5_3", "test", parse_set(["fixed.eps=null"])).hash == plain.hash   # its default
    with pytest.raises(UserError, match="fixed.eps"):
        resolve_spec("table5_3", "test", parse_set(["fixed.eps=abc"]))
    with pytest.raises(UserError, match="unknown key"):
        resolve_spec("fig5_9", "test", parse_set(["fixed.eps=0.1"]))   # not a setting of this kind
