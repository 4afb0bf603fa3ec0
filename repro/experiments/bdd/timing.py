"""Timing DDPM sampling (001 Tab. 2) under the speed-ups PyTorch offers, each measured on its own.

Variants: `fp32` (eager, what the paper's code ran), `bf16` (autocast), `channels_last` (bf16 + NHWC),
`compile` (bf16 + NHWC + torch.compile), `cuda_graphs` (the same through torch.compile's
"reduce-overhead" mode, which replays CUDA graphs; CUDA only). Weights do not change the time, so the
network is the spec's model config built with seeded random weights unless the spec asks for the
trained one.
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time
from dataclasses import dataclass

import torch

from repro.guidance.classifier_free import Guidance, guided_eps_fn
from repro.sampling.ddpm import ddpm_sample

VARIANTS = ("fp32", "bf16", "channels_last", "compile", "cuda_graphs")


def variant_unavailable(variant: str, device: torch.device) -> str | None:
    if variant == "cuda_graphs" and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if variant in ("compile", "cuda_graphs"):
        try:
            import torch._dynamo  # noqa: F401
        except Exception as e:   # pragma: no cover - a torch without dynamo
            return f"torch.compile unavailable ({type(e).__name__})"
    return None


@dataclass
class Prepared:
    net: torch.nn.Module
    autocast: bool
    channels_last: bool


def prepare_variant(net: torch.nn.Module, variant: str) -> Prepared:
    if variant not in VARIANTS:
        raise ValueError(f"unknown timing variant {variant!r}")
    cl = variant in ("channels_last", "compile", "cuda_graphs")
    if cl:   # a copy: Module.to(memory_format) converts in place, and the fp32/bf16 variants share `net`
        net = copy.deepcopy(net).to(memory_format=torch.channels_last)
    if variant == "compile":
        net = torch.compile(net, dynamic=False)
    elif variant == "cuda_graphs":
        net = torch.compile(net, mode="reduce-overhead", dynamic=False)
    return Prepared(net, variant != "fp32", cl)


def _autocast(device: torch.device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_sampling(prep: Prepared, schedule, shape: tuple[int, int, int], num_classes: int, batch: int,
                  conditional: bool, guidance: Guidance | None, loop: str, steps_timed: int | None,
                  warmup: int, repeats: int, device: torch.device, seed: int = 0) -> dict:
    """Median seconds of `repeats` sampling runs (after `warmup` untimed ones) of `steps_timed` steps
    (None: all of the loop's steps), per step, and the NFE of one full run."""
    g = torch.Generator(device=device).manual_seed(seed)
    c, h, w = shape
    mf = torch.channels_last if prep.channels_last else torch.contiguous_format
    labels = torch.randint(0, num_classes, (batch, h, w), generator=g, device=device)
    mask = (torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
            .contiguous(memory_format=mf) if conditional else None)
    eps_fn = guided_eps_fn(prep.net, mask, guidance)

    def run() -> tuple[float, int]:
        x = torch.randn((batch, c, h, w), generator=g, device=device).contiguous(memory_format=mf)
        _sync(device)
        t0 = time.perf_counter()
        with _autocast(device, prep.autocast):
            out = ddpm_sample(eps_fn, schedule, x, generator=g, loop=loop, first_steps=steps_timed)
        _sync(device)
        return time.perf_counter() - t0, out.nfe

    for _ in range(warmup):
        run()
    times, nfe = [], 0
    for _ in range(repeats):
        sec, nfe = run()
        times.append(sec)
    return {"median_seconds": statistics.median(times), "all_seconds": times, "steps_timed": nfe,
            "seconds_per_step": statistics.median(times) / nfe}
