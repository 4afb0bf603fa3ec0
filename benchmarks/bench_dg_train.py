"""Benchmark: one training step of Kim et al.'s discriminator (frozen ADM 32x32 classifier + ADM head).

BCE on a batch of real and as many generated images at importance-sampled VP times
(repro.diffusion.losses.discriminator_bce_loss), Adam on the head alone, as the
`discriminator` model kind trains it at `paper`. Random weights and images: the cost, not the
result. Prints ms per step, images per second and the peak memory, and what 50 epochs over
50k real + 50k generated CIFAR-10 images (DG's train.py defaults) would take at that speed.

Run: python benchmarks/bench_dg_train.py --device cuda [--batch 128] [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from repro.diffusion.losses import discriminator_bce_loss
from repro.nets.adm import ADMFeatures, ADMHead, adm_classifier, dg_head
from repro.nets.discriminator import TimeConditionedDiscriminator
from repro.train.probes import peak_memory, reset_peak_memory, synchronize


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128, help="real images per step (as many generated)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    enc = ADMFeatures(adm_classifier(32))
    disc = TimeConditionedDiscriminator(enc, ADMHead(dg_head(enc.out_channels, 8)), encoder_takes_time=True)
    disc = disc.to(device).train()
    opt = torch.optim.Adam([p for p in disc.parameters() if p.requires_grad], lr=3e-4, weight_decay=1e-7)
    g = torch.Generator().manual_seed(1)
    real = (torch.rand(args.batch, 3, 32, 32, generator=g) * 2 - 1).to(device)
    fake = (torch.rand(args.batch, 3, 32, 32, generator=g) * 2 - 1).to(device)

    def step():
        loss = discriminator_bce_loss(disc, real, fake, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    reset_peak_memory(device)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    sec = (time.perf_counter() - t0) / args.steps
    mb, kind = peak_memory(device)
    steps_50_epochs = 50 * (50_000 // args.batch)
    out = {"device": str(device), "batch_real": args.batch, "ms_per_step": 1e3 * sec,
           "images_per_second": 2 * args.batch / sec, "peak_memory_mb": mb, "peak_memory_kind": kind,
           "trainable_parameters": sum(p.numel() for p in disc.parameters() if p.requires_grad),
           "parameters": sum(p.numel() for p in disc.parameters()),
           "hours_for_50_epochs": steps_50_epochs * sec / 3600}
    print(f"DG discriminator step ({out['parameters']} params, {out['trainable_parameters']} trainable), "
          f"batch {args.batch}+{args.batch}, {device}: {out['ms_per_step']:.1f} ms, "
          f"{out['images_per_second']:.0f} img/s, peak {mb:.0f} MiB ({kind}); 50 epochs of 50k+50k: "
          f"{out['hours_for_50_epochs']:.2f} h")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
