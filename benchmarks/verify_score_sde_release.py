"""Check repro against the score SDE release's own code (not a test: it needs a checkout).

    python benchmarks/verify_score_sde_release.py /path/to/score_sde_pytorch

1. networks: the release's models.ncsnpp.NCSNpp and repro.nets.score_sde on the same random
   weights (a state dict of the release's, loaded strictly into both) and inputs, for reduced
   NCSN++ (FIR, residual input pyramid, attention at 16) and DDPM++ configs; and the parameter
   counts of the full CIFAR-10 configs;
2. samplers: the release's sampling.get_pc_sampler (global RNG) and repro's
   predictor_corrector_sample(discretisation="score_sde") drawing from the same global generator,
   float64, VE / VP / sub-VP, every predictor, with and without the Langevin corrector.

The release's op/upfirdn2d.py compiles a CUDA extension on import; here a module `op` is made at
run time from that file's own CPU function (upfirdn2d, which calls upfirdn2d_native on the CPU).
Measured on 2026-12-01 (CPU): every difference 0.0; counts 62,758,915 (NCSN++) and 61,804,419
(DDPM++); the release's Langevin corrector fails on sub-VP (subVPSDE has no `alphas`).
"""
from __future__ import annotations

import sys
import types
from dataclasses import replace
from pathlib import Path

import torch


def _install_cpu_op(root: Path) -> None:
    src = (root / "op" / "upfirdn2d.py").read_text()
    mod = types.ModuleType("op")
    exec("import torch\nfrom torch.nn import functional as F\n" + src[src.index("def upfirdn2d(input"):], mod.__dict__)
    sys.modules["op"] = mod


def _release_config(c):
    ns = types.SimpleNamespace
    fields = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resamp_with_conv", "conditional",
              "fir", "skip_rescale", "resblock_type", "progressive", "progressive_input", "progressive_combine",
              "init_scale", "embedding_type", "fourier_scale", "scale_by_sigma", "nonlinearity", "sigma_min",
              "sigma_max", "num_scales")
    model = ns(**{k: getattr(c, k) for k in fields}, fir_kernel=list(c.fir_kernel), attention_type="ddpm",
               conv_size=3, name="ncsnpp", normalization="GroupNorm")
    return ns(model=model, data=ns(image_size=c.image_size, num_channels=c.num_channels, centered=c.centered),
              training=ns(continuous=True))


def check_networks() -> None:
    import models.ncsnpp as release

    from repro.nets.score_sde import CIFAR10_DDPMPP_CONTINUOUS, CIFAR10_NCSNPP_CONTINUOUS, ScoreSdeScoreNet

    for name, full in (("NCSN++", CIFAR10_NCSNPP_CONTINUOUS), ("DDPM++", CIFAR10_DDPMPP_CONTINUOUS)):
        c = replace(full, nf=32, num_res_blocks=1)
        torch.manual_seed(0)
        theirs = torch.nn.DataParallel(release.NCSNpp(_release_config(c))).eval()
        ours = ScoreSdeScoreNet(c).eval()
        g = torch.Generator().manual_seed(1)
        state = {k: (torch.randn(v.shape, generator=g, dtype=v.dtype) * 0.05
                     if v.is_floating_point() and not k.endswith("sigmas") else v)
                 for k, v in theirs.state_dict().items()}
        theirs.load_state_dict(state, strict=True)
        ours.load_state_dict(state, strict=True)
        x = torch.rand(2, 3, 32, 32, generator=g)
        cond = torch.tensor([0.5, 20.0]) if c.embedding_type == "fourier" else torch.tensor([10.0, 900.0])
        with torch.no_grad():
            diff = float((theirs.module(x, cond) - ours.module(x, cond)).abs().max())
        n_full = sum(p.numel() for p in release.NCSNpp(_release_config(full)).parameters())
        print(f"{name}: max |release - repro| = {diff:.3g} (reduced config); parameters of the CIFAR-10 config: "
              f"release {n_full:,}, repro {sum(p.numel() for p in ScoreSdeScoreNet(full).parameters()):,}")


def check_samplers() -> None:
    import sampling
    import sde_lib

    from repro.diffusion.sde import SubVPSDE, VESDE, VPSDE
    from repro.sampling.predictor_corrector import predictor_corrector_sample

    class Toy(torch.nn.Module):
        def forward(self, x, labels):
            lab = labels.reshape(-1, 1, 1, 1)
            return -x / (1 + lab ** 2) + 0.2 * torch.sin(x + lab / 100)

    model, n, shape = Toy(), 41, (3, 2, 4, 4)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # the release's tables follow the default dtype
    try:
        for kind in ("ve", "vp", "subvp"):
            ref = {"ve": lambda: sde_lib.VESDE(0.01, 50, n), "vp": lambda: sde_lib.VPSDE(0.1, 20, n),
                   "subvp": lambda: sde_lib.subVPSDE(0.1, 20, n)}[kind]()
            ours_sde = {"ve": VESDE(0.01, 50.0), "vp": VPSDE(0.1, 20.0), "subvp": SubVPSDE(0.1, 20.0)}[kind]
            eps = 1e-5 if kind == "ve" else 1e-3
            score = sampling.mutils.get_score_fn(ref, model, train=False, continuous=True)
            for pred, ref_pred, pf in (("euler_maruyama", "euler_maruyama", False),
                                       ("reverse_diffusion", "reverse_diffusion", False),
                                       ("ancestral", "ancestral_sampling", False),
                                       ("probability_flow", "reverse_diffusion", True)):
                for corr in ("langevin", "none"):
                    if kind == "subvp" and (pred == "ancestral" or corr == "langevin"):
                        continue   # the release: ancestral is VE/VP only; subVPSDE has no `alphas`
                    fn = sampling.get_pc_sampler(ref, shape, sampling.get_predictor(ref_pred),
                                                 sampling.get_corrector(corr), lambda x: x, snr=0.16, n_steps=2,
                                                 probability_flow=pf, continuous=True, denoise=True, eps=eps,
                                                 device="cpu")
                    torch.manual_seed(5)
                    theirs, _ = fn(model)
                    torch.manual_seed(5)
                    x0 = ref.prior_sampling(shape)
                    ours = predictor_corrector_sample(score, ours_sde, x0, steps=n, eps=eps, predictor=pred,
                                                      corrector=corr, snr=0.16, n_corrector_steps=2,
                                                      generator=torch.default_generator,
                                                      discretisation="score_sde").samples
                    print(f"{kind:5s} {pred:17s} {corr:8s} max |release - repro| = "
                          f"{float((theirs - ours).abs().max()):.3g}")
    finally:
        torch.set_default_dtype(default)


def main() -> None:
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "models" / "ncsnpp.py").is_file():
        raise SystemExit("usage: python benchmarks/verify_score_sde_release.py /path/to/score_sde_pytorch")
    root = Path(sys.argv[1]).resolve()
    _install_cpu_op(root)
    sys.path.insert(0, str(root))
    check_networks()
    check_samplers()


if __name__ == "__main__":
    main()
