"""Model kind `score_sde`: an NCSN++ score network trained by continuous denoising score matching.

The loss is thesis Eq. 4.14 with lambda(t) = std(t)^2 (`repro.diffusion.losses.dsm_loss`), for
the SDE named in `net.sde` (VE, VP or sub-VP, thesis Sec. 4.4.4). VE's sigma_max is either
given or estimated from the training data as the thesis does (Sec. 5.4.3: the largest distance
among random pairs of training images). The stored weights are the EMA weights (0.999 by
default, score SDE paper; 003 report Sec. 1), which is what every sampler uses. What the
samplers take of a trained model (SDE, score function, data space) is repro.trainers.score_model.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from repro.checkpoints import WeightsFile, compare_state_dict, expected_shapes, on_meta
from repro.data import dataset_info, load_dataset, stack
from repro.diffusion.losses import dsm_loss
from repro.diffusion.schedules import estimate_sigma_max
from repro.diffusion.sde import net_score_fn
from repro.errors import UserError
from repro.images import save_image_grid
from repro.nets.ncsnpp import NCSNpp
from repro.nets.score_sde import ScoreSdeNetConfig, ScoreSdeScoreNet
from repro.nets.score_sde.checkpoint import load_score_sde_checkpoint
from repro.rng import rand
from repro.sampling.predictor_corrector import predictor_corrector_sample
from repro.specs import ResolvedModel
from repro.train import TrainConfig, train
from repro.trainers import parse_settings
from repro.trainers.score_model import make_sde, to_images, to_model_space


class NetConfig(BaseModel):
    """The SDE and the NCSN++ architecture (repro.nets.ncsnpp.NCSNpp); channels and size come from the data."""

    model_config = ConfigDict(extra="forbid")
    sde: Literal["ve", "vp", "subvp"] = "ve"
    sigma_min: float = Field(0.01, gt=0)
    sigma_max: float | None = Field(None, gt=0, description="VE only; None: estimate from the training data")
    sigma_max_pairs: int = Field(20_000_000, ge=1, description="random pairs for the sigma_max estimate")
    beta_min: float = Field(0.1, ge=0)
    beta_max: float = Field(20.0, gt=0)
    num_scales: int = Field(1000, ge=1, description="the SDE's N (discrete chains; samplers choose their own steps)")
    centered: bool | None = Field(None, description="data in [-1, 1]; None: False for VE, True for VP/sub-VP")
    nf: int = Field(128, ge=1)
    ch_mult: list[int] = Field(default_factory=lambda: [1, 2, 2, 2], min_length=1)
    num_res_blocks: int = Field(4, ge=1)
    attn_resolutions: list[int] = Field(default_factory=lambda: [16])
    dropout: float = Field(0.1, ge=0, lt=1)
    fourier_scale: float = Field(16.0, gt=0)
    # architecture "score_sde": the release's network (repro.nets.score_sde), whose checkpoints
    # train.pretrained loads; its options as in the release's config.model
    architecture: Literal["suite", "score_sde"] = Field("suite", description="suite: repro.nets.ncsnpp; "
                                                        "score_sde: the score SDE release's NCSN++/DDPM++")
    fir: bool = True
    fir_kernel: list[int] = Field(default_factory=lambda: [1, 3, 3, 1], min_length=1)
    skip_rescale: bool = True
    resblock_type: Literal["biggan", "ddpm"] = "biggan"
    progressive: Literal["none", "output_skip", "residual"] = "none"
    progressive_input: Literal["none", "input_skip", "residual"] = "residual"
    progressive_combine: Literal["sum", "cat"] = "sum"
    embedding_type: Literal["fourier", "positional"] = "fourier"
    scale_by_sigma: bool | None = Field(None, description="None: True for VE, False for VP/sub-VP")
    init_scale: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.sde == "ve" and self.sigma_max is not None and self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max ({self.sigma_max}) must exceed sigma_min ({self.sigma_min})")
        if self.sde != "ve" and self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max ({self.beta_max}) must exceed beta_min ({self.beta_min})")
        return self

    def is_centered(self) -> bool:
        return self.sde != "ve" if self.centered is None else self.centered


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1, ge=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-4, gt=0)
    warmup_steps: int = Field(5000, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float | None = Field(0.999, ge=0, le=1)
    reduce_mean: bool = Field(True, description="loss averaged (True) or summed (score SDE VE configs) over pixels")
    random_flip: bool = False
    eps: float | None = Field(None, gt=0, lt=1, description="t ~ U(eps, 1); None: the SDE's default")
    amp: bool = False
    ckpt_every: int = Field(0, ge=0)
    eval_images: int = Field(256, ge=2, description="held-out images for the DSM loss after every epoch")
    eval_split: str = "val"
    preview_samples: int = Field(16, ge=0, description="PC samples drawn after training for preview.png")
    preview_steps: int = Field(50, ge=1)
    pretrained: str | None = Field(None, description="score SDE release checkpoint_N.pth (net.architecture "
                                   "score_sde): loaded instead of training")
    pretrained_weights: Literal["ema", "model"] = Field("ema", description="the checkpoint's EMA or raw weights")


def parse(resolved: ResolvedModel) -> tuple[NetConfig, TrainSettings]:
    return parse_settings(resolved, NetConfig, TrainSettings)


def validate(resolved: ResolvedModel) -> None:
    net_cfg, ts = parse(resolved)
    if ts.pretrained is not None and net_cfg.architecture != "score_sde":
        raise UserError(f"model {resolved.id}: train.pretrained loads the score SDE release's networks; "
                        f"set net.architecture=score_sde")
    if net_cfg.architecture == "score_sde":
        res = resolved.config.dataset.resolution
        if net_cfg.sde == "ve" and net_cfg.sigma_max is None:
            raise UserError(f"model {resolved.id}: net.architecture=score_sde needs net.sigma_max (the release "
                            f"stores sigma_max in the network)")
        if res is not None and res[0] != res[1]:
            raise UserError(f"model {resolved.id}: the score SDE release's networks need square images, got "
                            f"{res[0]}x{res[1]}")
    res = resolved.config.dataset.resolution
    if res is not None:
        multiple = 2 ** (len(net_cfg.ch_mult) - 1)
        if res[0] % multiple or res[1] % multiple:
            raise UserError(f"model {resolved.id}: resolution {res[0]}x{res[1]} must be divisible by {multiple} "
                            f"(2^(len(ch_mult) - 1)); change dataset.resolution or net.ch_mult")


# ----------------------------------------------------------------------------- the network

def net_kwargs(resolved: ResolvedModel) -> dict[str, Any]:
    net_cfg, _ = parse(resolved)
    ds = resolved.config.dataset
    info = dataset_info(ds.name)
    size = tuple(ds.resolution) if ds.resolution is not None else info.default_resolution
    if size is None:
        raise UserError(f"model {resolved.id}: dataset {ds.name} has no default size; set dataset.resolution")
    return dict(in_channels=info.channels, nf=net_cfg.nf, ch_mult=tuple(net_cfg.ch_mult),
                num_res_blocks=net_cfg.num_res_blocks, attn_resolutions=tuple(net_cfg.attn_resolutions),
                dropout=net_cfg.dropout, image_size=size, fourier_scale=net_cfg.fourier_scale)


def build_net(resolved: ResolvedModel, meta: dict[str, Any] | None = None) -> torch.nn.Module:
    net_cfg, _ = parse(resolved)
    if net_cfg.architecture == "score_sde":
        return release_net(resolved)
    return NCSNpp(**net_kwargs(resolved))


def weights_files(resolved: ResolvedModel) -> list[WeightsFile]:
    """`train.pretrained` (the release's checkpoint_N.pth), opened by preflight and `repro train`
    (repro.checkpoints): present, weights-only, `model` with this network's keys and shapes, and
    EMA shadow tensors that line up with its trainable parameters."""
    _, ts = parse(resolved)
    if ts.pretrained is None:
        return []
    return [WeightsFile("train.pretrained", Path(ts.pretrained).expanduser(),
                        lambda path: check_release_checkpoint(resolved, path, ts.pretrained_weights))]


def check_release_checkpoint(resolved: ResolvedModel, path: Path, weights: str = "ema") -> None:
    """UserError (message without the path) unless `path` is a release checkpoint of this network."""
    if path.stat().st_size == 0:
        raise UserError("is empty (0 bytes); an interrupted copy? fetch the file again")
    try:
        ckpt = torch.load(path, map_location="meta", weights_only=True)
    except Exception as e:  # noqa: BLE001  (UnpicklingError, a truncated zip, EOFError ...)
        first = str(e).splitlines()[0][:160] if str(e) else ""
        raise UserError(f"is not a readable weights-only torch file ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        found = sorted(ckpt)[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(f"is not a score SDE release checkpoint (keys model, ema, optimizer, step; found {found})")
    state = ckpt["model"]
    if state and not all(k.startswith("module.") for k in state):
        state = {f"module.{k}": v for k, v in state.items()}
    net = on_meta(lambda: release_net(resolved))
    compare_state_dict(state, expected_shapes(net), "the score SDE release's network of this config")
    if weights == "ema":
        shadow = (ckpt.get("ema") or {}).get("shadow_params") if isinstance(ckpt.get("ema"), dict) else None
        params = [p for p in net.parameters() if p.requires_grad]
        if not isinstance(shadow, (list, tuple)) or len(shadow) != len(params) or any(
                tuple(s.shape) != tuple(p.shape) for s, p in zip(shadow, params)):
            raise UserError(f"has no EMA weights lining up with the network's {len(params)} trainable parameters "
                            f"(set train.pretrained_weights=model for the raw ones)")


def release_net(resolved: ResolvedModel) -> torch.nn.Module:
    """The score SDE release's NCSN++ / DDPM++ for this config (repro.nets.score_sde)."""
    net_cfg, _ = parse(resolved)
    kw = net_kwargs(resolved)
    scale_by_sigma = net_cfg.sde == "ve" if net_cfg.scale_by_sigma is None else net_cfg.scale_by_sigma
    cfg = ScoreSdeNetConfig(
        image_size=int(kw["image_size"][0]), num_channels=kw["in_channels"], centered=net_cfg.is_centered(),
        nf=net_cfg.nf, ch_mult=tuple(net_cfg.ch_mult), num_res_blocks=net_cfg.num_res_blocks,
        attn_resolutions=tuple(net_cfg.attn_resolutions), dropout=net_cfg.dropout, fir=net_cfg.fir,
        fir_kernel=tuple(net_cfg.fir_kernel), skip_rescale=net_cfg.skip_rescale, resblock_type=net_cfg.resblock_type,
        progressive=net_cfg.progressive, progressive_input=net_cfg.progressive_input,
        progressive_combine=net_cfg.progressive_combine, init_scale=net_cfg.init_scale,
        embedding_type=net_cfg.embedding_type, fourier_scale=net_cfg.fourier_scale, scale_by_sigma=scale_by_sigma,
        sigma_min=net_cfg.sigma_min, sigma_max=float(net_cfg.sigma_max or 50.0), num_scales=net_cfg.num_scales)
    return ScoreSdeScoreNet(cfg, sde=net_cfg.sde, beta_min=net_cfg.beta_min, beta_max=net_cfg.beta_max)


# ----------------------------------------------------------------------------- training

def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = rand((x.shape[0],), generator, x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@torch.no_grad()
def dsm_eval(net: torch.nn.Module, sde, x0: torch.Tensor, seed: int, eps: float | None = None,
             reduce_mean: bool = True, batch_size: int = 256) -> float:
    """Held-out DSM loss (thesis Eq. 4.14, lambda = std^2) with fixed t and noise draws (seeded)."""
    was = net.training
    net.eval()
    device = next(net.parameters()).device
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    score = net_score_fn(net, sde)
    total, n = 0.0, 0
    for i in range(0, x0.shape[0], batch_size):
        xb = x0[i: i + batch_size].to(device)
        total += float(dsm_loss(score, sde, xb, g, eps=eps, reduce_mean=reduce_mean)) * xb.shape[0]
        n += xb.shape[0]
    net.train(was)
    return total / max(n, 1)


def _estimate_sigma_max(train_set, pairs: int, seed: int) -> float:
    images, _ = stack(train_set)
    return estimate_sigma_max(images, pairs, torch.Generator().manual_seed(seed))


def train_model(resolved: ResolvedModel, out_dir: Path, device: torch.device, run, progress: bool):
    """Train (resuming from out_dir/checkpoint.pt); returns (EMA net, meta)."""
    net_cfg, ts = parse(resolved)
    cfg, ds = resolved.config, resolved.config.dataset
    info = dataset_info(ds.name)
    if ts.pretrained is not None:
        return load_pretrained(resolved, device)
    train_set = load_dataset(ds.name, split=ds.split, resolution=ds.resolution, root=ds.root, n=ds.n_train,
                             seed=ds.seed)
    eval_images, _ = stack(load_dataset(ds.name, split=ts.eval_split, resolution=ds.resolution, root=ds.root,
                                        n=ts.eval_images, seed=ds.seed), limit=ts.eval_images)
    centered = net_cfg.is_centered()

    t0 = time.perf_counter()
    sde_params: dict[str, Any] = {"name": net_cfg.sde, "N": net_cfg.num_scales}
    if net_cfg.sde == "ve":
        sigma_max = net_cfg.sigma_max
        if sigma_max is None:  # thesis Sec. 5.4.3: largest distance among random training pairs
            sigma_max = _estimate_sigma_max(train_set, net_cfg.sigma_max_pairs, cfg.seed)
        sde_params.update(sigma_min=net_cfg.sigma_min, sigma_max=float(sigma_max),
                          sigma_max_estimated=net_cfg.sigma_max is None)
    else:
        sde_params.update(beta_min=net_cfg.beta_min, beta_max=net_cfg.beta_max)
    sigma_seconds = time.perf_counter() - t0
    sde = make_sde(sde_params)
    eval_x0 = to_model_space(eval_images, centered)

    def loss_fn(model, batch, generator):
        x0 = to_model_space(batch["image"], centered)
        if ts.random_flip:
            x0 = random_hflip(x0, generator)
        # thesis Eq. 4.14 with lambda(t) = std(t)^2
        return dsm_loss(net_score_fn(model, sde), sde, x0, generator, eps=ts.eps, reduce_mean=ts.reduce_mean)

    def on_epoch_end(epoch: int, model) -> dict[str, float]:
        return {"val_dsm": dsm_eval(model, sde, eval_x0, seed=cfg.seed + 1, eps=ts.eps, reduce_mean=ts.reduce_mean)}

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if run is not None:
            run.log_metrics(metrics, step=step)

    if run is not None and net_cfg.sde == "ve":
        run.log_metrics({"sigma_max": sde_params["sigma_max"]})
    with torch.random.fork_rng(devices=[]):  # the initial weights (and Fourier features) follow the seed
        torch.manual_seed(cfg.seed)
        net = build_net(resolved).to(device)
    untrained_val = dsm_eval(net, sde, eval_x0, seed=cfg.seed + 1, eps=ts.eps, reduce_mean=ts.reduce_mean)
    tcfg = TrainConfig(epochs=ts.epochs, batch_size=ts.batch_size, lr=ts.lr, amp=ts.amp, ema_decay=ts.ema_decay,
                       grad_clip=ts.grad_clip, ckpt_every=ts.ckpt_every, max_steps=ts.max_steps,
                       warmup_steps=ts.warmup_steps, seed=cfg.seed, device=str(device))
    result = train(net, loss_fn, train_set, tcfg, out_dir, on_epoch_end=on_epoch_end, log_metrics=log_metrics,
                   progress=progress)
    final = (result.ema if result.ema is not None else result.model).eval()
    final_val = dsm_eval(final, sde, eval_x0, seed=cfg.seed + 1, eps=ts.eps, reduce_mean=ts.reduce_mean)
    size = net_kwargs(resolved)["image_size"]
    meta = {
        "sde": sde_params, "centered": centered, "sample_shape": [info.channels, int(size[0]), int(size[1])],
        "dataset": ds.name, "n_train": len(train_set), "parameters": sum(p.numel() for p in final.parameters()),
        "ema_decay": ts.ema_decay, "weights": "ema" if result.ema is not None else "raw",
        "val_dsm_untrained": untrained_val, "val_dsm": final_val, "history": result.history,
        "steps": result.steps, "train_seconds": result.seconds, "sigma_max_seconds": sigma_seconds,
        "probes": result.probes,
    }
    if ts.preview_samples:
        meta["preview"] = _write_preview(final, sde, centered, meta["sample_shape"], ts, cfg.seed, out_dir)
    if run is not None:
        run.log_metrics({"val_dsm": final_val, "val_dsm_untrained": untrained_val, "train_seconds": result.seconds})
        if meta.get("preview"):
            run.log_artifact(out_dir / meta["preview"])
    return final, meta


def load_pretrained(resolved: ResolvedModel, device: torch.device):
    """The release's checkpoint (`train.pretrained`) in the configured network, EMA weights by default."""
    validate(resolved)
    net_cfg, ts = parse(resolved)
    ds = resolved.config.dataset
    net = build_net(resolved)
    info = load_score_sde_checkpoint(net, ts.pretrained, ts.pretrained_weights)
    sde_params: dict[str, Any] = {"name": net_cfg.sde, "N": net_cfg.num_scales}
    if net_cfg.sde == "ve":
        sde_params.update(sigma_min=net_cfg.sigma_min, sigma_max=float(net_cfg.sigma_max), sigma_max_estimated=False)
    else:
        sde_params.update(beta_min=net_cfg.beta_min, beta_max=net_cfg.beta_max)
    size = net_kwargs(resolved)["image_size"]
    meta = {"sde": sde_params, "centered": net_cfg.is_centered(),
            "sample_shape": [dataset_info(ds.name).channels, int(size[0]), int(size[1])], "dataset": ds.name,
            "architecture": "score_sde", "pretrained": str(Path(ts.pretrained).expanduser()),
            "checkpoint_step": info["step"], "weights": info["weights"], "ema_decay": info["ema_decay"],
            "parameters": sum(p.numel() for p in net.parameters())}
    return net.to(device).eval(), meta


def _write_preview(net, sde, centered: bool, shape, ts: TrainSettings, seed: int, out_dir: Path) -> str:
    """A grid of PC samples from the trained model (a quick look; not a metric)."""
    device = next(net.parameters()).device
    g = torch.Generator(device=device)
    g.manual_seed(seed + 2)
    x = sde.prior_sample((ts.preview_samples, *shape), generator=g, device=device)
    out = predictor_corrector_sample(net_score_fn(net, sde), sde, x, steps=ts.preview_steps, generator=g,
                                     snr=0.16)
    save_image_grid(to_images(out.samples, centered).cpu(), out_dir / "preview.png")
    return "preview.png"
