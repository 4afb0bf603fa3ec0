"""Benchmark: EDM training steps with and without mixed precision (time per step, peak memory).

Runs repro.train.train (the suite's loop: AMP autocast + GradScaler on CUDA, bf16 autocast on
the CPU, EMA, clipping) on synthetic 32x32 images with the EDM loss, for `--steps` optimizer
steps at each precision, and prints seconds per step (the first `--warmup` steps excluded by
training those first) and the loop's peak-memory probe (CUDA max allocated on a GPU, the
process's peak RSS on the CPU, which cannot be reset between the two runs).

Run: python benchmarks/bench_train_amp.py --device cuda --net paper --batch 128 --steps 30
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from repro.diffusion.edm import EDMPrecond, edm_loss
from repro.nets.ddpmpp import DDPMpp, DDPMppConfig, ddpmpp_cifar10_config
from repro.train import TrainConfig, train


class Synthetic(torch.utils.data.Dataset):
    def __init__(self, n: int, res: int):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, res, res, generator=g)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i]}


def loss_fn(model, batch, generator):
    return edm_loss(model, batch["image"] * 2 - 1, generator)


def run(args, amp: bool) -> dict:
    torch.manual_seed(0)
    if args.net == "paper":
        cfg = ddpmpp_cifar10_config(augment_dim=0)
    else:
        cfg = DDPMppConfig(img_resolution=32, model_channels=16, channel_mult=(1, 2), num_blocks=1,
                           attn_resolutions=(16,), dropout=0.0)
    model = EDMPrecond(DDPMpp(cfg))
    data = Synthetic(args.batch * (args.steps + args.warmup), 32)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = {"batch_size": args.batch, "lr": 1e-4, "amp": amp, "ema_decay": 0.999, "device": args.device, "epochs": 1}
        t0 = time.perf_counter()
        train(model, loss_fn, data, TrainConfig(**base, max_steps=args.warmup), tmp, progress=False)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = train(model, loss_fn, data, TrainConfig(**base, max_steps=args.warmup + args.steps), tmp,
                    progress=False)   # resumes from the warm-up checkpoint
        out["seconds_per_step"] = (time.perf_counter() - t0) / args.steps
        out["warmup_seconds"] = warm
        out["final_loss"] = res.history[-1]["loss"] if res.history else None
        out.update(res.probes)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=["small", "paper"], default="small")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    result = {"device": args.device, "net": args.net, "batch": args.batch, "steps": args.steps,
              "fp32": run(args, amp=False), "amp": run(args, amp=True)}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    f, a = result["fp32"], result["amp"]
    print(f"{args.net} DDPM++ ({f['parameters']} params), batch {args.batch}, {args.device}: "
          f"fp32 {f['seconds_per_step'] * 1e3:.1f} ms/step, peak {f['peak_memory_mb']:.0f} MiB ({f['peak_memory_kind']}); "
          f"AMP {a['seconds_per_step'] * 1e3:.1f} ms/step, peak {a['peak_memory_mb']:.0f} MiB; "
          f"speed-up {f['seconds_per_step'] / a['seconds_per_step']:.2f}x, memory x{a['peak_memory_mb'] / f['peak_memory_mb']:.2f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
