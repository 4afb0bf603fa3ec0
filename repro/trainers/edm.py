"""Model kind `edm`: EDM's preconditioned DDPM++ denoiser trained with the EDM loss, with EMA.

The 002 thesis (Sec. 11.2) uses the pre-trained EDM of Karras et al. on CIFAR-10; the paper
profile names that configuration, and `train.pretrained` loads NVlabs' own snapshot pickle
instead of training. The embedded profiles train a small DDPM++ on the digits. Images are
scaled from [0, 1] to [-1, 1], the range EDM's sigma_data = 0.5 assumes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.checkpoints import WeightsFile, edm_pickle_check, require_pickle_trust
from repro.data import dataset_info, load_dataset
from repro.diffusion.augment import EDM_AUGMENT_DIM, edm_cifar10_augment
from repro.diffusion.edm import EDMPrecond, edm_loss
from repro.errors import UserError
from repro.nets.ddpmpp import DDPMpp, DDPMppConfig
from repro.nets.official import load_edm_network
from repro.sampling.edm import edm_sample
from repro.specs import ResolvedModel
from repro.train import TrainConfig, is_main, train
from repro.trainers import parse_settings


class NetConfig(BaseModel):
    """DDPM++ settings (repro.nets.ddpmpp.DDPMppConfig); resolution and channels come from the dataset."""

    model_config = ConfigDict(extra="forbid")
    model_channels: int = Field(128, ge=1)
    channel_mult: list[int] = Field(default_factory=lambda: [2, 2, 2], min_length=1)
    channel_mult_emb: int = Field(4, ge=1)
    num_blocks: int = Field(4, ge=1)
    attn_resolutions: list[int] = Field(default_factory=lambda: [16])
    dropout: float = Field(0.13, ge=0, lt=1)
    embedding_type: str = "positional"
    sigma_data: float = Field(0.5, gt=0)
    augment_dim: int = Field(0, ge=0, description="EDM's augmentation labels (9 with train.augment_p > 0)")


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(4000, ge=0)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(0, ge=0)
    ema_decay: float | None = Field(None, ge=0, le=1)
    ema_halflife_images: float | None = Field(500_000, gt=0, description="EDM: 0.5 Mimg on CIFAR-10")
    grad_clip: float | None = None
    P_mean: float = -1.2
    P_std: float = Field(1.2, gt=0)
    augment_p: float = Field(0.0, ge=0, le=1, description="EDM's geometric augmentation probability "
                             "(CIFAR-10: 0.12); needs net.augment_dim = 9")
    amp: bool = False
    ckpt_every: int = Field(0, ge=0)
    max_steps: int | None = Field(None, ge=1)
    preview_samples: int = Field(64, ge=0, description="samples drawn after training for preview.png")
    preview_steps: int = Field(18, ge=2)
    pretrained: str | None = Field(None, description="NVlabs/edm snapshot pickle: loaded instead of training")
    pretrained_key: str = "ema"


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def validate(resolved: ResolvedModel) -> None:
    net_cfg, ts = parse(resolved)
    if ts.augment_p > 0 and net_cfg.augment_dim != EDM_AUGMENT_DIM and ts.pretrained is None:
        raise UserError(f"model {resolved.id}: train.augment_p={ts.augment_p} needs net.augment_dim="
                        f"{EDM_AUGMENT_DIM} (the net is conditioned on EDM's augmentation labels), got "
                        f"net.augment_dim={net_cfg.augment_dim}; set both or train.augment_p=0")
    if ts.pretrained is not None and not Path(ts.pretrained).expanduser().is_file():
        raise UserError(f"model {resolved.id}: train.pretrained {ts.pretrained} does not exist; put NVlabs' "
                        f"snapshot (e.g. edm-cifar10-32x32-uncond-vp.pkl) there or set train.pretrained=null "
                        f"to train")
    if ts.pretrained is not None:   # unpickling runs the file's code: only when the user trusts it
        require_pickle_trust(Path(ts.pretrained).expanduser(), f"model {resolved.id}: train.pretrained")


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> EDM's [-1, 1]."""
    return images * 2 - 1


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """EDM samples -> [0, 1] images (clamped, as when saved to PNG)."""
    return ((x + 1) / 2).clamp(0, 1)


def _geometry(resolved: ResolvedModel) -> tuple[int, int]:
    ds = resolved.config.dataset
    info = dataset_info(ds.name)
    res = ds.resolution or info.default_resolution
    if res is None or res[0] != res[1]:
        raise UserError(f"model {resolved.id}: EDM needs square images; set dataset.resolution to [H, H]")
    return int(res[0]), info.channels


def weights_files(resolved: ResolvedModel) -> list[WeightsFile]:
    """`train.pretrained`: an NVlabs/edm snapshot (a pickle) of this dataset's geometry."""
    _, ts = parse(resolved)
    if ts.pretrained is None:
        return []
    res, channels = _geometry(resolved)
    return [WeightsFile("train.pretrained", Path(ts.pretrained).expanduser(),
                        edm_pickle_check(ts.pretrained_key, res, channels), pickle=True)]


def build_net(resolved: ResolvedModel, meta: dict | None = None) -> torch.nn.Module:
    """EDMPrecond(DDPM++), or NVlabs' own network when `train.pretrained` names a snapshot."""
    net_cfg, ts = parse(resolved)
    if ts.pretrained is not None:
        return load_edm_network(ts.pretrained, key=ts.pretrained_key)
    res, channels = _geometry(resolved)
    cfg = DDPMppConfig(img_resolution=res, in_channels=channels, out_channels=channels,
                       model_channels=net_cfg.model_channels, channel_mult=tuple(net_cfg.channel_mult),
                       channel_mult_emb=net_cfg.channel_mult_emb, num_blocks=net_cfg.num_blocks,
                       attn_resolutions=tuple(net_cfg.attn_resolutions), dropout=net_cfg.dropout,
                       embedding_type=net_cfg.embedding_type, augment_dim=net_cfg.augment_dim)
    return EDMPrecond(DDPMpp(cfg), sigma_data=net_cfg.sigma_data)


def ema_decay(ts: TrainSettings) -> float | None:
    """Per-step EMA decay: EDM's half-life in images, 0.5^(batch / half-life), unless given directly."""
    if ts.ema_decay is not None:
        return ts.ema_decay
    if ts.ema_halflife_images is None:
        return None
    return 0.5 ** (ts.batch_size / ts.ema_halflife_images)


@torch.no_grad()
def save_preview(net, out: Path, n: int, steps: int, shape: tuple[int, int, int], seed: int) -> Path:
    """A grid of `n` Heun samples, for looking at what the model learnt."""
    from torchvision.utils import save_image

    device = next(net.parameters()).device
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn((n, *shape), generator=g).to(device)
    x = edm_sample(net, latents, steps=steps, solver="heun").samples
    save_image(to_unit_range(x.float()).cpu(), out, nrow=max(1, int(n ** 0.5)), padding=1)
    return out


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    """Train (resuming from out_dir/checkpoint.pt) or load `train.pretrained`; returns (net, meta)."""
    net_cfg, ts = parse(resolved)
    cfg, ds = resolved.config, resolved.config.dataset
    if ts.pretrained is not None:
        validate(resolved)
        net = build_net(resolved).to(device)
        return net, {"pretrained": str(Path(ts.pretrained).expanduser()), "pretrained_key": ts.pretrained_key,
                     "image_range": [-1, 1], "sigma_data": 0.5,
                     "parameters": sum(p.numel() for p in net.parameters())}
    res, channels = _geometry(resolved)
    train_set = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root,
                             n=ds.n_train, seed=ds.seed)
    P_mean, P_std, sd = ts.P_mean, ts.P_std, net_cfg.sigma_data
    validate(resolved)
    augment_pipe = edm_cifar10_augment(ts.augment_p) if ts.augment_p > 0 else None

    def loss_fn(model, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        return edm_loss(model, to_model_range(batch["image"]), generator, P_mean=P_mean, P_std=P_std,
                        sigma_data=sd, augment_pipe=augment_pipe)   # EDM Table 1, "Training"

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if run is not None:
            run.log_metrics(metrics, step=step)

    net = build_net(resolved).to(device)
    decay = ema_decay(ts)
    tcfg = TrainConfig(epochs=ts.epochs, batch_size=ts.batch_size, lr=ts.lr, amp=ts.amp, ema_decay=decay,
                       grad_clip=ts.grad_clip, ckpt_every=ts.ckpt_every, max_steps=ts.max_steps,
                       warmup_steps=ts.warmup_steps, seed=cfg.seed, device=str(device), betas=(0.9, 0.999))
    result = train(net, loss_fn, train_set, tcfg, out_dir, log_metrics=log_metrics, progress=progress)
    final = (result.ema if result.ema is not None else result.model).eval()
    meta = {"image_range": [-1, 1], "sigma_data": sd, "resolution": res, "channels": channels,
            "ema_decay": decay, "augment_p": ts.augment_p, "augment_dim": net_cfg.augment_dim,
            "n_train": len(train_set), "steps": result.steps, "history": result.history,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "train_seconds": result.seconds, "probes": result.probes,
            "parameters": sum(p.numel() for p in final.parameters())}

    if ts.preview_samples and is_main():   # under torchrun rank 0 alone writes
        path = save_preview(final, out_dir / "preview.png", ts.preview_samples, ts.preview_steps,
                            (channels, res, res), cfg.seed)
        if run is not None:
            run.log_artifact(path)
    return final, meta
