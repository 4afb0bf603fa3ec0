"""Model kind `spade`: the SPADE generator (repro/nets/spade.py) with the multi-scale PatchGAN
discriminator (repro/nets/patchgan.py, spectral + instance norm), hinge loss, feature matching
(lambda 10), the optional VGG loss, TTUR (G 1e-4, D 4e-4, Adam betas (0, 0.999) as Park et al.
2019, Sec. 4 give them; the release's code uses beta2 0.9) and SPADE's update order: a G step,
then a D step on a fresh fake. A baseline of 000 thesis Tab. 5.4/5.5, trained by the author."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.errors import UserError
from repro.nets.patchgan import MultiscaleDiscriminator
from repro.nets.spade import SPADEGenerator, init_spade_weights
from repro.specs import ResolvedModel
from repro.train.gan_step import GanObjective, GanPair
from repro.trainers import parse_settings
from repro.trainers.gan import GanTrainSettings, dataset_classes, train_gan, vgg_choice


class NetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ngf: int = Field(64, ge=1)
    n_up: int = Field(6, ge=1, le=7, description="2x upsamplings: 5 normal, 6 more (Cityscapes), 7 most")
    hidden: int = Field(128, ge=1, description="SPADE's shared-MLP width (the release: 128)")
    param_free: Literal["batch", "instance"] = "batch"
    modulation: Literal["code", "paper"] = Field("code", description="code: (1 + gamma); paper Eq. 1: gamma")
    spectral_g: bool = True
    ndf: int = Field(64, ge=1)
    n_layers_d: int = Field(4, ge=1, description="SPADE's count (= pix2pixHD's n_layers_D + 1)")
    num_d: int = Field(2, ge=1)


class TrainSettings(GanTrainSettings):
    pass


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def validate(resolved: ResolvedModel) -> None:
    net, _ = parse(resolved)
    _, (h, w) = dataset_classes(resolved)
    if h % (2 ** net.n_up) or w % (2 ** net.n_up):
        raise UserError(f"model {resolved.id}: resolution {h}x{w} is not divisible by 2^net.n_up = {2 ** net.n_up}")


def build_generator(resolved: ResolvedModel):
    validate(resolved)
    net, _ = parse(resolved)
    num_classes, size = dataset_classes(resolved)
    return SPADEGenerator(num_classes, size, ngf=net.ngf, n_up=net.n_up, hidden=net.hidden, spectral=net.spectral_g,
                          param_free=net.param_free, modulation=net.modulation)


def build_net(resolved: ResolvedModel, meta: dict | None = None) -> torch.nn.Module:
    return build_generator(resolved)


def objective_for(ts: TrainSettings, vgg_on: bool):
    # SPADE's GANLoss averages the scales; D loss = D_fake + D_real; feature matching lambda / num_D
    return GanObjective(adversarial=ts.adversarial, scale_reduction="mean", d_factor=1.0, lambda_feat=ts.lambda_feat,
                        feat_layer_weight=1.0, lambda_vgg=ts.lambda_vgg if vgg_on else 0.0)


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    validate(resolved)
    net, ts = parse(resolved)
    num_classes, _ = dataset_classes(resolved)
    generator = build_generator(resolved)
    disc = MultiscaleDiscriminator(num_classes + 3, ndf=net.ndf, n_layers=net.n_layers_d, num_d=net.num_d,
                                   norm="instance", spectral=True)
    init_spade_weights(generator)
    init_spade_weights(disc)
    vgg, note = vgg_choice(ts, resolved.id)
    return train_gan(resolved, out_dir, device, run, progress, pair=GanPair(generator, disc),
                     objective=objective_for(ts, vgg is not None), ts=ts, net_meta=net.model_dump(),
                     vgg=vgg, vgg_note=note)
