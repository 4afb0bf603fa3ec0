"""EDM's geometric augmentation pipe (repro.diffusion.augment), its labels in the EDM loss and
preconditioning, and the `edm` trainer's augment settings."""
import math

import pytest
import torch

from repro.diffusion.augment import (
    EDM_AUGMENT_DIM,
    AugmentPipe,
    edm_cifar10_augment,
    rotate2d,
    translate2d,
    translate_integer,
    warp_affine,
)
from repro.diffusion.edm import EDMPrecond, edm_loss
from repro.errors import UserError
from repro.nets.ddpmpp import DDPMpp, DDPMppConfig


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=4, c=3, h=8, w=8, seed=0, dtype=torch.float32):
    return torch.rand(n, c, h, w, generator=gen(seed), dtype=dtype) * 2 - 1


# ---------------------------------------------------------------- the pipe
def test_p0_is_the_identity_with_all_zero_labels():
    x = images()
    out, labels = edm_cifar10_augment(0.0)(x, gen())
    assert torch.equal(out, x)
    assert labels.shape == (4, EDM_AUGMENT_DIM) == (4, 9) and not labels.any()


def test_xflip_alone_at_p1_flips_exactly_the_samples_its_label_marks():
    x = images(n=32)
    out, labels = AugmentPipe(p=1.0, xflip=1)(x, gen(1))
    assert labels.shape == (32, 1) and set(labels.flatten().tolist()) == {0.0, 1.0}   # a fair coin
    for i in range(32):
        assert torch.equal(out[i], x[i].flip(-1) if labels[i, 0] == 1 else x[i])


def test_edm_cifar10_recipe_label_layout_and_flip_rates():
    # xflip multiplier 1e8: always chosen, then a coin (rate 1/2); yflip only with prob p (rate p/2).
    pipe = edm_cifar10_augment(0.12)
    assert pipe.label_dim == 9
    _, labels = pipe(torch.zeros(4000, 1, 4, 4), gen(2))
    assert abs(labels[:, 0].mean().item() - 0.5) < 0.04
    assert abs(labels[:, 1].mean().item() - 0.06) < 0.02
    # rotation labels are (cos w - 1, sin w): on the unit circle around (-1, 0)
    assert torch.allclose((labels[:, 3] + 1) ** 2 + labels[:, 4] ** 2, torch.ones(4000), atol=1e-5)
    # scale, rotation, aniso, translate each applied to about p of the samples
    for cols in ([2], [3, 4], [5, 6], [7, 8]):
        assert abs(labels[:, cols].ne(0).any(1).float().mean().item() - 0.12) < 0.03


def test_integer_translation_moves_pixels_with_reflection_at_the_border():
    x = images(n=1, c=2, h=6, w=7)
    right2 = translate_integer(x, torch.tensor([2]), torch.tensor([0]))
    assert torch.equal(right2[..., 2:], x[..., :-2])                   # +tx moves content right
    assert torch.equal(right2[..., 0], x[..., 2]) and torch.equal(right2[..., 1], x[..., 1])   # mirrored
    up1 = translate_integer(x, torch.tensor([0]), torch.tensor([1]))
    assert torch.equal(up1[..., :-1, :], x[..., 1:, :])                # +ty moves content up (as EDM)
    assert torch.equal(up1[..., -1, :], x[..., -2, :])
    # inside the pipe: the labels give the shift in units of translate_int_max * size
    pipe = AugmentPipe(p=1.0, translate_int=1, translate_int_max=0.25)
    x = images(n=8, h=8, w=8, seed=3)
    out, labels = pipe(x, gen(4))
    assert labels.shape == (8, 2)
    shifts = (labels * 8 * 0.25).round().long()
    assert torch.allclose(labels * 2, shifts.float())                    # whole pixels
    assert torch.equal(out, translate_integer(x, shifts[:, 0], shifts[:, 1]))


def test_warp_affine_conventions_translation_reflect_padding_and_rotation():
    x = images(n=1, c=1, h=8, w=8, seed=5, dtype=torch.float64)
    # G_inv maps output to input coordinates: T(-2, 0) moves content 2 pixels right
    shifted = warp_affine(x, translate2d(torch.tensor([-2.0]), torch.tensor([0.0])))
    assert torch.allclose(shifted, translate_integer(x, torch.tensor([2]), torch.tensor([0])), atol=1e-6)
    # a quarter turn is a pixel permutation
    turned = warp_affine(x, rotate2d(torch.tensor([math.pi / 2])))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_same_seed_same_augmentation_and_another_seed_another():
    x = images(n=8)
    pipe = edm_cifar10_augment(1.0)
    a, la = pipe(x, gen(7))
    b, lb = pipe(x, gen(7))
    c, lc = pipe(x, gen(8))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(la, lc) and not torch.equal(a, c)


@pytest.mark.parametrize("shape,dtype", [((3, 1, 16, 16), torch.float32), ((2, 3, 8, 12), torch.float64)])
def test_shape_and_dtype_are_preserved(shape, dtype):
    x = torch.rand(shape, generator=gen(), dtype=dtype) * 2 - 1
    out, labels = edm_cifar10_augment(1.0)(x, gen(9))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert labels.shape == (shape[0], 9) and labels.dtype == torch.float32
    assert out.abs().max() < 1.5                                  # bicubic may overshoot a little, not blow up


def test_labels_are_zero_exactly_where_a_transform_was_not_applied():
    x = images(n=48, seed=10)
    out, labels = edm_cifar10_augment(0.5)(x, gen(11))
    geometric = labels[:, 2:].ne(0).any(1)
    assert 0 < geometric.sum() < 48
    for i in range(48):
        expected = x[i]
        if labels[i, 0] == 1:
            expected = expected.flip(-1)
        if labels[i, 1] == 1:
            expected = expected.flip(-2)
        if geometric[i]:
            assert not torch.equal(out[i], expected)
        else:
            assert torch.equal(out[i], expected)                  # untouched samples stay exact
    # one transform alone: a zero label <=> the sample is unchanged
    out, labels = AugmentPipe(p=0.5, scale=1)(x, gen(12))
    unchanged = torch.tensor([torch.equal(out[i], x[i]) for i in range(48)])
    assert torch.equal(unchanged, labels[:, 0] == 0) and 0 < unchanged.sum() < 48


# ---------------------------------------------------------------- the loss and the preconditioning
class _RecordingNet(torch.nn.Module):
    """F = 0, remembering the augmentation labels it was given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, c_noise, augment_labels=None):
        self.seen.append(augment_labels)
        return torch.zeros_like(x)


def test_edm_loss_augments_before_noising_and_hands_the_labels_to_the_net():
    x0 = images(n=6, seed=13)
    pipe = edm_cifar10_augment(1.0)
    net = _RecordingNet()
    loss = edm_loss(EDMPrecond(net), x0, gen(14), augment_pipe=pipe)
    # the same draws by hand: sigma first, then the augmentation, then the noise (EDM's EDMLoss)
    g = gen(14)
    sigma = (torch.randn(6, 1, 1, 1, generator=g) * 1.2 - 1.2).exp()
    y, labels = pipe(x0, g)
    noise = torch.randn(y.shape, generator=g)
    assert len(net.seen) == 1 and torch.equal(net.seen[0], labels) and labels.any()
    c_skip = 0.25 / (sigma**2 + 0.25)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    assert torch.allclose(loss, (weight * (c_skip * (y + sigma * noise) - y) ** 2).mean())   # target: y
    # without a pipe the net gets no labels
    edm_loss(EDMPrecond(net), x0, gen(14))
    assert net.seen[-1] is None


def test_ddpmpp_treats_missing_augment_labels_as_zeros():
    net = EDMPrecond(DDPMpp(DDPMppConfig(img_resolution=8, in_channels=1, out_channels=1, model_channels=8,
                                         channel_mult=(1,), channel_mult_emb=1, num_blocks=1,
                                         attn_resolutions=(), augment_dim=9))).eval()
    with torch.no_grad():   # away from DDPM++'s near-zero init, so that the labels' effect shows in F
        for i, p in enumerate(net.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen(i)) * 0.3)
    x, sigma = torch.randn(2, 1, 8, 8, generator=gen()), torch.tensor([0.5, 2.0])
    with torch.no_grad():
        plain = net(x, sigma)
        assert torch.equal(net(x, sigma, augment_labels=torch.zeros(2, 9)), plain)
        assert not torch.equal(net(x, sigma, augment_labels=torch.ones(2, 9)), plain)


# ---------------------------------------------------------------- the trainer
def test_trainer_refuses_augment_p_without_augment_dim_in_one_line():
    from repro.specs import resolve_model
    from repro.trainers.edm import validate

    with pytest.raises(UserError) as e:
        validate(resolve_model("edm_digits", "test", {"train.augment_p": 0.12}))
    assert "\n" not in str(e.value) and "train.augment_p" in str(e.value) and "net.augment_dim" in str(e.value)
    with pytest.raises(UserError, match="augment_p"):
        validate(resolve_model("edm_digits", "test", {"train.augment_p": 1.5}))
    validate(resolve_model("edm_digits", "test", {"train.augment_p": 0.12, "net.augment_dim": 9}))
    paper = resolve_model("edm_digits", "paper")
    assert paper.config.net["augment_dim"] == 9 and paper.config.train["augment_p"] == 0.12
    validate(paper)
    for profile in ("smoke", "test"):
        cfg = resolve_model("edm_digits", profile).config
        assert cfg.net["augment_dim"] == 0 and cfg.train["augment_p"] == 0.0


def test_trainer_trains_with_augmentation_and_records_p(tmp_path):
    from repro.specs import resolve_model
    from repro.trainers.edm import train_model

    resolved = resolve_model("edm_digits", "test", {"train.augment_p": 0.5, "net.augment_dim": 9,
                                                    "train.preview_samples": 0})
    net, meta = train_model(resolved, tmp_path, torch.device("cpu"), run=None, progress=False)
    assert meta["augment_p"] == 0.5 and meta["augment_dim"] == 9 and meta["steps"] == 2   # 32 images / 16
    assert math.isfinite(meta["final_loss"]) and net.net.map_augment is not None
