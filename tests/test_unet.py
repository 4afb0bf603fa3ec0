"""Noise-conditional U-Net segmenter (thesis Sec. 5.2) and the evaluator networks."""

import subprocess
import sys

import pytest
import torch

from repro.nets import DigitsClassifier, NoiseConditionalUNet, SceneFeatureNet, count_parameters


def _tiny(**kw):
    torch.manual_seed(0)
    defaults = dict(in_channels=3, num_classes=5, base_channels=4, depth=2)
    defaults.update(kw)
    return NoiseConditionalUNet(**defaults).eval()


@pytest.mark.parametrize("size", [(16, 32), (15, 33), (1, 1)])
@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_logits_shape_for_any_size(size, norm):
    g = torch.Generator().manual_seed(1)
    model = _tiny(norm=norm)
    x = torch.rand(2, 3, *size, generator=g)
    out = model(x, torch.tensor([0.0, 1.5]))
    assert out.shape == (2, 5, *size)
    assert torch.isfinite(out).all()


def test_bilinear_up_mode_and_no_noise_channel():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 15, 33, generator=g)
    assert _tiny(up_mode="bilinear")(x, torch.tensor([0.3])).shape == (1, 5, 15, 33)
    plain = _tiny(noise_channel=False)
    assert plain.inc[0].in_channels == 3
    assert plain(x).shape == (1, 5, 15, 33)


def test_noise_level_is_a_fourth_input_channel_and_changes_the_output():
    model = _tiny()
    assert model.inc[0].in_channels == 4  # thesis Sec. 5.2.2: C + 1 input channels
    x = torch.rand(2, 3, 16, 32, generator=torch.Generator().manual_seed(3))
    low = model(x, torch.tensor([-4.0, -4.0]))
    high = model(x, torch.tensor([5.0, 5.0]))
    assert (low - high).abs().max() > 1e-3
    # per-sample levels: each image sees its own level; a scalar level broadcasts
    mixed = model(x, torch.tensor([-4.0, 5.0]))
    torch.testing.assert_close(mixed[0], low[0])
    torch.testing.assert_close(mixed[1], high[1])
    torch.testing.assert_close(model(x, -4.0), low)


def test_crop_back_keeps_images_independent_and_local():
    # group norm works per image, so a batch of two gives the same logits as each alone
    model = _tiny()
    x = torch.rand(2, 3, 15, 33, generator=torch.Generator().manual_seed(4))
    both = model(x, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(both[1:], model(x[1:], torch.tensor([0.5])))


def test_gradient_reaches_the_input():
    # guidance needs grad_x log p(y | x(t)) through the segmenter
    model = _tiny()
    x = torch.rand(1, 3, 15, 33, requires_grad=True)
    model(x, torch.tensor([0.0])).logsumexp(1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="norm"):
        NoiseConditionalUNet(norm="layer")
    model = _tiny()
    with pytest.raises(ValueError, match="noise_level"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="entries"):
        model(torch.rand(2, 3, 8, 8), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        model(torch.rand(1, 4, 8, 8), torch.tensor([0.1]))


def test_paper_configuration_builds():
    # thesis Sec. 5.4.3: classical U-Net, 3 colour channels + 1 noise channel, 20 Cityscapes classes
    model = NoiseConditionalUNet(in_channels=3, num_classes=20, base_channels=64, depth=4)
    assert model.inc[0].in_channels == 4
    assert model.head.out_channels == 20
    # Ronneberger's U-Net has ~31.0M parameters; group-norm affine terms add a few thousand
    assert count_parameters(model) == 31_039_444
    assert count_parameters(NoiseConditionalUNet(3, 20, 64, 4, norm="none")) == 31_033_556


def test_count_parameters_skips_frozen():
    model = _tiny()
    total = count_parameters(model)
    for p in model.head.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.head.parameters())
    assert count_parameters(model) == total - frozen
    assert count_parameters(model, trainable_only=False) == total


def test_digits_classifier_features_and_logits():
    torch.manual_seed(0)
    net = DigitsClassifier(feature_dim=32)
    for size in (8, 28):
        x = torch.rand(3, 1, size, size)
        assert net.features(x).shape == (3, 32)
        assert net(x).shape == (3, 10)


def test_scene_feature_net_features_and_segmentation_logits():
    torch.manual_seed(0)
    net = SceneFeatureNet(num_classes=8, feature_dim=24)
    x = torch.rand(2, 3, 15, 33)
    assert net.features(x).shape == (2, 24)
    assert net(x).shape == (2, 8, 15, 33)
    assert net.classify(x).shape == (2, 8)
    assert count_parameters(net) < 50_000  # tiny by design


def test_importing_nets_does_not_import_torchvision():
    code = "import sys, repro.nets; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
