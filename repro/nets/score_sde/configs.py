"""The CIFAR-10 networks of the score SDE release (score_sde_pytorch configs/), as
ScoreSdeNetConfig: NCSN++ on the VE SDE (configs/ve/cifar10_ncsnpp_continuous.py) and DDPM++ on
the VP SDE (configs/vp/cifar10_ddpmpp_continuous.py); both start from
configs/default_cifar10_configs.py (32x32x3, dropout 0.1, sigma in [0.01, 50], 1000 scales)."""
from __future__ import annotations

from dataclasses import replace

from repro.nets.score_sde.ncsnpp import ScoreSdeNetConfig

# NCSN++ cont. (VE): FIR resampling, BigGAN blocks, residual input pyramid, Fourier features of
# log sigma, output divided by sigma; data in [0, 1] (the net maps it to [-1, 1]).
CIFAR10_NCSNPP_CONTINUOUS = ScoreSdeNetConfig(
    image_size=32, num_channels=3, centered=False, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4,
    attn_resolutions=(16,), dropout=0.1, resamp_with_conv=True, conditional=True, fir=True,
    fir_kernel=(1, 3, 3, 1), skip_rescale=True, resblock_type="biggan", progressive="none",
    progressive_input="residual", progressive_combine="sum", init_scale=0.0, embedding_type="fourier",
    fourier_scale=16.0, scale_by_sigma=True, nonlinearity="swish", sigma_min=0.01, sigma_max=50.0,
    num_scales=1000)

# DDPM++ cont. (VP): no FIR, no pyramid, positional embedding of 999 t, no division by sigma;
# data centred to [-1, 1].
CIFAR10_DDPMPP_CONTINUOUS = replace(
    CIFAR10_NCSNPP_CONTINUOUS, centered=True, fir=False, progressive_input="none",
    embedding_type="positional", scale_by_sigma=False)
