"""Model kind `pix2pixhd`: pix2pixHD's global generator (repro/nets/pix2pixhd.py; 512x256 needs
no local enhancer) with the multi-scale PatchGAN discriminator (instance norm, no spectral norm),
LSGAN loss summed over scales, D loss halved, feature matching with pix2pixHD's layer weight
4 / (n_layers_D + 1) and lambda 10, the optional VGG loss, Adam lr 2e-4, betas (0.5, 0.999) for
both nets, and its update order: both losses from one forward, then G's step and D's step
(NVIDIA/pix2pixHD train.py). A baseline of 000 thesis Tab. 5.4/5.5, trained by the author.
No instance-boundary map and no feature encoder: the suite's datasets carry class ids only."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.errors import UserError
from repro.nets.patchgan import MultiscaleDiscriminator
from repro.nets.pix2pixhd import GlobalGenerator, init_pix2pixhd_weights
from repro.specs import ResolvedModel
from repro.train.gan_step import GanObjective, GanPair
from repro.trainers import parse_settings
from repro.trainers.gan import GanTrainSettings, dataset_classes, train_gan, vgg_choice


class NetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ngf: int = Field(64, ge=1)
    n_down: int = Field(4, ge=1, description="n_downsample_global")
    n_blocks: int = Field(9, ge=0, description="n_blocks_global")
    ndf: int = Field(64, ge=1)
    n_layers_d: int = Field(3, ge=1, description="pix2pixHD's count (SPADE's n_layers_D - 1)")
    num_d: int = Field(2, ge=1)


class TrainSettings(GanTrainSettings):
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    update: Literal["alternating", "simultaneous"] = "simultaneous"
    adversarial: Literal["hinge", "lsgan"] = "lsgan"
    batch_size: int = Field(1, ge=1)


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def validate(resolved: ResolvedModel) -> None:
    net, _ = parse(resolved)
    _, (h, w) = dataset_classes(resolved)
    if h % (2 ** net.n_down) or w % (2 ** net.n_down):
        raise UserError(f"model {resolved.id}: resolution {h}x{w} is not divisible by 2^net.n_down = "
                        f"{2 ** net.n_down}")


def build_net(resolved: ResolvedModel, meta: dict | None = None) -> torch.nn.Module:
    validate(resolved)
    net, _ = parse(resolved)
    num_classes, _ = dataset_classes(resolved)
    return GlobalGenerator(num_classes, ngf=net.ngf, n_down=net.n_down, n_blocks=net.n_blocks)


def objective_for(ts: TrainSettings, net: NetConfig, vgg_on: bool):
    return GanObjective(adversarial=ts.adversarial, scale_reduction="sum", d_factor=0.5, lambda_feat=ts.lambda_feat,
                        feat_layer_weight=4.0 / (net.n_layers_d + 1), lambda_vgg=ts.lambda_vgg if vgg_on else 0.0)


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    validate(resolved)
    net, ts = parse(resolved)
    num_classes, _ = dataset_classes(resolved)
    generator = build_net(resolved)
    # pix2pixHD's n_layers_D counts one block fewer than SPADE's (see repro/nets/patchgan.py)
    disc = MultiscaleDiscriminator(num_classes + 3, ndf=net.ndf, n_layers=net.n_layers_d + 1, num_d=net.num_d,
                                   norm="instance", spectral=False)
    init_pix2pixhd_weights(generator)
    init_pix2pixhd_weights(disc)
    vgg, note = vgg_choice(ts, resolved.id)
    return train_gan(resolved, out_dir, device, run, progress, pair=GanPair(generator, disc),
                     objective=objective_for(ts, net, vgg is not None), ts=ts, net_meta=net.model_dump(),
                     vgg=vgg, vgg_note=note)
