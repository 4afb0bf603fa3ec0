"""Benchmark: DDPM ancestral sampling (001 paper Alg. 2) per step vs the mask-guided U-Net's own forward.

Targets (issue 14), at batch B = 64:
- unconditional: time per sampling step / one network forward of size B          <= 1.05
- guided (classifier-free, one batched pass [x; x] of size 2B with the mask on the first B rows):
  time per sampling step / one network forward of size 2B (mask on B rows)        <= 1.05
t_fwd is the median over --repeats of the mean of --eval-loop consecutive forwards; a sampling run is
--steps steps of the real sampler (repro.sampling.ddpm.ddpm_sample with the guided eps_fn of
repro.guidance.classifier_free). Because a shared machine makes the ratio noisy, the sampler's own cost
is also measured with a free network (a fixed tensor; for the guided path the batch doubling and the
combination of the two halves stay in): ratio_*_direct = 1 + t(step with the free network) / t_fwd.
Run: python benchmarks/bench_ddpm_sampler.py [--base 128 --size 128 --device cuda] (defaults: a small
net on the CPU; --base 128 --size 128 is the paper's 88,842,371-parameter network).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from repro.diffusion.ddpm import DDPMSchedule
from repro.guidance.classifier_free import Guidance, guided_eps_fn
from repro.nets.bdd_unet import MaskGuidedUNet, count_parameters
from repro.sampling.ddpm import ddpm_sample


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


@torch.no_grad()
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=16, help="image height = width (paper: 128)")
    ap.add_argument("--base", type=int, default=8, help="U-Net base width (paper: 128)")
    ap.add_argument("--emb", type=int, default=None, help="step embedding (default 2 x base)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps timed per run")
    ap.add_argument("--eval-loop", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: leave default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = MaskGuidedUNet(base=args.base, emb_dim=args.emb or 2 * args.base).to(device).eval()
    sched = DDPMSchedule.make("paper_cosine_beta", 1000)
    g = torch.Generator(device=device).manual_seed(0)
    b, s = args.batch, args.size
    x = torch.randn((b, 3, s, s), generator=g, device=device)
    t = torch.full((b,), 500, device=device, dtype=torch.long)
    labels = torch.randint(0, 19, (b, s, s), generator=g, device=device)
    mask = torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float()
    x2, t2 = torch.cat([x, x]), torch.cat([t, t])
    guidance = Guidance(3.0, "lerp")

    def fwd_u():
        for _ in range(args.eval_loop):
            net(x, t, None)

    def fwd_g():
        for _ in range(args.eval_loop):
            net(x2, t2, mask)

    free, free2 = torch.zeros_like(x), torch.zeros_like(x2)
    runs = {
        "fwd_uncond": lambda: fwd_u(),
        "fwd_guided_2b": lambda: fwd_g(),
        "sample_uncond": lambda: ddpm_sample(guided_eps_fn(net, None, None), sched, x, generator=g,
                                             first_steps=args.steps),
        "sample_guided": lambda: ddpm_sample(guided_eps_fn(net, mask, guidance), sched, x, generator=g,
                                             first_steps=args.steps),
        "sample_free": lambda: ddpm_sample(lambda xx, tt: free, sched, x, generator=g, first_steps=args.steps),
        # the guided path with a free network: [x; x], [t; t], the lerp of the two halves, the update
        "sample_free_guided": lambda: ddpm_sample(guided_eps_fn(lambda xx, tt, mm: free2 + 0 * xx.sum(), mask,
                                                                guidance), sched, x, generator=g,
                                                  first_steps=args.steps),
    }
    for fn in runs.values():   # warm-up
        fn()
    times = {k: [] for k in runs}
    for _ in range(args.repeats):   # interleaved, so background load hits all alike
        for k, fn in runs.items():
            times[k].append(_timed(fn, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    t_fwd_u = med["fwd_uncond"] / args.eval_loop
    t_fwd_g = med["fwd_guided_2b"] / args.eval_loop
    per_step_u = med["sample_uncond"] / args.steps
    per_step_g = med["sample_guided"] / args.steps
    per_step_free = med["sample_free"] / args.steps
    per_step_free_g = med["sample_free_guided"] / args.steps
    out = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "batch": b, "size": s, "base": args.base, "parameters": count_parameters(net), "steps": args.steps,
        "t_forward_B_ms": 1000 * t_fwd_u, "t_forward_2B_ms": 1000 * t_fwd_g,
        "t_step_uncond_ms": 1000 * per_step_u, "t_step_guided_ms": 1000 * per_step_g,
        "t_step_sampler_only_ms": 1000 * per_step_free, "t_step_guided_sampler_only_ms": 1000 * per_step_free_g,
        "ratio_uncond": per_step_u / t_fwd_u, "ratio_guided": per_step_g / t_fwd_g,
        "ratio_uncond_direct": 1 + per_step_free / t_fwd_u, "ratio_guided_direct": 1 + per_step_free_g / t_fwd_g,
        "target": 1.05,
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
