"""Benchmark: overhead of the score-SDE samplers (issue 3) around the score network.

t_eval is one evaluation of a small NCSN++ score function at batch B (the mean over a loop of
consecutive evaluations). Each sampler (PC with
Langevin corrector, Euler-Maruyama, Heun on the probability-flow ODE) runs N steps on the VE
SDE; overhead = wall / (NFE x t_eval), goal <= 1.05. Because a shared machine makes the
ratio noisy, the sampler's own cost is also measured directly with a free score function
(a fixed tensor): overhead_direct = 1 + wall(free score) / (NFE x t_eval).

Timings are medians over --repeats, interleaved so that background load hits all alike.
Run: python benchmarks/bench_sampler_overhead.py [--steps 50] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from repro.diffusion.sde import VESDE, net_score_fn
from repro.nets.ncsnpp import NCSNpp
from repro.sampling.ode import probability_flow_ode_sample
from repro.sampling.predictor_corrector import predictor_corrector_sample
from repro.sampling.sde_solvers import euler_maruyama_sample
from repro.train.probes import synchronize as _sync


def _time(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


SAMPLERS = {
    "pc": lambda s, sde, x, n, g: predictor_corrector_sample(s, sde, x, steps=n, generator=g, snr=0.16),
    "em": lambda s, sde, x, n, g: euler_maruyama_sample(s, sde, x, steps=n, generator=g),
    "heun_ode": lambda s, sde, x, n, g: probability_flow_ode_sample(s, sde, x, steps=n, method="heun"),
}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--height", type=int, default=16)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--nf", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-loop", type=int, default=25, help="consecutive evaluations per t_eval")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = NCSNpp(in_channels=args.channels, nf=args.nf, ch_mult=(1, 2), num_res_blocks=1,
                 attn_resolutions=(args.height // 2,), image_size=(args.height, args.width))
    with torch.no_grad():
        net.conv_out.weight.normal_(0, 0.05)  # a non-trivial output, as a trained net has
    net = net.to(device).eval().requires_grad_(False)
    n_params = sum(p.numel() for p in net.parameters())
    sde = VESDE(sigma_min=0.01, sigma_max=50.0)
    score_fn = net_score_fn(net, sde)
    gen = torch.Generator(device=device).manual_seed(1)
    x_init = sde.prior_sample((args.batch, args.channels, args.height, args.width), gen, device)
    t_mid = torch.full((args.batch,), 0.5, device=device)
    fixed = score_fn(x_init, t_mid)
    free_score = lambda x, t: fixed  # costs nothing: what remains is the sampler's own work

    def one_eval():
        with torch.no_grad():
            score_fn(x_init, t_mid)

    def run(name, s):
        return lambda: SAMPLERS[name](s, sde, x_init, args.steps, gen)

    nfe = {name: SAMPLERS[name](free_score, sde, x_init, args.steps, gen).nfe for name in SAMPLERS}
    for fn in [one_eval] + [run(n, score_fn) for n in SAMPLERS]:  # warm-up
        fn()
    t_eval, wall, free = [], {n: [] for n in SAMPLERS}, {n: [] for n in SAMPLERS}
    for _ in range(args.repeats):
        # mean over a run of consecutive evaluations, as inside a sampler (a median of single
        # calls would pick the quiet moments of a loaded machine and bias the ratio upwards)
        t_eval.append(_time(lambda: [one_eval() for _ in range(args.eval_loop)], device) / args.eval_loop)
        for name in SAMPLERS:
            wall[name].append(_time(run(name, score_fn), device))
            free[name].append(_time(run(name, free_score), device))
    m = statistics.median
    te = m(t_eval)
    out = dict(device=str(device), threads=torch.get_num_threads(), batch=args.batch,
               shape=[args.channels, args.height, args.width], steps=args.steps,
               score_params=n_params, t_eval_ms=1e3 * te, samplers={})
    print(f"score eval: {1e3 * te:.1f} ms (batch {args.batch}, {args.channels}x{args.height}x"
          f"{args.width}, {n_params} params, {out['threads']} threads)")
    for name in SAMPLERS:
        r = dict(nfe=nfe[name], wall_s=m(wall[name]), overhead=m(wall[name]) / (nfe[name] * te),
                 sampler_own_s=m(free[name]),
                 overhead_direct=1.0 + m(free[name]) / (nfe[name] * te),
                 overhead_per_repeat=[round(w / (nfe[name] * e), 4) for w, e in zip(wall[name], t_eval)])
        out["samplers"][name] = r
        print(f"{name:9s} N={args.steps:4d} NFE={r['nfe']:5d} wall {r['wall_s']:.3f} s  overhead "
              f"{r['overhead']:.3f}  direct {r['overhead_direct']:.4f} (sampler's own {1e3 * r['sampler_own_s']:.1f} ms)"
              f"  goal <= 1.05")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
