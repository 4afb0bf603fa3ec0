"""GPU paths (skipped without CUDA; CI has none): the checks only a GPU can run.

Run on a GPU machine: `python -m pytest -q tests/test_cuda.py`. They cover what the CPU tests
cannot: fp16 autocast with the GradScaler and CUDA memory probes in the training loop, samplers
and discriminator guidance on device tensors agreeing with the CPU, ADM encoders under autocast.
"""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class Images(torch.utils.data.Dataset):
    def __init__(self, n=64, res=16):
        self.x = torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i]}


def _small_edm():
    from repro.diffusion.edm import EDMPrecond
    from repro.nets.ddpmpp import DDPMpp, DDPMppConfig

    torch.manual_seed(0)
    cfg = DDPMppConfig(img_resolution=16, model_channels=32, channel_mult=(1, 2), num_blocks=1,
                       attn_resolutions=(8,), dropout=0.0)
    return EDMPrecond(DDPMpp(cfg))


def test_amp_training_uses_the_grad_scaler_and_reports_cuda_memory(tmp_path):
    from repro.diffusion.edm import edm_loss
    from repro.train import TrainConfig, train

    def loss(model, batch, g):
        return edm_loss(model, batch["image"] * 2 - 1, g)

    runs = {}
    for amp in (False, True):
        cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, amp=amp, device="cuda", ema_decay=0.99)
        res = train(_small_edm(), loss, Images(), cfg, tmp_path / str(amp), progress=False)
        assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
        assert res.probes["peak_memory_kind"] == "cuda_max_memory_allocated"
        assert res.probes["cuda_max_memory_reserved_mb"] >= res.probes["peak_memory_mb"] > 0
        assert next(res.model.parameters()).dtype == torch.float32   # master weights stay fp32
        runs[amp] = res
    ckpt = torch.load(tmp_path / "True" / "checkpoint.pt", weights_only=False)
    assert ckpt["scaler"]["scale"] > 0   # the GradScaler's state is checkpointed (resume)
    # the two precisions train the same model to similar losses
    assert abs(runs[True].history[-1]["loss"] - runs[False].history[-1]["loss"]) < 0.2


def test_heun_sampling_on_cuda_matches_the_cpu():
    from repro.sampling.edm import edm_sample

    net = _small_edm().eval().requires_grad_(False)
    z = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cpu = edm_sample(net, z, steps=6).samples
    gpu = edm_sample(net.cuda(), z.cuda(), steps=6).samples
    assert gpu.device.type == "cuda" and gpu.dtype == cpu.dtype
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-3)


def test_discriminator_guidance_on_cuda_matches_the_cpu():
    from repro.guidance.discriminator import discriminator_correction
    from repro.nets.adm import ADMFeatures, ADMHead, adm_classifier, dg_head
    from repro.nets.discriminator import TimeConditionedDiscriminator

    torch.manual_seed(0)
    enc = ADMFeatures(adm_classifier(32, width=64, depth=1))
    head = dg_head(enc.out_channels, 8, width=64, depth=1)
    for p in head.parameters():   # ADM zero-initialises some convs: give the head a gradient
        torch.nn.init.normal_(p, std=0.02)
    disc = TimeConditionedDiscriminator(enc, ADMHead(head), encoder_takes_time=True).eval()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    sigma = torch.tensor([0.3, 1.0, 5.0], dtype=torch.float64)
    g_cpu = discriminator_correction(disc, x, sigma)
    g_gpu = discriminator_correction(disc.cuda(), x.cuda(), sigma.cuda())
    assert float(g_cpu.abs().max()) > 0
    # cuDNN convolutions run in TF32 by default: agreement to ~1e-3 relative, not bit for bit
    rel = float((g_gpu.cpu() - g_cpu).norm() / g_cpu.norm())
    assert rel < 1e-2, rel


def test_adm_encoder_under_fp16_autocast_is_finite():
    from repro.nets.adm import adm_classifier

    net = adm_classifier(32).cuda().eval()
    x, tau = torch.randn(8, 3, 32, 32, device="cuda"), torch.rand(8, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        feats = net(x, tau, features=True)
    with torch.no_grad():
        ref = net(x, tau, features=True)
    assert feats.shape == (8, 512, 8, 8) and bool(torch.isfinite(feats).all())
    assert torch.allclose(feats.float(), ref, atol=5e-2 * float(ref.abs().max()))


def test_cli_device_resolution_accepts_the_gpu():
    from repro.environment import resolve_device

    assert resolve_device("cuda").type == "cuda" and resolve_device("auto").type == "cuda"


def test_cpu_generators_drive_cuda_training_and_sampling_like_on_the_cpu():
    """Runners and trainers seed CPU generators; draws happen there and move to the GPU."""
    from repro.diffusion.edm import edm_loss
    from repro.diffusion.losses import discriminator_bce_loss
    from repro.nets.discriminator import small_discriminator

    torch.manual_seed(0)
    disc = small_discriminator(3, 8)
    real, fake = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1
    cpu = discriminator_bce_loss(disc, real, fake, torch.Generator().manual_seed(5))
    gpu = discriminator_bce_loss(disc.cuda(), real.cuda(), fake.cuda(), torch.Generator().manual_seed(5))
    assert abs(float(cpu) - float(gpu)) < 1e-3
    net = _small_edm()
    a = edm_loss(net, real, torch.Generator().manual_seed(2))
    b = edm_loss(net.cuda(), real.cuda(), torch.Generator().manual_seed(2))
    assert abs(float(a) - float(b)) < 1e-3 * max(1.0, abs(float(a)))
