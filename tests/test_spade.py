"""SPADE / pix2pixHD baselines: the normalisation against its formula, the GAN losses against
their definitions, the nets' shapes, a generator that learns a fixed map, and exact resume of
GAN training through the suite's loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.nets.gan_losses import adversarial_loss, feature_matching_loss, hinge_d_fake, hinge_d_real, hinge_g, lsgan
from repro.nets.patchgan import MultiscaleDiscriminator
from repro.nets.pix2pixhd import GlobalGenerator
from repro.nets.spade import SPADE, SPADEGenerator, one_hot_map, spade_layout


# ----------------------------------------------------------------------------- SPADE normalisation

def _hand_built_spade(modulation: str, param_free: str = "batch") -> SPADE:
    """label_nc 2, hidden 2, 1x1 kernels: actv = one-hot map; gamma, beta linear in it."""
    m = SPADE(2, 2, hidden=2, kernel_size=1, param_free=param_free, modulation=modulation)
    with torch.no_grad():
        m.mlp_shared[0].weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
        m.mlp_shared[0].bias.zero_()
        m.mlp_gamma.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 3.0]]).reshape(2, 2, 1, 1))
        m.mlp_gamma.bias.copy_(torch.tensor([0.1, 0.0]))
        m.mlp_beta.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]).reshape(2, 2, 1, 1))
        m.mlp_beta.bias.copy_(torch.tensor([0.0, 0.2]))
    return m


GAMMA_W = np.array([[2.0, -1.0], [0.5, 3.0]]); GAMMA_B = np.array([0.1, 0.0])  # noqa: E702
BETA_W = np.array([[1.0, 0.0], [0.0, -1.0]]); BETA_B = np.array([0.0, 0.2])  # noqa: E702


def _labels_lowres() -> np.ndarray:
    return np.array([[[0, 1, 1], [1, 0, 0]], [[1, 1, 0], [0, 0, 1]]])   # [N=2, H=2, W=3]


def _expected(x: np.ndarray, labels: np.ndarray, modulation: str, per_sample: bool, eps: float = 1e-5):
    """Thesis Eq. 3.5-3.7, index by index: mu_c, sigma_c over (n, y, x) (or (y, x) per sample),
    gamma/beta of the class at each pixel."""
    n, c, h, w = x.shape
    out = np.zeros_like(x)
    for ci in range(c):
        for ni in range(n):
            pool = x[ni, ci] if per_sample else x[:, ci]
            mu = pool.sum() / pool.size
            sigma = np.sqrt((pool ** 2).sum() / pool.size - mu ** 2 + eps)
            for y in range(h):
                for xx in range(w):
                    k = labels[ni, y, xx]
                    gamma = GAMMA_W[ci, k] + GAMMA_B[ci]
                    beta = BETA_W[ci, k] + BETA_B[ci]
                    scale = 1 + gamma if modulation == "code" else gamma
                    out[ni, ci, y, xx] = scale * (x[ni, ci, y, xx] - mu) / sigma + beta
    return out


@pytest.mark.parametrize("modulation", ["code", "paper"])
@pytest.mark.parametrize("param_free", ["batch", "instance"])
def test_spade_normalisation_equals_its_formula_on_a_hand_built_case(modulation, param_free):
    x = np.array([[[[1.0, 2.0, 0.0], [4.0, -1.0, 3.0]], [[0.5, 0.5, 2.0], [1.0, -2.0, 0.0]]],
                  [[[2.0, 1.0, 1.0], [0.0, 5.0, -3.0]], [[1.5, -0.5, 0.0], [2.0, 2.0, 1.0]]]])
    low = _labels_lowres()
    # the map at twice the resolution, constant 2x2 blocks: nearest resizing gives `low` back
    high = low.repeat(2, axis=1).repeat(2, axis=2)
    seg = one_hot_map(torch.as_tensor(high), 2).double()
    m = _hand_built_spade(modulation, param_free).double().train()
    got = m(torch.as_tensor(x), seg).detach().numpy()
    want = _expected(x, low, modulation, per_sample=param_free == "instance")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)   # torch's CPU batch norm: ~1e-7


def test_spade_layout_matches_the_release_for_normal_more_most():
    names = lambda n: [b for b, _, _ in spade_layout(n)]  # noqa: E731
    assert names(5) == ["head_0", "up", "G_middle_0", "G_middle_1", "up", "up_0", "up", "up_1", "up", "up_2",
                        "up", "up_3"]
    assert names(6) == ["head_0", "up", "G_middle_0", "up", "G_middle_1", "up", "up_0", "up", "up_1", "up", "up_2",
                        "up", "up_3"]
    assert names(7)[-2:] == ["up", "up_4"] and names(7).count("up") == 7
    for n in range(1, 8):
        assert names(n).count("up") == n
    assert [(a, b) for name, a, b in spade_layout(5) if name.startswith("up_")] == [(16, 8), (8, 4), (4, 2), (2, 1)]


def test_generators_and_discriminator_shapes():
    seg = one_hot_map(torch.randint(0, 5, (2, 16, 32)), 5)
    g = SPADEGenerator(5, (16, 32), ngf=4, n_up=3, hidden=8)
    out = g(seg)
    assert out.shape == (2, 3, 16, 32) and out.abs().max() <= 1
    assert g.bottom == (2, 4)
    p = GlobalGenerator(5, ngf=4, n_down=2, n_blocks=1)
    assert p(seg).shape == (2, 3, 16, 32)
    d = MultiscaleDiscriminator(5 + 3, ndf=4, n_layers=3, num_d=2)
    preds = d(torch.cat([seg, out], 1))
    assert len(preds) == 2 and all(len(s) == 4 for s in preds)          # 3 blocks + the final conv
    assert preds[0][-1].shape[1] == 1 and preds[1][0].shape[-1] < preds[0][0].shape[-1]


# ----------------------------------------------------------------------------- losses

def _preds(seed: int, scales: int = 2, layers: int = 3) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(2, 3 + j, 4 - s, 5, generator=g, dtype=torch.float64) for j in range(layers)]
            for s in range(scales)]


def test_hinge_and_lsgan_equal_their_definitions():
    preds = _preds(0)
    finals = [s[-1].numpy() for s in preds]
    mean = lambda a: float(np.mean(a))  # noqa: E731
    d_real = [mean(np.maximum(0.0, 1.0 - f)) for f in finals]
    d_fake = [mean(np.maximum(0.0, 1.0 + f)) for f in finals]
    g = [-mean(f) for f in finals]
    assert float(hinge_d_real(preds[0][-1])) == pytest.approx(d_real[0], rel=1e-12)
    assert float(hinge_d_fake(preds[0][-1])) == pytest.approx(d_fake[0], rel=1e-12)
    assert float(hinge_g(preds[0][-1])) == pytest.approx(g[0], rel=1e-12)
    # SPADE: the mean over scales; pix2pixHD: the sum
    assert float(adversarial_loss(preds, "d_real", "hinge", "mean")) == pytest.approx(sum(d_real) / 2, rel=1e-12)
    assert float(adversarial_loss(preds, "d_fake", "hinge", "sum")) == pytest.approx(sum(d_fake), rel=1e-12)
    assert float(adversarial_loss(preds, "g", "hinge", "mean")) == pytest.approx(sum(g) / 2, rel=1e-12)
    ls_real = sum(mean((f - 1.0) ** 2) for f in finals)
    ls_fake = sum(mean(f ** 2) for f in finals)
    assert float(lsgan(preds[1][-1], 1.0)) == pytest.approx(mean((finals[1] - 1) ** 2), rel=1e-12)
    assert float(adversarial_loss(preds, "d_real", "lsgan", "sum")) == pytest.approx(ls_real, rel=1e-12)
    assert float(adversarial_loss(preds, "d_fake", "lsgan", "sum")) == pytest.approx(ls_fake, rel=1e-12)
    assert float(adversarial_loss(preds, "g", "lsgan", "sum")) == pytest.approx(ls_real, rel=1e-12)


def test_feature_matching_equals_its_definition_and_holds_real_features_fixed():
    fake, real = _preds(1), _preds(2)
    for s in real:
        for t in s:
            t.requires_grad_(True)
    for s in fake:
        for t in s:
            t.requires_grad_(True)
    want = 0.0
    for fs, rs in zip(fake, real):
        for f, r in zip(fs[:-1], rs[:-1]):          # the final decision maps are no features
            want += 0.75 * np.mean(np.abs(f.detach().numpy() - r.detach().numpy())) / len(fake)
    loss = feature_matching_loss(fake, real, layer_weight=0.75)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    loss.backward()
    assert all(t.grad is None for s in real for t in s)
    assert fake[0][0].grad is not None and fake[0][-1].grad is None


# ----------------------------------------------------------------------------- training

def _pair(kind: str, seed: int = 0):
    from repro.nets.pix2pixhd import init_pix2pixhd_weights
    from repro.nets.spade import init_spade_weights
    from repro.train.gan_step import GanPair

    torch.manual_seed(seed)
    if kind == "spade":
        g = SPADEGenerator(10, (16, 32), ngf=4, n_up=2, hidden=8)
        d = MultiscaleDiscriminator(13, ndf=4, n_layers=2, num_d=2, spectral=True)
        init_spade_weights(g)
        init_spade_weights(d)
    else:
        g = GlobalGenerator(10, ngf=4, n_down=2, n_blocks=1)
        d = MultiscaleDiscriminator(13, ndf=4, n_layers=2, num_d=2, spectral=False)
        init_pix2pixhd_weights(g)
        init_pix2pixhd_weights(d)
    return GanPair(g, d)


def _rule(pair, kind: str, steps_per_epoch: int, flip: bool = True):
    from repro.train.gan_step import GanObjective, GanStep

    if kind == "spade":
        obj = GanObjective("hinge", "mean", 1.0, 10.0, 1.0)
        return GanStep(pair, 10, obj, lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.999), update="alternating",
                       steps_per_epoch=steps_per_epoch, niter=1, niter_decay=1, flip=flip)
    obj = GanObjective("lsgan", "sum", 0.5, 10.0, 4.0 / 2)
    return GanStep(pair, 10, obj, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), update="simultaneous",
                   steps_per_epoch=steps_per_epoch, niter=1, niter_decay=1, flip=flip)


def test_lr_factor_follows_the_releases_linear_decay():
    from repro.train.gan_step import lr_factor

    # niter 2, niter_decay 4: epochs 0..2 at the initial lr (lowered after each epoch > niter), then -1/4 each
    assert [lr_factor(e, 2, 4) for e in range(7)] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert lr_factor(5, 3, 0) == 1.0


@pytest.mark.parametrize("kind", ["spade", "pix2pixhd"])
def test_generator_on_a_fixed_map_drives_its_loss_down(kind):
    """One (map, image) pair, the D nearly frozen (lr 1e-12): G's adversarial + feature-matching
    loss against that D must fall over 25 steps."""
    from repro.data import load_dataset, stack

    images, labels = stack(load_dataset("street_scenes", split="train", resolution=(16, 32), n=1), limit=1)
    pair = _pair(kind)
    rule = _rule(pair, kind, steps_per_epoch=1000, flip=False)
    rule.base_lr["d"] = 1e-12
    rule.base_lr["g"] = 2e-3
    batch = {"image": images.repeat(2, 1, 1, 1), "label": labels.repeat(2, 1, 1)}
    gen = torch.Generator().manual_seed(0)
    losses = [rule(pair, batch, gen) for _ in range(25)]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("kind", ["spade", "pix2pixhd"])
def test_gan_training_resumes_bit_for_bit_through_the_loop(kind, tmp_path):
    from repro.data import load_dataset
    from repro.train import TrainConfig, train

    data = load_dataset("street_scenes", split="train", resolution=(16, 32), n=12)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-4, ema_decay=None, grad_clip=None, seed=3)

    def run(out, max_steps=None):
        pair = _pair(kind, seed=1)
        rule = _rule(pair, kind, steps_per_epoch=3)
        c = TrainConfig(**{**cfg.__dict__, "max_steps": max_steps})
        res = train(pair, None, data, c, out, on_epoch_end=lambda e, m: rule.epoch_means(), progress=False,
                    step_rule=rule)
        return res, rule

    full, full_rule = run(tmp_path / "full")
    part, _ = run(tmp_path / "split", max_steps=4)          # stops inside epoch 1
    assert part.steps == 4
    resumed, resumed_rule = run(tmp_path / "split")
    assert resumed.steps == full.steps == 6
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = full_rule.state_dict(), resumed_rule.state_dict()
    for opt in ("opt_g", "opt_d"):
        for pid, st in sa[opt]["state"].items():
            for key, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[opt]["state"][pid][key])), (opt, pid, key)
    assert [h["g_total"] for h in full.history] == [h["g_total"] for h in resumed.history]
    assert [h["d_total"] for h in full.history] == [h["d_total"] for h in resumed.history]
    # niter 1, niter_decay 1: epoch 1 still runs at the initial rate (lowered after each epoch > niter)
    assert full_rule.lr == pytest.approx(1e-4 if kind == "spade" else 2e-4)


def test_step_rule_refuses_amp(tmp_path):
    from repro.data import load_dataset
    from repro.errors import UserError
    from repro.train import TrainConfig, train

    pair = _pair("spade")
    data = load_dataset("street_scenes", split="train", resolution=(16, 32), n=4)
    with pytest.raises(UserError, match="fp32"):
        train(pair, None, data, TrainConfig(amp=True, ema_decay=None), tmp_path, progress=False,
              step_rule=_rule(pair, "spade", 1))


@pytest.mark.parametrize("name", ["spade_cityscapes", "pix2pixhd_cityscapes"])
def test_model_kind_resumes_an_interrupted_training_bit_for_bit(name, tmp_path):
    """The trainers (`spade`, `pix2pixhd` kinds) at the test profile: stopped after 3 of 4 steps
    and resumed from the same folder, the generator ends as an uninterrupted run's."""
    from repro.specs import resolve_model
    from repro.trainers import kind_module

    def train(out, inject=None):
        resolved = resolve_model(name, "test", inject=inject)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(resolved.config.seed)     # as repro.trainers.ensure.ensure_model does
            return kind_module(resolved.config.kind).train_model(resolved, out, torch.device("cpu"), None, False)

    full, meta = train(tmp_path / "full")
    _, part = train(tmp_path / "split", inject={"train": {"max_steps": 3}})
    resumed, meta2 = train(tmp_path / "split")
    assert (part["steps"], meta["steps"], meta2["steps"]) == (3, 4, 4)
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert meta["vgg_loss"].startswith("off") and meta["betas"] == ([0.0, 0.999] if "spade" in name else [0.5, 0.999])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["spade", "pix2pixhd"])
def test_gan_step_on_cuda_matches_its_cpu_shapes_and_stays_finite(kind):
    pair = _pair(kind).cuda()
    rule = _rule(pair, kind, steps_per_epoch=10)
    gen = torch.Generator(device="cuda").manual_seed(0)
    batch = {"label": torch.randint(0, 10, (2, 16, 32), device="cuda"), "image": torch.rand(2, 3, 16, 32, device="cuda")}
    losses = [rule(pair, batch, gen) for _ in range(3)]
    assert all(np.isfinite(losses)) and rule.steps == 3
    assert pair.generator(one_hot_map(batch["label"], 10)).device.type == "cuda"
