"""What the GAN baselines' model kinds (`spade`, `pix2pixhd`) share: the training settings, the
VGG-loss switch, and training a (generator, discriminator) pair through the suite's loop with
`repro.train.gan_step.GanStep` as its step rule. The stored weights are the generator's; the
discriminator stays in the run's checkpoint (out_dir/checkpoint.pt) with both optimizers."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from repro.data import dataset_info, load_dataset, stack
from repro.errors import UserError
from repro.images import save_image_grid
from repro.nets.spade import one_hot_map
from repro.nets.vgg_loss import VGG19_FILE, VGGLoss, vgg19_weights_path
from repro.train import TrainConfig, train
from repro.train.gan_step import GanStep
from repro.train.sampler import DeterministicBatchSampler


class GanTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    niter: int = Field(100, ge=0, description="epochs at the initial learning rates")
    niter_decay: int = Field(100, ge=0, description="then epochs of linear decay to zero")
    batch_size: int = Field(16, ge=1)
    lr_g: float = Field(1e-4, gt=0)
    lr_d: float = Field(4e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.999)
    update: Literal["alternating", "simultaneous"] = "alternating"
    adversarial: Literal["hinge", "lsgan"] = "hinge"
    lambda_feat: float = Field(10.0, ge=0)
    vgg_loss: Literal["auto", "on", "off"] = Field("auto", description="auto: on when VGG-19 weights are found")
    vgg_weights: str | None = None
    lambda_vgg: float = Field(10.0, ge=0)
    flip: bool = True
    ckpt_every: int = Field(0, ge=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (tests)")
    preview_maps: int = Field(8, ge=0)

    @model_validator(mode="after")
    def _some_epochs(self):
        if self.niter + self.niter_decay < 1:
            raise ValueError("niter + niter_decay (the epochs) must be at least 1")
        return self

    @property
    def epochs(self) -> int:
        return self.niter + self.niter_decay


def vgg_choice(ts: GanTrainSettings, model_id: str):
    """(VGGLoss or None, a sentence saying which and why) for the settings."""
    if ts.vgg_loss == "off" or ts.lambda_vgg == 0:
        return None, "off (vgg_loss: off)"
    path = vgg19_weights_path(ts.vgg_weights)
    if path is None or not path.is_file():
        if ts.vgg_loss == "on":
            raise UserError(f"model {model_id}: train.vgg_loss is on but no VGG-19 weights were found: put "
                            f"torchvision's {VGG19_FILE} in the torch hub cache or set train.vgg_weights")
        return None, f"off: no VGG-19 weights ({VGG19_FILE}) found; the release trains with it (lambda 10)"
    return VGGLoss(path), f"on ({path})"


def dataset_classes(resolved) -> tuple[int, tuple[int, int]]:
    ds = resolved.config.dataset
    info = dataset_info(ds.name)
    if info.kind != "segmentation":
        raise UserError(f"model {resolved.id}: a semantic-synthesis GAN needs label maps; dataset {ds.name} has none")
    res = ds.resolution or info.default_resolution
    if res is None:
        raise UserError(f"model {resolved.id}: set dataset.resolution ([H, W]); the generator has a fixed size")
    return info.num_classes, (int(res[0]), int(res[1]))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def train_gan(resolved, out_dir: Path, device: torch.device, run, progress: bool, *, pair, objective,
              ts: GanTrainSettings, net_meta: dict, vgg, vgg_note: str):
    """Train the pair with the loop + GanStep; returns (generator, meta)."""
    ds = resolved.config.dataset
    num_classes, size = dataset_classes(resolved)
    train_set = load_dataset(ds.name, split=ds.split, resolution=size, root=ds.root, n=ds.n_train, seed=ds.seed)
    steps_per_epoch = DeterministicBatchSampler(len(train_set), ts.batch_size, 0).batches_per_epoch()
    pair = pair.to(device)
    if vgg is not None:
        vgg = vgg.to(device)
    rule = GanStep(pair, num_classes, objective, lr_g=ts.lr_g, lr_d=ts.lr_d, betas=ts.betas, update=ts.update,
                   steps_per_epoch=steps_per_epoch, niter=ts.niter, niter_decay=ts.niter_decay, flip=ts.flip,
                   vgg=vgg)

    def on_epoch_end(epoch, model):
        return rule.epoch_means()

    def log_metrics(metrics, step):
        if run is not None:
            run.log_metrics(metrics, step=step)

    cfg = TrainConfig(epochs=ts.epochs, batch_size=ts.batch_size, lr=ts.lr_g, ema_decay=None, grad_clip=None,
                      ckpt_every=ts.ckpt_every, max_steps=ts.max_steps, seed=resolved.config.seed, device=str(device))
    t0 = time.perf_counter()
    result = train(pair, None, train_set, cfg, out_dir, on_epoch_end=on_epoch_end, log_metrics=log_metrics,
                   progress=progress, step_rule=rule)
    generator = result.model.generator
    preview = _preview(generator, resolved, size, num_classes, ts.preview_maps, out_dir, device)
    if run is not None and preview is not None:
        run.log_artifact(preview)
    meta = {"num_classes": num_classes, "image_size": list(size), "net": net_meta,
            "update": ts.update, "adversarial": objective.adversarial, "scale_reduction": objective.scale_reduction,
            "d_factor": objective.d_factor, "lambda_feat": objective.lambda_feat,
            "feat_layer_weight": objective.feat_layer_weight, "lambda_vgg": objective.lambda_vgg, "vgg_loss": vgg_note,
            "lr_g": ts.lr_g, "lr_d": ts.lr_d, "betas": list(ts.betas), "niter": ts.niter,
            "niter_decay": ts.niter_decay, "batch_size": ts.batch_size, "flip": ts.flip,
            "steps": result.steps, "history": result.history, "train_seconds": time.perf_counter() - t0,
            "probes": result.probes, "n_train": len(train_set),
            "parameters_generator": count_parameters(pair.generator),
            "parameters_discriminator": count_parameters(pair.discriminator),
            "preview_png": str(preview) if preview else None}
    return generator, meta


@torch.no_grad()
def _preview(generator, resolved, size, num_classes, n: int, out_dir: Path, device) -> Path | None:
    """Generated images for the first n validation maps of the model's dataset (a quick look)."""
    if n <= 0:
        return None

    ds = resolved.config.dataset
    try:
        images, maps = stack(load_dataset(ds.name, split="val", resolution=size, root=ds.root, n=n, seed=ds.seed),
                             limit=n)
    except UserError:
        return None
    was = generator.training
    generator.eval()
    fake = (generator(one_hot_map(maps.to(device), num_classes)).cpu() + 1) / 2
    generator.train(was)
    return save_image_grid(torch.cat([images, fake]), out_dir / "preview.png", nrow=images.shape[0], scale=2)
