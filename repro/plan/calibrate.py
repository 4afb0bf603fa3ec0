"""Timing the networks of a plan on a device: each network at its profile's size with random
weights, each (op, batch) a few seconds (warm-up, then the median of repeated calls), with the
peak memory it needs (CUDA max_memory_allocated; on the CPU the process's peak RSS, labelled so).

A probe per model kind says how to build the network and feed it (a registry keyed by kind);
the Inception of `fid` is pytorch-fid's architecture with random weights.
"""
from __future__ import annotations

import ast
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from repro.data import dataset_info
from repro.metrics.inception import build_fid_inception
from repro.specs import resolve_model
from repro.train import TrainConfig, train
from repro.train.probes import CpuRssPeak
from repro.plan.store import Calibration
from repro.trainers import kind_module
from repro.work import EVAL, FEATURES, GRAD, LOOP, SIGMA_PAIRS, TRAIN, CellWork, NetRef

CUDA_MEMORY = "cuda max_memory_allocated"
CPU_MEMORY = "cpu peak RSS of the process"


@dataclass
class Probe:
    """A built network and how to call it on a batch: `inputs(b)` -> (x, *other args)."""
    net: torch.nn.Module
    inputs: Callable[[int], tuple]
    features: Callable | None = None   # net.features for feature extractors


PROBES: dict[str, Callable] = {}   # model kind -> (resolved model, device) -> Probe


def probe(kind: str):
    def register(fn):
        PROBES[kind] = fn
        return fn
    return register


def _shape(resolved) -> tuple[int, int, int]:
    ds = resolved.config.dataset
    info = dataset_info(ds.name)
    h, w = ds.resolution or info.default_resolution or (32, 32)
    return info.channels, int(h), int(w)


def _image_and_level(resolved, device, level: float = 1.0):
    c, h, w = _shape(resolved)
    return lambda b: (torch.rand(b, c, h, w, device=device), torch.full((b,), level, device=device))


def _image_only(resolved, device):
    c, h, w = _shape(resolved)
    return lambda b: (torch.rand(b, c, h, w, device=device),)


def _built(resolved):
    return kind_module(resolved.config.kind).build_net(resolved, {})


# noise-conditional networks: (x, noise level) — sigma, log sigma or the VP time, all a [B] tensor
for _kind, _level in (("score_sde", 1.0), ("edm", 1.0), ("noisy_classifier", 1.0), ("noisy_segmenter", 0.0),
                      ("discriminator", 0.5)):
    PROBES[_kind] = (lambda level: lambda resolved, device: Probe(_built(resolved).to(device),
                                                                  _image_and_level(resolved, device, level)))(_level)


@probe("evaluator")
def _evaluator(resolved, device) -> Probe:
    net = _built(resolved).to(device)
    return Probe(net, _image_only(resolved, device), getattr(net, "features", None))


@probe("pretrained_segmenter")
def _pretrained_segmenter(resolved, device) -> Probe:
    return Probe(_built(resolved).to(device), _image_only(resolved, device))


def _one_hot_maps(resolved, device):
    c, h, w = _shape(resolved)
    k = dataset_info(resolved.config.dataset.name).num_classes
    return k, lambda b: torch.nn.functional.one_hot(torch.randint(0, k, (b, h, w), device=device), k) \
        .permute(0, 3, 1, 2).float()


@probe("spade")
@probe("pix2pixhd")
def _gan_generator(resolved, device) -> Probe:
    """The generator of a semantic-synthesis GAN on one-hot label maps."""
    _, maps = _one_hot_maps(resolved, device)
    return Probe(_built(resolved).to(device), lambda b: (maps(b),))


@probe("mask_ddpm")
def _mask_ddpm(resolved, device) -> Probe:
    """The mask-guided DDPM U-Net eps(x, step, mask)."""
    c, h, w = _shape(resolved)
    _, maps = _one_hot_maps(resolved, device)
    return Probe(_built(resolved).to(device),
                 lambda b: (torch.randn(b, c, h, w, device=device), torch.full((b,), 500, device=device), maps(b)))


def inception_probe(ref: NetRef, device) -> Probe:
    net = build_fid_inception(None).to(device)   # pytorch-fid's architecture, random weights
    h, w = ref.resolution or (299, 299)
    return Probe(net, lambda b: (torch.rand(b, 3, h, w, device=device),))


class _PairDistances(torch.nn.Module):
    """One chunk of repro.diffusion.schedules.estimate_sigma_max: gather random pairs, the largest distance."""
    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.register_buffer("flat", images.reshape(images.shape[0], -1))

    def forward(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return (self.flat[i] - self.flat[j]).norm(dim=1).max()


def sigma_pairs_probe(ref: NetRef, device) -> Probe:
    c, h, w = ref.resolution
    n = 1024
    net = _PairDistances(torch.rand(n, c, h, w)).to(device)
    return Probe(net, lambda b: (torch.randint(0, n, (b,), device=device), torch.randint(0, n, (b,), device=device)))


def time_loop_step(shape: tuple[int, int, int], batch: int, device) -> dict:
    """Seconds per step of the suite's training loop (repro.train) itself at this batch: batching the
    items, the loop's bookkeeping, the epoch-end checkpoint, with a one-weight model, so that only the
    machinery around the network is measured (most of a tiny network's step). Two runs (4 and 12
    steps); their difference over 8 steps leaves the set-up out."""


    def run(steps: int) -> float:
        items = [{"image": torch.rand(*shape), "label": torch.tensor(0)} for _ in range(steps * batch)]
        net = _Weight().to(device)
        loss = lambda model, b, g: (model.w * b["image"].to(model.w.device).mean()).square().sum()  # noqa: E731
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            train(net, loss, items, TrainConfig(epochs=1, batch_size=batch, device=str(device), ema_decay=None,
                                                grad_clip=None), out, progress=False)
            return time.perf_counter() - t0

    run(1)   # warm-up: lazy imports, first allocations
    per_step = max(run(12) - run(4), 0.0) / 8
    return {"seconds_per_call": per_step, "repeats": 8, "images_per_second": batch / per_step if per_step else 0.0,
            "peak_memory_mb": None, "memory_kind": None}


class _Weight(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def build_probe(ref: NetRef, device) -> Probe | None:
    if ref.profile is None:
        if ref.name == SIGMA_PAIRS:
            return sigma_pairs_probe(ref, device)
        return inception_probe(ref, device) if ref.name == "inception" else None

    resolved = resolve_model(ref.name, ref.profile, {k: _literal(v) for k, v in ref.overrides} or None)
    fn = PROBES.get(resolved.config.kind)
    return fn(resolved, device) if fn else None


def _literal(text: str):
    return ast.literal_eval(text)


# ----------------------------------------------------------------------------- timing

def _call(p: Probe, op: str, batch: int, opt) -> Callable[[], None]:
    args = p.inputs(batch)
    if op in (EVAL, FEATURES):
        fn = p.features if op == FEATURES and p.features is not None else p.net

        def run():
            with torch.no_grad():
                fn(*args)
        return run
    if op == GRAD:
        def run():
            x = args[0].detach().requires_grad_(True)
            out = p.net(x, *args[1:])
            out = out[0] if isinstance(out, (list, tuple)) else out
            torch.autograd.grad(out.float().sum(), x)
        return run

    def run():   # TRAIN: forward, a squared-error loss, backward, an Adam step
        opt.zero_grad(set_to_none=True)
        out = p.net(*args)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.float().square().mean().backward()
        opt.step()
    return run


def time_op(p: Probe, op: str, batch: int, device, budget_s: float = 2.0, max_repeats: int = 7,
            min_repeats: int = 3) -> dict:
    """Warm-up call, then repeated calls until `budget_s` (at least min_repeats, at most max_repeats): the
    median seconds per call and the peak memory. A median of three, not one call: on a shared machine
    one call can take twice the next."""
    p.net.train(op == TRAIN)
    opt = torch.optim.Adam([q for q in p.net.parameters() if q.requires_grad] or [torch.zeros(1)], lr=1e-9) \
        if op == TRAIN else None
    run = _call(p, op, batch, opt)
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with CpuRssPeak() as rss:
        run()
        sync()
        times, start = [], time.perf_counter()
        while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < budget_s):
            t0 = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - t0)
    p.net.eval()
    mem = (torch.cuda.max_memory_allocated(device) / 2**20, CUDA_MEMORY) if cuda else (rss.peak_mb, CPU_MEMORY)
    return {"seconds_per_call": statistics.median(times), "repeats": len(times),
            "images_per_second": batch / statistics.median(times), "peak_memory_mb": mem[0], "memory_kind": mem[1]}


def targets(work: CellWork, share: float = 0.1) -> list[tuple[NetRef, str, int]]:
    """The (network, op, batch) to time: per (network, op) the batch carrying the most images, and any
    other batch carrying at least `share` of that network's images in that op (the rest is scaled)."""
    by: dict[tuple[str, str], dict[int, int]] = {}
    refs: dict[str, NetRef] = {}
    for w in work.items:
        refs[w.net.key] = w.net
        by.setdefault((w.net.key, w.op), {}).setdefault(w.batch, 0)
        by[(w.net.key, w.op)][w.batch] += w.images
    out = []
    for (key, op), batches in by.items():
        total = sum(batches.values())
        top = max(batches, key=batches.get)
        out += [(refs[key], op, b) for b, n in batches.items() if b == top or n >= share * total]
    return out


def calibrate(work: CellWork, device, cal: Calibration, budget_s: float = 2.0,
              echo: Callable[[str], None] = lambda s: None) -> Calibration:
    """Time every target of `work` on `device` into `cal`; networks that cannot be built are skipped."""
    device = torch.device(device)
    cache: dict[str, Probe | None] = {}

    for ref, op, batch in sorted(targets(work), key=lambda t: (t[0].key, t[1], t[2])):
        if ref.name == LOOP:
            m = time_loop_step(tuple(ref.resolution), batch, device)
            cal.put(ref.key, op, batch, **m)
            echo(f"  {ref.key} batch {batch}: {m['seconds_per_call'] * 1000:.1f} ms per step of the loop itself")
            continue
        if ref.key not in cache:
            try:
                cache.clear()   # one network in memory at a time
                cache[ref.key] = build_probe(ref, device)
            except Exception as e:   # noqa: BLE001 - a network we cannot build is reported, not fatal
                echo(f"  {ref.key}: cannot build for timing ({type(e).__name__}: {e})")
                cache[ref.key] = None
        p = cache[ref.key]
        if p is None:
            continue
        m = time_op(p, op, batch, device, budget_s)
        cal.put(ref.key, op, batch, **m)
        echo(f"  {ref.key} {op} batch {batch}: {m['seconds_per_call'] * 1000:.1f} ms/call "
             f"({m['images_per_second']:.1f} images/s, {m['repeats']} calls), peak {m['peak_memory_mb']:.0f} MiB "
             f"({m['memory_kind']})")
    return cal
