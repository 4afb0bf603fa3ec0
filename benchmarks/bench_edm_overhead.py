"""Benchmark: EDM Heun sampler overhead and the cost of discriminator guidance (issue 4).

1. t_eval: one evaluation of a small DDPM++ denoiser (EDM preconditioning) at batch B.
2. Heun sampling with N steps: overhead = wall / (NFE x t_eval); goal <= 1.05.
3. DG cost: (guided wall - unguided wall) / guided evaluations, compared with one
   discriminator forward + backward (discriminator_correction) at the same batch.

Timings are medians over --repeats, interleaved. On a shared, loaded CPU the standalone
t_eval drifts between measurements, so the overhead is also reported against the time spent
inside the denoiser during the same sampling run (wall and process CPU time), which load
affects alike. Run: python benchmarks/bench_edm_overhead.py [--device cuda] [--threads 1]
--net paper uses EDM's CIFAR-10 DDPM++ (55.7M parameters) and --disc adm Kim et al.'s
discriminator (ADM 32x32 classifier, frozen, + ADM head), both with random weights.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from repro.diffusion.edm import EDMPrecond
from repro.guidance.discriminator import DiscriminatorGuidance, discriminator_correction
from repro.nets.ddpmpp import (
    DDPMpp,
    DDPMppConfig,
    count_parameters,
    ddpmpp_cifar10_config,
)
from repro.nets.discriminator import TimeConditionedDiscriminator, small_discriminator
from repro.sampling.edm import edm_sample
from repro.train.probes import synchronize as _sync


class Timed:
    """Wraps a callable; accumulates wall and process-CPU seconds spent inside it."""

    def __init__(self, fn, device):
        self.fn, self.device = fn, device
        self.wall = self.cpu = 0.0
        self.calls = 0

    def __call__(self, *args, **kwargs):
        _sync(self.device)
        w0, c0 = time.perf_counter(), time.process_time()
        out = self.fn(*args, **kwargs)
        _sync(self.device)
        self.wall += time.perf_counter() - w0
        self.cpu += time.process_time() - c0
        self.calls += 1
        return out


def _timed_run(fn, device):
    """(result, wall s, cpu s) of one call."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--channels", type=int, default=8, help="DDPM++ model_channels")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--w", type=float, default=1.0, help="DG weight (1st order)")
    ap.add_argument("--net", choices=["small", "paper"], default="small",
                    help="small: DDPM++ with --channels; paper: EDM's CIFAR-10 DDPM++")
    ap.add_argument("--disc", choices=["small", "adm"], default="small",
                    help="small: the embedded profiles' discriminator; adm: Kim et al.'s (ADM encoders)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.net == "paper":
        cfg = ddpmpp_cifar10_config(img_resolution=args.resolution, dropout=0.0, augment_dim=0)
    else:
        cfg = DDPMppConfig(img_resolution=args.resolution, model_channels=args.channels,
                           channel_mult=(1, 2), num_blocks=1, attn_resolutions=(args.resolution // 2,),
                           dropout=0.0)
    net = DDPMpp(cfg)
    with torch.no_grad():
        net.out_conv.weight.normal_(0, 0.05)   # a non-trivial output, as a trained net has
    D = EDMPrecond(net).to(device).eval().requires_grad_(False)
    if args.disc == "adm":
        from repro.nets.adm import ADMFeatures, ADMHead, adm_classifier, dg_head

        enc = ADMFeatures(adm_classifier(args.resolution))
        disc = TimeConditionedDiscriminator(enc, ADMHead(dg_head(enc.out_channels, args.resolution // 4)),
                                            encoder_takes_time=True)
    else:
        disc = small_discriminator(3, 32)
    disc = disc.to(device).eval().requires_grad_(False)
    g = torch.Generator(device=device).manual_seed(1)
    z = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=g, device=device)
    x32, sig = z * 3.0, torch.full((args.batch,), 3.0, device=device)

    def one_eval():
        with torch.no_grad():
            D(x32, sig)

    def disc_fb():
        discriminator_correction(disc, z.double(), 3.0)

    one_eval(), disc_fb(), edm_sample(D, z, steps=2)   # warm-up
    rows = []
    for _ in range(args.repeats):
        r = {}
        # standalone: one denoiser evaluation, one discriminator forward + backward
        evals = [_timed_run(one_eval, device)[1:] for _ in range(5)]
        r["t_eval"] = statistics.median(e[0] for e in evals)
        r["t_fb"] = statistics.median(_timed_run(disc_fb, device)[1] for _ in range(5))
        # plain Heun, timing the denoiser calls inside the same run
        TD = Timed(D, device)
        res, r["plain_wall"], r["plain_cpu"] = _timed_run(lambda: edm_sample(TD, z, steps=args.steps), device)
        r["nfe"], r["inrun_eval_wall"], r["inrun_eval_cpu"] = res.nfe, TD.wall, TD.cpu
        # guided (EDM-G++): time spent inside the guidance term, per guided evaluation
        TD2 = Timed(D, device)
        TG = Timed(DiscriminatorGuidance(disc, w_1st=args.w), device)
        res, r["guided_wall"], _ = _timed_run(lambda: edm_sample(TD2, z, steps=args.steps, guidance=TG), device)
        r["guided_evals"], r["inrun_guidance_wall"] = res.guided_evals, TG.wall
        rows.append(r)
    m = lambda key: statistics.median(row[key] for row in rows)
    nfe, ge = rows[0]["nfe"], rows[0]["guided_evals"]
    out = {"device": str(device), "threads": torch.get_num_threads(), "batch": args.batch, "steps": args.steps,
               "nfe": nfe, "net": args.net, "disc": args.disc, "denoiser_params": count_parameters(net),
               "disc_params": sum(p.numel() for p in disc.parameters()), "repeats": args.repeats,
               "t_eval_ms": 1e3 * m("t_eval"), "heun_wall_s": m("plain_wall"),
               "overhead_standalone": statistics.median(r["plain_wall"] / (nfe * r["t_eval"]) for r in rows),
               "overhead_inrun_wall": statistics.median(r["plain_wall"] / r["inrun_eval_wall"] for r in rows),
               "overhead_inrun_cpu": statistics.median(r["plain_cpu"] / r["inrun_eval_cpu"] for r in rows),
               "guided_evals": ge, "disc_fb_ms": 1e3 * m("t_fb"),
               "dg_extra_per_guided_eval_ms": 1e3 * statistics.median(
                   (r["guided_wall"] - r["plain_wall"]) / ge for r in rows),
               "dg_inrun_per_guided_eval_ms": 1e3 * m("inrun_guidance_wall") / ge}
    out["dg_extra_over_fb"] = out["dg_extra_per_guided_eval_ms"] / out["disc_fb_ms"]
    out["dg_inrun_over_fb"] = out["dg_inrun_per_guided_eval_ms"] / out["disc_fb_ms"]
    out["per_repeat"] = [{k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    print(f"denoiser eval: {out['t_eval_ms']:.1f} ms (batch {args.batch}, {out['denoiser_params']} params, "
          f"{out['threads']} threads, {device})")
    print(f"Heun {args.steps} steps = {nfe} NFE: {out['heun_wall_s']:.3f} s; overhead = wall / (NFE x t_eval): "
          f"{out['overhead_standalone']:.3f} with standalone t_eval, {out['overhead_inrun_wall']:.3f} with the "
          f"same run's denoiser time (wall), {out['overhead_inrun_cpu']:.3f} (CPU time); goal <= 1.05")
    print(f"DG: {ge} guided evaluations; cost per guided eval {out['dg_extra_per_guided_eval_ms']:.1f} ms "
          f"(guided - plain wall), {out['dg_inrun_per_guided_eval_ms']:.1f} ms (inside the guidance call) vs "
          f"discriminator forward+backward {out['disc_fb_ms']:.1f} ms: ratios {out['dg_extra_over_fb']:.2f}, "
          f"{out['dg_inrun_over_fb']:.2f}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
