"""The score SDE release's NCSN++ / DDPM++ (repro.nets.score_sde) against the release's layout.

`reference_layout` below is written in this test from score_sde_pytorch's construction
(models/ncsnpp.py NCSNpp.__init__, layerspp.py, layers.py, up_or_down_sampling.py): the ordered
state-dict keys and shapes of `NCSNpp(config)` wrapped in DataParallel ('module.'), for the
configs configs/ve/cifar10_ncsnpp_continuous.py and configs/vp/cifar10_ddpmpp_continuous.py.
Parameter counts come from that layout, not from the implementation.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from repro.nets.score_sde import CIFAR10_DDPMPP_CONTINUOUS, CIFAR10_NCSNPP_CONTINUOUS, ScoreSdeScoreNet
from repro.nets.score_sde import fir

# ----------------------------------------------------------------------------- the release's layout


def reference_layout(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), image_size=32,
                     channels=3, fir_=True, progressive_input="residual", embedding_type="fourier",
                     num_scales=1000):
    """[(key, shape)] in state-dict order, for resblock_type biggan, progressive none, conditional."""
    out = [("module.sigmas", (num_scales,))]
    idx = [0]

    def module(entries):
        i = idx[0]
        out.extend((f"module.all_modules.{i}.{k}", s) for k, s in entries)
        idx[0] += 1

    def conv(o, i, k):
        return [("weight", (o, i, k, k)), ("bias", (o,))]

    def gn(c):
        return [("weight", (c,)), ("bias", (c,))]

    def sub(prefix, entries):
        return [(f"{prefix}.{k}", s) for k, s in entries]

    def resblock(in_ch, out_ch=None, up=False, down=False):
        out_ch = out_ch or in_ch
        e = (sub("GroupNorm_0", gn(in_ch)) + sub("Conv_0", conv(out_ch, in_ch, 3))
             + sub("Dense_0", [("weight", (out_ch, 4 * nf)), ("bias", (out_ch,))])
             + sub("GroupNorm_1", gn(out_ch)) + sub("Conv_1", conv(out_ch, out_ch, 3)))
        if in_ch != out_ch or up or down:
            e += sub("Conv_2", conv(out_ch, in_ch, 1))
        module(e)

    def attn(c):
        e = sub("GroupNorm_0", gn(c))
        for j in range(4):
            e += sub(f"NIN_{j}", [("W", (c, c)), ("b", (c,))])
        module(e)

    if embedding_type == "fourier":
        module([("W", (nf,))])
        embed = 2 * nf
    else:
        embed = nf
    module([("weight", (4 * nf, embed)), ("bias", (4 * nf,))])
    module([("weight", (4 * nf, 4 * nf)), ("bias", (4 * nf,))])
    module(conv(nf, channels, 3))
    hs_c, in_ch, pyr = [nf], nf, channels
    n = len(ch_mult)
    res = [image_size // 2 ** i for i in range(n)]
    for lvl in range(n):
        for _ in range(num_res_blocks):
            resblock(in_ch, nf * ch_mult[lvl])
            in_ch = nf * ch_mult[lvl]
            if res[lvl] in attn_resolutions:
                attn(in_ch)
            hs_c.append(in_ch)
        if lvl != n - 1:
            resblock(in_ch, down=True)
            if progressive_input == "residual":  # Downsample(fir, with_conv): up_or_down_sampling.Conv2d
                module(sub("Conv2d_0", conv(in_ch, pyr, 3)) if fir_ else sub("Conv_0", conv(in_ch, pyr, 3)))
                pyr = in_ch
            hs_c.append(in_ch)
    in_ch = hs_c[-1]
    resblock(in_ch)
    attn(in_ch)
    resblock(in_ch)
    for lvl in reversed(range(n)):
        for _ in range(num_res_blocks + 1):
            resblock(in_ch + hs_c.pop(), nf * ch_mult[lvl])
            in_ch = nf * ch_mult[lvl]
        if res[lvl] in attn_resolutions:
            attn(in_ch)
        if lvl != 0:
            resblock(in_ch, up=True)
    module(gn(in_ch))
    module(conv(channels, in_ch, 3))
    return out


NCSNPP_LAYOUT = dict()  # release config -> layout arguments
DDPMPP_LAYOUT = dict(fir_=False, progressive_input="none", embedding_type="positional")


def _count(layout, exclude=("module.sigmas",)):
    return sum(math.prod(s) for k, s in layout if k not in exclude)


@pytest.mark.parametrize("cfg,sde,kw", [(CIFAR10_NCSNPP_CONTINUOUS, "ve", NCSNPP_LAYOUT),
                                        (CIFAR10_DDPMPP_CONTINUOUS, "vp", DDPMPP_LAYOUT)],
                         ids=["ncsnpp_ve", "ddpmpp_vp"])
def test_cifar10_release_layout_and_strict_load(cfg, sde, kw):
    layout = reference_layout(**kw)
    with torch.device("meta"):
        net = ScoreSdeScoreNet(cfg, sde=sde)
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == layout  # names, shapes and order (the EMA list follows parameters() order)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == _count(layout)
    # a state dict in the release's layout (as saved from DataParallel) loads with strict keys
    state = {k: torch.empty(s, dtype=torch.float64 if k.endswith("sigmas") else torch.float32) for k, s in layout}
    net.load_state_dict(state, strict=True, assign=True)
    with pytest.raises(RuntimeError):  # and a layout of the other config does not
        net.load_state_dict({k: torch.empty(s) for k, s in reference_layout(**(DDPMPP_LAYOUT if not kw else {}))},
                            strict=True, assign=True)


def test_parameter_counts_equal_the_releases_own():
    # score_sde_pytorch's models.ncsnpp.NCSNpp built for configs/ve/cifar10_ncsnpp_continuous.py and
    # configs/vp/cifar10_ddpmpp_continuous.py and counted (sum of p.numel() over parameters()):
    # NCSN++ 62,758,915 (62,758,787 trainable: the 128 Fourier weights are fixed), DDPM++ 61,804,419.
    assert _count(reference_layout(**NCSNPP_LAYOUT)) == 62_758_915
    assert _count(reference_layout(**NCSNPP_LAYOUT), exclude=("module.sigmas", "module.all_modules.0.W")) == 62_758_787
    assert _count(reference_layout(**DDPMPP_LAYOUT)) == 61_804_419


SMALL = dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, image_size=8, attn_resolutions=(4,))


def _small(cfg):
    return replace(cfg, **SMALL)


@pytest.mark.parametrize("cfg,sde,kw", [(CIFAR10_NCSNPP_CONTINUOUS, "ve", NCSNPP_LAYOUT),
                                        (CIFAR10_DDPMPP_CONTINUOUS, "vp", DDPMPP_LAYOUT)])
def test_checkpoint_file_loads_strictly_with_ema_weights(tmp_path, cfg, sde, kw):
    from repro.nets.score_sde.checkpoint import load_score_sde_checkpoint

    layout = reference_layout(**SMALL, **kw)
    g = torch.Generator().manual_seed(0)
    model = {k: torch.randn(s, generator=g, dtype=torch.float64 if k.endswith("sigmas") else torch.float32)
             for k, s in layout}
    # ema.py keeps one shadow per parameter with requires_grad: all but the Fourier W (and the buffer)
    trainable = [k for k, _ in layout if not k.endswith("sigmas") and not k.endswith("all_modules.0.W")]
    shadow = [torch.randn(model[k].shape, generator=g) for k in trainable]
    path = tmp_path / "checkpoint_8.pth"
    torch.save({"optimizer": {"state": {}, "param_groups": []}, "model": model,
                "ema": {"decay": 0.999, "num_updates": 5, "shadow_params": shadow}, "step": 8}, path)
    net = ScoreSdeScoreNet(_small(cfg), sde=sde)
    info = load_score_sde_checkpoint(net, path)
    assert info == {"step": 8, "weights": "ema", "ema_decay": 0.999}
    state = net.state_dict()
    for k, s in zip(trainable, shadow):
        assert torch.equal(state[k], s)  # the EMA weights replace the raw ones
    if kw.get("embedding_type", "fourier") == "fourier":  # not trained: the raw checkpoint value stays
        assert torch.equal(state["module.all_modules.0.W"], model["module.all_modules.0.W"])
    out = net(torch.rand(2, 3, 8, 8), torch.tensor([0.3, 0.7]))
    assert out.shape == (2, 3, 8, 8) and torch.isfinite(out).all()


def test_checkpoint_of_another_architecture_is_a_user_error(tmp_path):
    from repro.errors import UserError
    from repro.nets.score_sde.checkpoint import load_score_sde_checkpoint

    path = tmp_path / "checkpoint_1.pth"
    torch.save({"model": {"module.foo": torch.zeros(1)}, "ema": {}, "step": 1}, path)
    with pytest.raises(UserError, match="does not match"):
        load_score_sde_checkpoint(ScoreSdeScoreNet(_small(CIFAR10_NCSNPP_CONTINUOUS)), path)
    with pytest.raises(UserError, match="not found"):
        load_score_sde_checkpoint(ScoreSdeScoreNet(_small(CIFAR10_NCSNPP_CONTINUOUS)), tmp_path / "nope.pth")


# ----------------------------------------------------------------------------- formula pieces

def test_fir_kernel_is_the_normalised_outer_product():
    k = fir.setup_kernel([1, 3, 3, 1], torch.float64)
    expected = torch.tensor([[1, 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]], dtype=torch.float64) / 64
    assert torch.equal(k, expected)


def _down1d(a):  # [1, 3, 3, 1] / 8 with one zero of padding each side, every second output
    p = [0.0, *a, 0.0]
    return torch.tensor([(p[2 * i] + 3 * p[2 * i + 1] + 3 * p[2 * i + 2] + p[2 * i + 3]) / 8
                         for i in range(len(a) // 2)], dtype=torch.float64)


def _up1d(a):  # out[2i] = (a[i-1] + 3 a[i]) / 4, out[2i+1] = (3 a[i] + a[i+1]) / 4, zeros outside
    p = [0.0, *a, 0.0]
    out = []
    for i in range(len(a)):
        out += [(p[i] + 3 * p[i + 1]) / 4, (3 * p[i + 1] + p[i + 2]) / 4]
    return torch.tensor(out, dtype=torch.float64)


def test_fir_up_and_down_sampling_of_separable_images_by_hand():
    u = [1.0, -2.0, 0.5, 3.0, 1.5, -1.0]
    v = [0.25, 2.0, -1.0, 4.0, 0.0, 1.0]
    x = torch.outer(torch.tensor(u, dtype=torch.float64), torch.tensor(v, dtype=torch.float64))[None, None]
    assert torch.allclose(fir.downsample_2d(x)[0, 0], torch.outer(_down1d(u), _down1d(v)), atol=1e-14)
    assert torch.allclose(fir.upsample_2d(x)[0, 0], torch.outer(_up1d(u), _up1d(v)), atol=1e-14)
    ones = torch.ones(1, 1, 6, 6, dtype=torch.float64)  # constant images stay constant inside
    assert torch.allclose(fir.upsample_2d(ones)[0, 0, 1:-1, 1:-1], torch.ones(10, 10, dtype=torch.float64))


def test_fused_fir_convolutions_with_an_identity_kernel_are_the_plain_resamplers():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.zeros(3, 3, 3, 3, dtype=torch.float64)
    for c in range(3):
        w[c, c, 1, 1] = 1.0
    assert torch.allclose(fir.conv_downsample_2d(x, w), fir.downsample_2d(x), atol=1e-14)
    assert torch.allclose(fir.upsample_conv_2d(x, w), fir.upsample_2d(x), atol=1e-14)


def test_skip_rescale_divides_the_residual_sum_by_sqrt2():
    from repro.nets.score_sde.layers import AttnBlockpp, ResnetBlockBigGANpp

    x = torch.randn(2, 8, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for rescale, factor in ((True, 1 / math.sqrt(2.0)), (False, 1.0)):
        block = ResnetBlockBigGANpp(torch.nn.SiLU(), 8, 8, temb_dim=None, skip_rescale=rescale).double()
        with torch.no_grad():  # residual branch h = Conv_1(...) = 0
            block.Conv_1.weight.zero_()
            block.Conv_1.bias.zero_()
        assert torch.allclose(block(x), x * factor, atol=1e-14)
        att = AttnBlockpp(8, skip_rescale=rescale).double()
        with torch.no_grad():
            att.NIN_3.W.zero_()
            att.NIN_3.b.fill_(0.5)
        assert torch.allclose(att(x), (x + 0.5) * factor, atol=1e-14)


def test_embeddings():
    from repro.nets.score_sde.layers import GaussianFourierProjection, timestep_embedding

    f = GaussianFourierProjection(4, scale=1.0)
    x = torch.tensor([0.5, -1.0])
    proj = 2 * math.pi * x[:, None] * f.W[None, :]
    assert torch.allclose(f(x), torch.cat([proj.sin(), proj.cos()], 1))
    e = timestep_embedding(torch.tensor([0.0, 10.0]), 6)  # half = 3, w_k = 10000^(-k / 2)
    w = torch.tensor([1.0, 1e-2, 1e-4])
    assert torch.allclose(e[1], torch.cat([(10 * w).sin(), (10 * w).cos()]), atol=1e-6)
    assert torch.equal(e[0], torch.tensor([0.0, 0, 0, 1, 1, 1]))


def test_vp_forward_recovers_t_from_std_and_matches_the_release_score_fn():
    from repro.diffusion.sde import VPSDE, net_score_fn

    sde = VPSDE(0.1, 20.0)
    net = ScoreSdeScoreNet(_small(CIFAR10_DDPMPP_CONTINUOUS), sde="vp").double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.01, 0.4, 0.95], dtype=torch.float64)
    assert torch.allclose(net._t_of_std(sde.noise_level(t)), t, atol=1e-12, rtol=0)
    # the release embeds 999 t in float32, so the two paths agree to float32 rounding of t
    assert torch.allclose(net_score_fn(net, sde)(x, t), net.score_fn(sde)(x, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ncsnpp_digits_ve", "ncsnpp_digits_vp"])
def test_train_pretrained_loads_the_release_checkpoint_with_ema_weights(workdir, monkeypatch, name):
    from repro.trainers.ensure import ensure_model
    from repro.specs import resolve_model
    from repro.trainers.score_sde import release_net
    from repro.trainers.score_model import score_model_for

    monkeypatch.setenv("REPRO_NO_MLFLOW", "1")
    net_over = {"architecture": "score_sde", "sigma_max": 5.0, "nf": 8, "ch_mult": [1, 2], "attn_resolutions": [8]}
    resolved = resolve_model(name, "test", {"net": net_over})
    ref = release_net(resolved)
    g = torch.Generator().manual_seed(3)
    shadow = [torch.randn(p.shape, generator=g) for p in ref.parameters() if p.requires_grad]
    path = workdir / "checkpoint_5.pth"
    torch.save({"model": ref.state_dict(), "ema": {"decay": 0.9999, "num_updates": 1, "shadow_params": shadow},
                "optimizer": {}, "step": 5}, path)
    trained = ensure_model(name, "test", overrides={"net": net_over, "train": {"pretrained": str(path)}},
                           progress=False)
    assert trained.meta["weights"] == "ema" and trained.meta["checkpoint_step"] == 5
    params = [p for p in trained.net.parameters() if p.requires_grad]
    assert all(torch.equal(p, s) for p, s in zip(params, shadow))
    model = score_model_for(trained)
    x = torch.rand(2, *model.shape)
    t = torch.tensor([0.2, 0.8])
    assert torch.equal(model.score_fn(x, t), trained.net.score_fn(model.sde)(x, t))


def test_pretrained_checkpoint_is_opened_and_checked_before_work(workdir):
    from repro.trainers.weights import validate_model_files
    from repro.errors import UserError
    from repro.specs import resolve_model
    from repro.trainers.score_sde import release_net

    resolved = resolve_model("ncsnpp_digits_ve", "paper", {"train": {"pretrained": "/nowhere/checkpoint_24.pth"}})
    with pytest.raises(UserError, match="/nowhere/checkpoint_24.pth not found"):
        validate_model_files(resolved)
    net_over = {"architecture": "score_sde", "sigma_max": 5.0, "nf": 8, "ch_mult": [1, 2], "attn_resolutions": []}
    empty, foreign, wrong, good = (workdir / f"{n}.pth" for n in ("empty", "foreign", "wrong", "good"))
    empty.write_bytes(b"")
    torch.save({"layer.weight": torch.zeros(2)}, foreign)
    small = resolve_model("ncsnpp_digits_ve", "test", {"net": net_over})
    ref = release_net(small)
    shadow = [p.detach().clone() for p in ref.parameters() if p.requires_grad]
    torch.save({"model": ref.state_dict(), "ema": {"shadow_params": shadow}, "step": 1}, good)
    torch.save({"model": ref.state_dict(), "ema": {"shadow_params": shadow[:-1]}, "step": 1}, wrong)
    for path, message in ((empty, "is empty"), (foreign, "not a score SDE release checkpoint"),
                          (wrong, "no EMA weights")):
        with pytest.raises(UserError, match=message):
            validate_model_files(resolve_model("ncsnpp_digits_ve", "test",
                                               {"net": net_over, "train": {"pretrained": str(path)}}))
    validate_model_files(resolve_model("ncsnpp_digits_ve", "test", {"net": net_over, "train": {"pretrained": str(good)}}))
    other = {**net_over, "nf": 16}   # another architecture: keys/shapes differ
    with pytest.raises(UserError, match="does not match"):
        validate_model_files(resolve_model("ncsnpp_digits_ve", "test", {"net": other, "train": {"pretrained": str(good)}}))


def test_preflight_names_every_missing_file_in_one_line(workdir, monkeypatch):
    from repro.errors import UserError
    from repro.engine.preflight import preflight
    from repro.specs import parse_set
    from repro.experiments import resolve_spec

    monkeypatch.setenv("REPRO_DATA", str(workdir / "data"))
    monkeypatch.delenv("REPRO_FID_WEIGHTS", raising=False)
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(workdir / "hub"))
    try:
        resolved = resolve_spec("sampler_table", "paper", parse_set([
            "models.ve.train.pretrained=/ckpt/ve/checkpoint_24.pth",
            "models.vp.train.pretrained=/ckpt/vp/checkpoint_8.pth"]))
        with pytest.raises(UserError) as info:
            preflight(resolved)
    finally:
        torch.hub.set_dir(before)
    message = str(info.value)
    assert "\n" not in message and message.startswith("4 problems")
    for name in ("cifar10", "/ckpt/ve/checkpoint_24.pth", "/ckpt/vp/checkpoint_8.pth",
                 "pt_inception-2015-12-05-6726825d.pth"):
        assert name in message
    assert not (workdir / "results").exists()
