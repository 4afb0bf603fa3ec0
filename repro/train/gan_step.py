"""One training step of a conditional GAN (generator G, discriminator D) for the generic loop.

`GanStep` is a loop `step_rule` (repro/train/loop.py): the loop keeps the data order, the
random streams, checkpoint and exact resume, history and logging; this object owns the two Adam
optimizers (their state goes into the loop's checkpoint through state_dict) and updates both
nets per batch in one of the two releases' orders:

- `alternating` (SPADE, NVlabs/SPADE trainers/pix2pix_trainer.py): a G step against the current
  D, then a D step on a fresh fake of the updated G;
- `simultaneous` (pix2pixHD, NVIDIA/pix2pixHD train.py): G's and D's losses from one forward of
  the current nets, then G's step and D's step.

Learning rates: constant for `niter` epochs, then linearly to zero over `niter_decay` epochs,
lowered once per epoch as both releases do (update_learning_rate after each epoch > niter).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from repro.nets.gan_losses import Adversarial, Reduction, adversarial_loss, feature_matching_loss
from repro.nets.patchgan import discriminate
from repro.nets.spade import one_hot_map

Update = Literal["alternating", "simultaneous"]


class GanPair(nn.Module):
    """Generator and discriminator as one module: one state_dict for the loop's checkpoint."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    def forward(self, segmap: torch.Tensor) -> torch.Tensor:
        return self.generator(segmap)


@dataclass(frozen=True)
class GanObjective:
    """The loss terms and how the release weights them."""

    adversarial: Adversarial = "hinge"
    scale_reduction: Reduction = "mean"    # over discriminator scales: SPADE mean, pix2pixHD sum
    d_factor: float = 1.0                   # D loss = d_factor * (fake + real): SPADE 1, pix2pixHD 0.5
    lambda_feat: float = 10.0
    feat_layer_weight: float = 1.0          # pix2pixHD: 4 / (n_layers_D + 1)
    lambda_vgg: float = 0.0                 # 10 in both releases when the VGG loss is on


def lr_factor(epoch: int, niter: int, niter_decay: int) -> float:
    """The learning-rate multiplier during 0-based `epoch`: 1 up to epoch niter (inclusive, the
    releases lower it after each epoch > niter), then 1 - k / niter_decay."""
    if niter_decay <= 0:
        return 1.0
    k = max(0, epoch - niter)
    return max(0.0, 1.0 - k / niter_decay)


class GanStep:
    def __init__(self, pair: GanPair, num_classes: int, objective: GanObjective, *, lr_g: float, lr_d: float,
                 betas: tuple[float, float], update: Update, steps_per_epoch: int, niter: int = 0,
                 niter_decay: int = 0, flip: bool = False, vgg: nn.Module | None = None):
        if update not in ("alternating", "simultaneous"):
            raise ValueError(f"update must be alternating or simultaneous, got {update!r}")
        if objective.lambda_vgg and vgg is None:
            raise ValueError("lambda_vgg > 0 needs a VGG loss module")
        self.pair, self.num_classes, self.obj = pair, num_classes, objective
        self.base_lr = {"g": float(lr_g), "d": float(lr_d)}
        self.update, self.steps_per_epoch = update, max(1, int(steps_per_epoch))
        self.niter, self.niter_decay, self.flip, self.vgg = niter, niter_decay, flip, vgg
        betas = (float(betas[0]), float(betas[1]))
        self.opt_g = torch.optim.Adam(pair.generator.parameters(), lr=lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(pair.discriminator.parameters(), lr=lr_d, betas=betas)
        self.steps = 0
        self._sums: dict[str, float] = {}
        self._count = 0

    # ------------------------------------------------------------------ loop protocol

    @property
    def lr(self) -> float:
        return self.opt_g.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "steps": self.steps,
                "sums": dict(self._sums), "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.steps, self._sums, self._count = int(state["steps"]), dict(state["sums"]), int(state["count"])

    def __call__(self, net: nn.Module, batch: dict, generator: torch.Generator) -> float:
        """Update D and G on one batch; returns G's total loss (the loop's step loss)."""
        factor = lr_factor(self.steps // self.steps_per_epoch, self.niter, self.niter_decay)
        for opt, key in ((self.opt_g, "g"), (self.opt_d, "d")):
            for group in opt.param_groups:
                group["lr"] = self.base_lr[key] * factor
        seg, real = self.inputs(batch, generator)
        terms = self._alternating(seg, real) if self.update == "alternating" else self._simultaneous(seg, real)
        self.steps += 1
        for k, v in terms.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        return terms["g_total"]

    def epoch_means(self) -> dict[str, float]:
        """Mean of every loss term since the last call (the loop calls on_epoch_end once per epoch)."""
        out = {k: v / max(self._count, 1) for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return out

    # ------------------------------------------------------------------ the two orders

    def inputs(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot maps and images in [-1, 1]; a random horizontal flip per pair (both releases'
        augmentation), drawn from the loop's generator so that a resumed run flips the same."""
        labels, images = batch["label"].long(), batch["image"].float() * 2 - 1
        if self.flip:
            flip = torch.rand(labels.shape[0], generator=generator, device=generator.device) < 0.5
            flip = flip.to(labels.device)
            labels = torch.where(flip[:, None, None], labels.flip(-1), labels)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return one_hot_map(labels, self.num_classes), images

    def _g_terms(self, fake, real, pred_fake, pred_real) -> dict[str, torch.Tensor]:
        o = self.obj
        terms = {"g_adv": adversarial_loss(pred_fake, "g", o.adversarial, o.scale_reduction),
                 "g_feat": o.lambda_feat * feature_matching_loss(pred_fake, pred_real, o.feat_layer_weight)}
        if o.lambda_vgg:
            terms["g_vgg"] = o.lambda_vgg * self.vgg(fake, real)
        return terms

    def _d_terms(self, pred_fake, pred_real) -> dict[str, torch.Tensor]:
        o = self.obj
        return {"d_fake": o.d_factor * adversarial_loss(pred_fake, "d_fake", o.adversarial, o.scale_reduction),
                "d_real": o.d_factor * adversarial_loss(pred_real, "d_real", o.adversarial, o.scale_reduction)}

    def _both(self, seg, fake, real):
        """D on the fake and real pairs in one batch (SPADE's discriminate), split back."""
        n = fake.shape[0]
        preds = discriminate(self.pair.discriminator, torch.cat([seg, seg]), torch.cat([fake, real]))
        return ([[p[:n] for p in s] for s in preds], [[p[n:] for p in s] for s in preds])

    def _alternating(self, seg, real) -> dict[str, float]:
        g = self.pair.generator
        fake = g(seg)
        pred_fake, pred_real = self._both(seg, fake, real)
        g_terms = self._g_terms(fake, real, pred_fake, pred_real)
        g_total = sum(g_terms.values())
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self.opt_g.step()

        with torch.no_grad():
            fake = g(seg)
        pred_fake, pred_real = self._both(seg, fake.detach(), real)
        d_terms = self._d_terms(pred_fake, pred_real)
        self.opt_d.zero_grad(set_to_none=True)
        sum(d_terms.values()).backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)   # D's grads reached nothing of G; G's reached D: drop both
        self.opt_d.zero_grad(set_to_none=True)
        return self._floats(g_terms, d_terms, g_total)

    def _simultaneous(self, seg, real) -> dict[str, float]:
        g, d = self.pair.generator, self.pair.discriminator
        fake = g(seg)
        pred_fake_d = discriminate(d, seg, fake.detach())
        pred_real = discriminate(d, seg, real)
        pred_fake_g = discriminate(d, seg, fake)
        d_terms = self._d_terms(pred_fake_d, pred_real)
        g_terms = self._g_terms(fake, real, pred_fake_g, pred_real)
        g_total = sum(g_terms.values())
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self.opt_g.step()
        self.opt_d.zero_grad(set_to_none=True)   # drops what G's loss left in D
        sum(d_terms.values()).backward()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        return self._floats(g_terms, d_terms, g_total)

    @staticmethod
    def _floats(g_terms, d_terms, g_total) -> dict[str, float]:
        out = {k: float(v.detach()) for k, v in {**g_terms, **d_terms}.items()}
        out["g_total"] = float(g_total.detach())
        out["d_total"] = out["d_fake"] + out["d_real"]
        return out
