"""Benchmark: the cost of one segmentation-guided score evaluation (issue 8).

Goal: a guided evaluation score + s(t) grad log p_t(y | x) costs at most one score evaluation
plus one segmenter forward and backward pass: ratio = t_guided / (t_score + t_seg_fb) <= 1.05
(the guidance adds no second pass and little of its own). Networks with random weights at the
smoke profile's sizes (NCSN++ nf 16, ch_mult 1,2,2 and the U-Net base 16, depth 3, on 32x64
street scenes) by default, or the paper's (`--paper`: NCSN++ nf 128 with the thesis's
ch_mult, U-Net base 64 depth 4, 256x512; meant for a GPU). Also runs a short guided PC
sampler and checks the segmenter passes it made: one per score evaluation inside the window.

Timings are medians over --repeats of loops of consecutive calls, interleaved.
Run: python benchmarks/bench_guided_score.py [--batch 16] [--device cuda] [--paper]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from repro.diffusion.sde import VESDE, net_score_fn
from repro.guidance.segmentation import (GuidanceSettings, ScaleSchedule, SegmentationGuidance, SegmenterNoise,
                                         segmentation_log_likelihood_grad)
from repro.nets.ncsnpp import NCSNpp
from repro.nets.unet import NoiseConditionalUNet
from repro.sampling.predictor_corrector import predictor_corrector_sample
from repro.train.probes import synchronize


def _loop(fn, n, device) -> tuple[float, float]:
    """(wall, this process's CPU time) per call; on a shared CPU the CPU time is what load affects least."""
    synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--paper", action="store_true", help="the thesis's network sizes at 256x512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="PC steps of the pass-count check")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.paper:
        h, w, score_cfg, seg_cfg = 256, 512, dict(nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2,
                                                    attn_resolutions=(16,)), dict(base_channels=64, depth=4)
    else:
        h, w, score_cfg, seg_cfg = 32, 64, dict(nf=16, ch_mult=(1, 2, 2), num_res_blocks=1,
                                                  attn_resolutions=()), dict(base_channels=16, depth=3)
    net = NCSNpp(in_channels=3, image_size=(h, w), **score_cfg).to(device).eval().requires_grad_(False)
    seg = NoiseConditionalUNet(in_channels=3, num_classes=10, norm="group", noise_channel=True,
                               **seg_cfg).to(device).eval().requires_grad_(False)
    sde = VESDE(0.01, 100.0)
    score_fn = net_score_fn(net, sde)
    g = torch.Generator(device=device).manual_seed(1)
    x = sde.prior_sample((args.batch, 3, h, w), g, device) * 0.05
    target = torch.randint(0, 10, (args.batch, h, w), generator=torch.Generator().manual_seed(2)).to(device)
    t = torch.full((args.batch,), 0.6, device=device)   # inside Eq. 5.5's window: s(t) = s0
    noise = SegmenterNoise("log_sigma", 0.01, 100.0)
    guide = SegmentationGuidance(seg, target, ScaleSchedule("eq5_5", s0=0.002), sde.sigma, noise)
    level = noise.channel(sde.sigma(t))

    def score_only():
        with torch.no_grad():
            score_fn(x, t)

    def seg_fb():
        segmentation_log_likelihood_grad(seg, x, target, level, GuidanceSettings())

    def guided():
        with torch.no_grad():
            score_fn(x, t) + guide(x, t)

    for fn in (score_only, seg_fb, guided):
        fn()
    ts, tf, tg = [], [], []
    for _ in range(args.repeats):
        ts.append(_loop(score_only, args.loop, device))
        tf.append(_loop(seg_fb, args.loop, device))
        tg.append(_loop(guided, args.loop, device))
    m = statistics.median
    clock = 0 if device.type == "cuda" else 1   # CUDA: wall (the GPU's time); CPU: process time
    ratio = m(c[clock] for c in tg) / (m(c[clock] for c in ts) + m(c[clock] for c in tf))
    wall_ratio = m(c[0] for c in tg) / (m(c[0] for c in ts) + m(c[0] for c in tf))

    # passes in a sampler: one segmenter forward+backward per score evaluation where s(t) > 0
    counted = SegmentationGuidance(seg, target, ScaleSchedule("eq5_5", s0=0.002), sde.sigma, noise)
    x0 = sde.prior_sample((args.batch, 3, h, w), g, device)
    res = predictor_corrector_sample(score_fn, sde, x0, steps=args.steps, generator=g, snr=0.1, guidance=counted)
    grid = torch.linspace(1.0, 1e-5, args.steps)
    inside = int((ScaleSchedule("eq5_5", s0=0.002)(grid) > 0).sum()) * 2   # corrector + predictor per step
    out = dict(device=str(device), threads=torch.get_num_threads(), batch=args.batch, shape=[3, h, w],
               paper_sizes=args.paper, score_params=sum(p.numel() for p in net.parameters()),
               segmenter_params=sum(p.numel() for p in seg.parameters()),
               clock="wall" if clock == 0 else "process CPU time",
               t_score_ms=1e3 * m(c[clock] for c in ts), t_segmenter_fb_ms=1e3 * m(c[clock] for c in tf),
               t_guided_ms=1e3 * m(c[clock] for c in tg), ratio=ratio, wall_ratio=wall_ratio,
               ratio_per_repeat=[round(c[clock] / (a[clock] + b[clock]), 4) for a, b, c in zip(ts, tf, tg)],
               sampler_nfe=res.nfe, segmenter_passes=counted.calls, evaluations_inside_window=inside)
    print(f"batch {args.batch}, 3x{h}x{w}: score {out['t_score_ms']:.1f} ms + segmenter fwd+bwd "
          f"{out['t_segmenter_fb_ms']:.1f} ms; guided {out['t_guided_ms']:.1f} ms ({out['clock']}); ratio {ratio:.3f} "
          f"(goal <= 1.05; wall-clock {wall_ratio:.3f})")
    print(f"PC {args.steps} steps: {res.nfe} score evaluations, {counted.calls} segmenter passes "
          f"({inside} evaluations inside the window)")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
