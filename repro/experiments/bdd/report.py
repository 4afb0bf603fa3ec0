"""The reports of the mask-guided DDPM kinds of the 001 paper: figures and findings per kind.

mask_guided_metrics (Sec. 5.1): sample sheets and the SSIM extremes, what the metrics were computed on;
inference_timing (Tab. 2): time vs batch size, reproduced beside published; unconditional_samples
(Sec. 5.2.5, Fig. 24): the sample grids and their sharpness.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from repro.images import rows_figure
from repro.plots import pyplot
from repro.results import copy_first_artifact, resolve_artifact


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    return FIGURES[spec.kind](spec, df, out_dir, stem)


def report_notes(spec, df) -> list[str]:
    return NOTES[spec.kind](spec, df)


# ----------------------------------------------------------------------------- mask_guided_metrics

def _metrics_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    out = []
    for col, suffix in (("sheet_png", "sheet"), ("ssim_lowest_png", "ssim_lowest"), ("ssim_highest_png", "ssim_highest")):
        p = copy_first_artifact(df, col, out_dir / f"{stem}_{suffix}.png")
        if p:
            out.append(p)
    return out


def _metrics_notes(spec, df) -> list[str]:
    notes = []
    if not len(df):
        return notes
    r = df.iloc[0]
    notes.append(f"Sampling: {'the appendix loop, reversed(range(1, T)): ' if r.get('loop') == 'appendix' else 'Alg. 2: '}"
                 f"{int(r.get('nfe_per_batch', 0))} network passes per image batch; guidance "
                 f"{r.get('guidance_convention')} weight {r.get('guidance_weight')} (Ho & Salimans w = "
                 f"{r.get('guidance_w_ho_salimans')}, lerp s = {r.get('guidance_s_lerp')}); each step one network pass "
                 f"of {int(r.get('network_rows_per_pass', 0))} rows (guided: the batch twice, masked rows first).")
    notes.append(f"Pixel accuracy and IoU: segmenter `{r.get('segmenter')}` ({int(r.get('segmenter_classes', 0))} "
                 f"classes) on the original and the generated image, the original's prediction the reference "
                 f"(001 Sec. 5.1.4 used Mask2Former trained on Cityscapes). `miou` averages per-image IoUs per class; "
                 f"the dataset-level mIoU was {float(r.get('miou_dataset', float('nan'))):.4f}."
                 + (f" Against the input masks themselves: pixel accuracy {float(r['pixel_acc_vs_mask']):.4f}, "
                    f"mIoU {float(r['miou_vs_mask']):.4f}." if "pixel_acc_vs_mask" in r and r["pixel_acc_vs_mask"] == r["pixel_acc_vs_mask"] else ""))
    notes.append(f"SSIM ranges {float(r.get('ssim_min', 0)):.3f} to {float(r.get('ssim_max', 0)):.3f} over "
                 f"{int(r.get('n_samples', 0))} pairs (the paper saw its lowest values at day/night shifts).")
    notes.append("The published FID, 0.4533 on 1000 images, is implausible for 2048-dimensional Inception features: "
                 "with fewer images than dimensions the covariances are rank-deficient, and even two disjoint sets of "
                 "real images of one dataset give FIDs far above 1 at that size. The paper calls it \"an average\", "
                 "which suggests it is not the FID of the 1000-image sets.")
    if "fd_evalnet" in df:
        notes.append("At this profile `fd_evalnet`/`kid_evalnet` use the suite's evaluator features through "
                     "torchmetrics' FID/KID classes: other feature spaces than the paper's Inception, not comparable "
                     "to its numbers.")
    return notes


# ----------------------------------------------------------------------------- inference_timing

def _timing_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    plt = pyplot(theme=False)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for (mode, variant), g in df.groupby(["mode", "variant"]):
        g = g.sort_values("batch_size")
        ax.plot(g["batch_size"], g["seconds"], "o-", label=f"reproduced {mode}, {variant}")
    pub = pd.DataFrame(spec.paper.cells)
    if len(pub):
        for mode, g in pub.groupby("mode"):
            g = g.sort_values("batch_size")
            ax.plot(g["batch_size"], g["seconds"], "s--", label=f"published {mode} (Tab. 2)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (images sampled together)")
    ax.set_ylabel("seconds for the full sampling run")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path = out_dir / f"{stem}_times.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _timing_notes(spec, df) -> list[str]:
    notes = []
    if not len(df):
        return notes
    first = df.iloc[0]
    notes.append(f"Device: {first.get('device_name')}; "
                 + ("times extrapolated from " + str(int(first['steps_timed'])) + " timed steps. "
                    if bool(first.get("extrapolated")) else "every step timed. ")
                 + f"{int(first.get('parameters', 0)):,} parameters, images {first.get('image_shape')}, "
                   f"{first.get('weights')} weights.")
    pivot = df.pivot_table(index=["variant", "batch_size"], columns="mode", values="seconds")
    if {"conditional", "unconditional"} <= set(pivot.columns):
        r = (pivot["conditional"] / pivot["unconditional"]).dropna()
        pub = pd.DataFrame(spec.paper.cells)
        pr = None
        if len(pub):
            pp = pub.pivot_table(index="batch_size", columns="mode", values="seconds")
            pr = (pp["conditional"] / pp["unconditional"])
        notes.append(f"Conditional / unconditional time: {r.min():.2f} to {r.max():.2f} here"
                     + (f"; published {pr.min():.3f} to {pr.max():.3f} (2-6 % slower)" if pr is not None else "")
                     + " (single timings on a shared CPU are noisy). Here guided sampling runs both predictions in one batched pass of 2B rows and "
                       "unconditional sampling one pass of B rows, so conditional costs up to twice as much where "
                       "the device is saturated. The paper's near-equal times fit two network passes per step in "
                       "*both* modes (its unconditional sampling presumably went through the same guided code "
                       "path), i.e. its unconditional times are not what one pass per step costs.")
    if "variant" in df and df["variant"].nunique() > 1:
        b = df[(df["mode"] == "conditional")]
        if len(b):
            best = b.loc[b["images_per_second"].idxmax()]
            notes.append(f"Highest conditional throughput: {best['variant']} at batch {int(best['batch_size'])}: "
                         f"{best['images_per_second']:.2f} images/s ({best['seconds']:.1f} s for the batch).")
            at64 = b[b["batch_size"] == b["batch_size"].max()].set_index("variant")["seconds"]
            if "fp32" in at64 and len(at64) > 1:
                notes.append(f"Speed-ups at batch {int(b['batch_size'].max())}, conditional, against fp32 eager: "
                             + ", ".join(f"{v} x{at64['fp32'] / sec:.2f}" for v, sec in at64.items() if v != "fp32")
                             + ".")
    return notes


# ----------------------------------------------------------------------------- unconditional_samples

def _uncond_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    rows = [(f"{m} samples", resolve_artifact(p)) for m, p in zip(df["mode"], df.get("samples_png", []))]
    title = "Samples by mode (001 Fig. 24: the mask-guided DDPM without mask; baseline: the unconditional model)"
    fig = rows_figure(rows, out_dir / f"{stem}_samples.png", title)
    return [fig] if fig else []


def _uncond_notes(spec, df) -> list[str]:
    notes = []
    for _, r in df.iterrows():
        model = f"{r['model']}, " if isinstance(r.get("model"), str) else ""
        notes.append(f"{r['mode']}: sharpness (mean |Laplacian|) {float(r['sharpness']):.4f} vs "
                     f"{float(r['sharpness_real']):.4f} on real test images (ratio {float(r['sharpness_ratio']):.2f}); "
                     f"{int(r['nfe_per_batch'])} network passes of {int(r['network_rows_per_pass'])} rows per batch; "
                     f"model {model}trained with mask drop p = {r.get('model_p_uncond')} ({r.get('model_drop_mode')}).")
    sharp = {m: float(df[df["mode"] == m]["sharpness_ratio"].iloc[0]) for m in set(df["mode"])}
    if {"unconditional", "baseline"} <= set(sharp):
        notes.append(f"Mean sharpness, unconditional queries of the mask-guided model / samples of the separately "
                     f"trained unconditional baseline model: {sharp['unconditional'] / sharp['baseline']:.3f} "
                     f"(Sec. 5.2.5's comparison; the same prior noise per image).")
    if {"unconditional", "conditional"} <= set(sharp):
        notes.append(f"Mean sharpness, unconditional / guided queries of the same model: "
                     f"{sharp['unconditional'] / sharp['conditional']:.3f}, a comparison within the one mask-guided "
                     f"model that the paper does not make (Sec. 5.2.5 compares with the separately trained "
                     f"unconditional baseline model).")
    if sharp and min(sharp.values()) > 1:
        notes.append("Every set is *sharper* than real images (ratio > 1): the models leave pixel noise, which "
                     "the Laplacian counts like detail, so the sharpness measure reads noise as much as blur.")
    return notes


FIGURES = {"mask_guided_metrics": _metrics_figures, "inference_timing": _timing_figures,
           "unconditional_samples": _uncond_figures}
NOTES = {"mask_guided_metrics": _metrics_notes, "inference_timing": _timing_notes,
         "unconditional_samples": _uncond_notes}
