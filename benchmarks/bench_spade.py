"""Benchmark: SPADE at the paper's setting (issue 9: images per second and peak memory at
256x512, batch 16 — the release's Cityscapes batch) — one GanStep (a G step, then a D step on a
fresh fake, as the `spade` model kind trains) and generation alone, on random maps and images.

The widths are spade_cityscapes.yaml's paper profile (ngf 64, 6 upsamplings, SPADE hidden 128,
2 PatchGAN scales of n_layers_D 4), 20 classes (Cityscapes train ids + background), no VGG loss
(it needs ImageNet weights; the release adds one VGG-19 forward of fake and real per G step).
Prints JSON: ms per step, training images per second, generation images per second, peak memory
(CUDA allocated / reserved; on the CPU the peak RSS, labelled as such) and what 200 epochs over
the 2975 Cityscapes training images would take at that speed.

Run: python benchmarks/bench_spade.py --device cuda [--batch 16] [--steps 20]
     python benchmarks/bench_spade.py --device cpu --size 16 32 --ngf 8 --n-up 3   (a quick check)
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def main(argv=None) -> dict:
    from repro.nets.patchgan import MultiscaleDiscriminator
    from repro.nets.spade import SPADEGenerator, init_spade_weights
    from repro.train.gan_step import GanObjective, GanPair, GanStep
    from repro.train.probes import cuda_peak_reserved_mb, peak_memory, reset_peak_memory, synchronize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--n-up", type=int, default=6)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    h, w = args.size
    g = SPADEGenerator(args.classes, (h, w), ngf=args.ngf, n_up=args.n_up, hidden=args.hidden)
    d = MultiscaleDiscriminator(args.classes + 3, ndf=args.ndf, n_layers=4, num_d=2)
    init_spade_weights(g)
    init_spade_weights(d)
    pair = GanPair(g, d).to(device)
    rule = GanStep(pair, args.classes, GanObjective(), lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.999),
                   update="alternating", steps_per_epoch=10 ** 9, flip=True)
    gen = torch.Generator(device=device).manual_seed(0)
    batch = {"label": torch.randint(0, args.classes, (args.batch, h, w), device=device),
             "image": torch.rand(args.batch, 3, h, w, device=device)}
    for _ in range(args.warmup):
        rule(pair, batch, gen)
    synchronize(device)
    reset_peak_memory(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        rule(pair, batch, gen)
    synchronize(device)
    step_s = (time.perf_counter() - t0) / args.steps
    mb, kind = peak_memory(device)
    out = {"device": str(device), "size": [h, w], "batch": args.batch, "ngf": args.ngf, "n_up": args.n_up,
           "parameters_generator": sum(p.numel() for p in g.parameters()),
           "parameters_discriminator": sum(p.numel() for p in d.parameters()),
           "ms_per_train_step": 1000 * step_s, "train_images_per_second": args.batch / step_s,
           "train_peak_memory_mb": mb, "train_peak_memory_kind": kind,
           "hours_for_200_epochs_of_2975": 200 * 2975 / (args.batch / step_s) / 3600}
    if device.type == "cuda":
        out["train_cuda_max_reserved_mb"] = cuda_peak_reserved_mb(device)
    from repro.nets.spade import one_hot_map

    seg = one_hot_map(batch["label"], args.classes)
    g.eval()
    with torch.no_grad():
        for _ in range(args.warmup):
            g(seg)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            g(seg)
        synchronize(device)
    out["generate_images_per_second"] = args.batch * args.steps / (time.perf_counter() - t0)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
