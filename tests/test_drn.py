"""fyu/drn's DRN-D-105 segmenter (repro.nets.drn) and the `pretrained_segmenter` model kind.

The released `drn-d-105_ms_cityscapes.pth` is a state dict of fyu/drn segment.py's
`DRNSeg('drn_d_105', 19)`: `base` = the DRN's children without avgpool/fc (drn.py, arch 'D':
layer0..layer8 -> base.0..base.8), `seg` a 1x1 conv, `up` a frozen bilinear ConvTranspose2d.
`reference_layout` below writes its keys and shapes out from that construction; the `Ref*`
classes transcribe drn.py/segment.py (fyu/drn @ d75db2e) to compare outputs on the same weights.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from repro.errors import UserError
from repro.nets.drn import CITYSCAPES_MEAN, CITYSCAPES_STD, DRNSeg, DRNSegmenter, bilinear_up_kernel

#: DRNSeg(drn_d_105, 19): 54,288,304 in the trunk + 9,747 in seg + 4,864 in the frozen up kernel.
#: fyu/drn's README lists DRN-D-105 at 54.8M: the trunk plus its ImageNet fc (512 x 1000 + 1000).
DRN_D_105_SEG_PARAMS = 54_302_915


# ----------------------------------------------------------------------------- the reference layout

def bn(prefix: str, c: int, tracked: bool = True) -> dict[str, tuple]:
    out = {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}
    if tracked:   # added by PyTorch 0.4.1; the 2017 release files lack it
        out[f"{prefix}.num_batches_tracked"] = ()
    return out


def bottleneck(prefix: str, cin: int, planes: int, down: bool, tracked: bool) -> dict[str, tuple]:
    out = {f"{prefix}.conv1.weight": (planes, cin, 1, 1)} | bn(f"{prefix}.bn1", planes, tracked)
    out |= {f"{prefix}.conv2.weight": (planes, planes, 3, 3)} | bn(f"{prefix}.bn2", planes, tracked)
    out |= {f"{prefix}.conv3.weight": (4 * planes, planes, 1, 1)} | bn(f"{prefix}.bn3", 4 * planes, tracked)
    if down:
        out |= {f"{prefix}.downsample.0.weight": (4 * planes, cin, 1, 1)}
        out |= bn(f"{prefix}.downsample.1", 4 * planes, tracked)
    return out


def reference_layout(classes: int = 19, tracked: bool = True) -> dict[str, tuple]:
    """DRNSeg('drn_d_105', classes): DRN(Bottleneck, [1, 1, 3, 4, 23, 3, 1, 1], arch='D'), channels
    (16, 32, 64, 128, 256, 512, 512, 512)."""
    want = {"base.0.0.weight": (16, 3, 7, 7)} | bn("base.0.1", 16, tracked)          # layer0
    want |= {"base.1.0.weight": (16, 16, 3, 3)} | bn("base.1.1", 16, tracked)        # layer1: 1 conv
    want |= {"base.2.0.weight": (32, 16, 3, 3)} | bn("base.2.1", 32, tracked)        # layer2: 1 conv, /2
    cin = 32
    for stage, (planes, n) in enumerate(((64, 3), (128, 4), (256, 23), (512, 3)), start=3):  # layer3..6
        for i in range(n):
            # the first block projects: stride 2 (layers 3, 4) or inplanes != 4 planes (5, 6)
            want |= bottleneck(f"base.{stage}.{i}", cin, planes, down=i == 0, tracked=tracked)
            cin = 4 * planes
    want |= {"base.7.0.weight": (512, 2048, 3, 3)} | bn("base.7.1", 512, tracked)    # layer7: dilation 2
    want |= {"base.8.0.weight": (512, 512, 3, 3)} | bn("base.8.1", 512, tracked)     # layer8
    want |= {"seg.weight": (classes, 512, 1, 1), "seg.bias": (classes,), "up.weight": (classes, 1, 16, 16)}
    return want


def random_state(layout: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in a layout: He-normal convs, BN affine and running stats away from 1/0."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", "bias")):
            out[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:   # BN weight; small so 33 residual blocks stay in range
            out[key] = 0.3 * torch.rand(shape, generator=g) + 0.2
        else:
            fan_out = shape[0] * math.prod(shape[2:])
            out[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_out)
    return out


def shapes(net: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


# ----------------------------------------------------------------------------- transcription of fyu/drn

def ref_conv3x3(cin, cout, stride=1, padding=1, dilation=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding, bias=False, dilation=dilation)


class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=(1, 1), residual=True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation[1], bias=False,
                               dilation=dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class RefDRN(nn.Module):
    """drn.DRN for arch='D' (the branch drn_d_105 takes), num_classes=1000."""

    def __init__(self, block, layers, num_classes=1000, channels=(16, 32, 64, 128, 256, 512, 512, 512),
                 pool_size=28):
        super().__init__()
        self.inplanes = channels[0]
        self.out_dim = channels[-1]
        self.layer0 = nn.Sequential(nn.Conv2d(3, channels[0], kernel_size=7, stride=1, padding=3, bias=False),
                                    nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        self.layer1 = self._make_conv_layers(channels[0], layers[0], stride=1)
        self.layer2 = self._make_conv_layers(channels[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, channels[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, channels[3], layers[3], stride=2)
        self.layer5 = self._make_layer(block, channels[4], layers[4], dilation=2, new_level=False)
        self.layer6 = None if layers[5] == 0 else self._make_layer(block, channels[5], layers[5], dilation=4,
                                                                   new_level=False)
        self.layer7 = None if layers[6] == 0 else self._make_conv_layers(channels[6], layers[6], dilation=2)
        self.layer8 = None if layers[7] == 0 else self._make_conv_layers(channels[7], layers[7], dilation=1)
        if num_classes > 0:
            self.avgpool = nn.AvgPool2d(pool_size)
            self.fc = nn.Conv2d(self.out_dim, num_classes, kernel_size=1, stride=1, padding=0, bias=True)

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1, new_level=True, residual=True):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1,
                                                 stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample,
                        dilation=(1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation),
                        residual=residual)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, residual=residual, dilation=(dilation, dilation)))
        return nn.Sequential(*layers)

    def _make_conv_layers(self, channels, convs, stride=1, dilation=1):
        modules = []
        for i in range(convs):
            modules.extend([nn.Conv2d(self.inplanes, channels, kernel_size=3, stride=stride if i == 0 else 1,
                                      padding=dilation, bias=False, dilation=dilation),
                            nn.BatchNorm2d(channels), nn.ReLU(inplace=True)])
            self.inplanes = channels
        return nn.Sequential(*modules)


def ref_fill_up_weights(up):
    w = up.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    for i in range(w.size(2)):
        for j in range(w.size(3)):
            w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
    for c in range(1, w.size(0)):
        w[c, 0, :, :] = w[0, 0, :, :]


class RefDRNSeg(nn.Module):
    """segment.DRNSeg(model_name='drn_d_105', classes, pretrained=False)."""

    def __init__(self, classes):
        super().__init__()
        model = RefDRN(RefBottleneck, [1, 1, 3, 4, 23, 3, 1, 1])
        self.base = nn.Sequential(*list(model.children())[:-2])
        self.seg = nn.Conv2d(model.out_dim, classes, kernel_size=1, bias=True)
        self.softmax = nn.LogSoftmax(dim=1)
        up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, output_padding=0, groups=classes,
                                bias=False)
        ref_fill_up_weights(up)
        up.weight.requires_grad = False
        self.up = up

    def forward(self, x):
        x = self.base(x)
        x = self.seg(x)
        y = self.up(x)
        return self.softmax(y), x


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return random_state(reference_layout())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, weights):
    """The random weights as fyu/drn saves a bare DRNSeg state dict (segment.py test --pretrained)."""
    path = tmp_path_factory.mktemp("drn") / "drn-d-105_ms_cityscapes.pth"
    torch.save(weights, path)
    return path


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, checkpoint):
    """(net, meta) of the model kind's train_model on that file: the path the released file takes."""
    from repro.trainers import pretrained_segmenter

    return pretrained_segmenter.train_model(resolve(checkpoint), tmp_path_factory.mktemp("out"),
                                            torch.device("cpu"), None, False)


@pytest.fixture(scope="module")
def segmenter(loaded) -> DRNSegmenter:
    return loaded[0]


@pytest.fixture(scope="module")
def reference(weights) -> RefDRNSeg:
    ref = RefDRNSeg(19)
    ref.load_state_dict(weights, strict=True)
    return ref.eval()


def resolve(checkpoint, profile: str = "paper", arch: str = "drn_d_105"):
    from repro.specs import resolve_model

    return resolve_model("drn_d_105_cityscapes", profile, {"net.checkpoint": str(checkpoint), "net.arch": arch})


# ----------------------------------------------------------------------------- layout and equivalence

def test_layout_and_parameter_count_are_those_of_fyu_drn_drnseg_d_105(segmenter, reference):
    net = segmenter.drn   # built by DRNSeg('drn_d_105', 19); loaded strictly from the layout above
    assert shapes(net) == reference_layout()
    assert sum(p.numel() for p in net.parameters()) == DRN_D_105_SEG_PARAMS
    assert shapes(reference) == reference_layout()
    assert sum(p.numel() for p in reference.parameters()) == DRN_D_105_SEG_PARAMS
    trunk = DRN_D_105_SEG_PARAMS - 19 * 512 - 19 - 19 * 16 * 16
    assert round((trunk + 512 * 1000 + 1000) / 1e6, 1) == 54.8   # fyu/drn README's DRN-D-105 size
    assert not net.up.weight.requires_grad and net.seg.weight.requires_grad


def test_outputs_equal_the_transcribed_reference_on_the_same_weights(segmenter, reference):
    x = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_logp, ref_coarse = reference(x)
        scores = segmenter.drn(x)
        coarse = segmenter.drn.seg(segmenter.drn.base(x))
    assert ref_coarse.shape == (1, 19, 8, 16) and scores.shape == (1, 19, 64, 128)
    assert float(ref_coarse.abs().max()) > 1e-2 and bool(torch.isfinite(ref_logp).all())
    assert (coarse - ref_coarse).abs().max() <= 1e-5 * ref_coarse.abs().max()
    assert (torch.log_softmax(scores, 1) - ref_logp).abs().max() < 1e-4


def test_up_is_fyu_drns_frozen_bilinear_kernel():
    net = DRNSeg("drn_d_22", 19)   # the same head as drn_d_105's, on a 16M-parameter trunk
    # f = ceil(16/2) = 8, c = (2f - 1 - f mod 2)/(2f) = 15/16: w[i, j] = (1-|i/8 - 15/16|)(1-|j/8 - 15/16|)
    line = torch.tensor([1 - abs(i / 8 - 15 / 16) for i in range(16)])
    assert torch.allclose(bilinear_up_kernel(16), torch.outer(line, line))
    assert line[0] == 1 / 16 and line[7] == line[8] == 15 / 16 and line[15] == 1 / 16
    ref = nn.ConvTranspose2d(19, 19, 16, stride=8, padding=4, groups=19, bias=False)
    ref_fill_up_weights(ref)
    assert torch.allclose(net.up.weight, ref.weight)
    # bilinear interpolation: a constant map stays constant away from the border, a ramp stays a ramp
    with torch.no_grad():
        flat = net.up(torch.ones(1, 19, 4, 6))
        ramp = net.up(torch.arange(6.0).expand(1, 19, 4, 6))
    assert flat.shape == (1, 19, 32, 48) and torch.allclose(flat[..., 4:-4, 4:-4], torch.ones(()))
    assert torch.allclose(ramp[0, 0, 8, 12:36].diff(), torch.full((23,), 1 / 8))


# ----------------------------------------------------------------------------- the suite's interface

def test_segmenter_normalises_appends_a_background_that_never_wins_and_keeps_the_size(segmenter):
    assert torch.allclose(segmenter.mean.flatten(), torch.tensor([0.290101, 0.328081, 0.286964]), atol=1e-6)
    assert torch.allclose(segmenter.std.flatten(), torch.tensor([0.182954, 0.186566, 0.184475]), atol=1e-6)
    assert segmenter.mean.flatten().tolist() == pytest.approx(list(CITYSCAPES_MEAN))
    images = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = segmenter(images)
        drn = segmenter.drn((images - torch.tensor(CITYSCAPES_MEAN).view(1, 3, 1, 1))
                            / torch.tensor(CITYSCAPES_STD).view(1, 3, 1, 1))
    assert out.shape == (1, 20, 64, 128) and "background" not in segmenter.state_dict()
    assert torch.allclose(out[:, :19], torch.log_softmax(drn, 1), atol=1e-5)
    assert torch.equal(out.argmax(1), drn.argmax(1)) and int(out.argmax(1).max()) <= 18
    assert bool((out[:, 19] <= -1e4).all()) and torch.allclose(out.exp().sum(1), torch.ones(()))
    # sizes that are no multiple of DRN's output stride 8 are resized back to the input
    with torch.no_grad():
        odd = segmenter(torch.rand(1, 3, 36, 52))
    assert odd.shape == (1, 20, 36, 52) and int(odd.argmax(1).max()) <= 18


# ----------------------------------------------------------------------------- the model kind

def test_train_model_loads_the_released_layout_strictly(loaded, weights):
    net, meta = loaded
    assert isinstance(net, DRNSegmenter) and not net.training
    assert all(torch.equal(v, weights[k]) for k, v in net.drn.state_dict().items())
    assert meta["num_classes"] == 20 and meta["never_predicted"] == [19] and meta["arch"] == "drn_d_105"
    assert meta["parameters"] == DRN_D_105_SEG_PARAMS and len(meta["checkpoint_sha256"]) == 64


def test_train_model_reads_dataparallel_resume_and_pre_0_4_files(tmp_path):
    """fyu/drn saves nn.DataParallel state dicts ('module.' keys, in {'state_dict': ...} when resuming);
    files from PyTorch < 0.4.1 have no BatchNorm num_batches_tracked (drn_d_22: same code, 16M params)."""
    from repro.trainers import pretrained_segmenter

    src = DRNSeg("drn_d_22", 19).eval()
    state = src.state_dict()
    files = {"module": tmp_path / "dp.pth", "resume": tmp_path / "checkpoint.pth.tar", "legacy": tmp_path / "old.pth"}
    torch.save({f"module.{k}": v for k, v in state.items()}, files["module"])
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, files["resume"])
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, files["legacy"])
    probe = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = torch.log_softmax(src((probe - torch.tensor(CITYSCAPES_MEAN).view(1, 3, 1, 1))
                                     / torch.tensor(CITYSCAPES_STD).view(1, 3, 1, 1)), 1)
    for what, path in files.items():
        net, _ = pretrained_segmenter.train_model(resolve(path, arch="drn_d_22"), tmp_path, torch.device("cpu"),
                                                  None, False)
        with torch.no_grad():
            assert torch.allclose(net(probe)[:, :19], want, atol=1e-6), what


def one_line_user_error(fn, *needles):
    with pytest.raises(UserError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_a_missing_checkpoint_is_one_line_naming_the_file_and_the_setting(workdir, monkeypatch):
    from repro.trainers.ensure import ensure_model
    from repro.trainers import pretrained_segmenter

    monkeypatch.setenv("REPRO_NO_MLFLOW", "1")
    one_line_user_error(lambda: ensure_model("drn_d_105_cityscapes", "paper"),
                        "checkpoints/drn/drn-d-105_ms_cityscapes.pth", "models.evaluator.net.checkpoint=PATH")
    one_line_user_error(lambda: pretrained_segmenter.validate(resolve(workdir / "nowhere.pth", "smoke")),
                        str(workdir / "nowhere.pth"), "drn-d-105_ms_cityscapes.pth", "--set")
    assert not (workdir / "artifacts").exists()


def test_corrupt_or_foreign_files_are_one_line_errors(workdir):
    from repro.trainers import pretrained_segmenter

    garbage = workdir / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    foreign = workdir / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, foreign)
    cpu = torch.device("cpu")
    for path, needle in ((garbage, "weights-only"), (foreign, "Missing key")):
        resolved = resolve(path, arch="drn_d_22")   # the same loader as drn_d_105's, a smaller net to build
        one_line_user_error(lambda: pretrained_segmenter.train_model(resolved, workdir, cpu, None, False),
                            "drn_d_105_cityscapes", str(path), needle)


def test_ensure_model_stores_and_reloads_the_published_weights(workdir, monkeypatch):
    """Round trip through repro.models at a smaller DRN (drn_d_22, the same code path)."""
    from repro.trainers.ensure import ensure_model

    monkeypatch.setenv("REPRO_NO_MLFLOW", "1")
    src = DRNSeg("drn_d_22", 19)
    path = workdir / "drn_d_22_cityscapes.pth"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, path)
    overrides = {"net.checkpoint": str(path), "net.arch": "drn_d_22"}
    first = ensure_model("drn_d_105_cityscapes", "paper", overrides=overrides, progress=False)
    again = ensure_model("drn_d_105_cityscapes", "paper", overrides=overrides, progress=False)
    images = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(first.net(images), again.net(images))
        assert torch.equal(again.net.drn.seg.weight, src.seg.weight)
    assert again.meta["arch"] == "drn_d_22" and again.meta["checkpoint"] == str(path)


def test_the_config_resolves_at_every_profile():
    from repro.specs import PROFILES, resolve_model

    for profile in PROFILES:
        cfg = resolve_model("drn_d_105_cityscapes", profile).config
        assert cfg.kind == "pretrained_segmenter" and cfg.net["arch"] == "drn_d_105"
        assert cfg.dataset.name == "cityscapes" and tuple(cfg.dataset.resolution) == (256, 512)
