"""Report of the mixed-precision benchmark: on/off ratios beside the thesis's, loss curves, failed arms.

Absolute memory and time depend on the device, so the comparison with thesis Tab. 5.1 / 5.2 is
the ratio mixed precision / fp32 on the same device and batch (A100: 29481/39039 = 0.755 and
987/965 = 1.023; RTX 2080 Ti: 7367/7791 = 0.946 and 1206/1494 = 0.807), computed here from the
published cells of the spec.
"""
from __future__ import annotations

import math
from pathlib import Path

from repro.experiments.amp.arm import ARM_LABELS
from repro.plots import pyplot
from repro.results import read_failed_cells
from repro.specs import PROFILES

MEMORY_METRICS = {  # value -> what it is (labelled: a CPU figure is never shown as accelerator memory)
    "nvml_process_used_mb": "NVML: this process's device memory (as nvidia-smi lists it)",
    "nvml_device_used_mb": "NVML: the whole device's used memory (as nvidia-smi shows it)",
    "cuda_max_memory_reserved_mb": "torch.cuda.max_memory_reserved",
    "cuda_max_memory_allocated_mb": "torch.cuda.max_memory_allocated",
    "cpu_training_peak_rss_mb": "CPU figure: peak RSS of the arm's fresh process during training",
    "cpu_rss_increase_mb": "CPU figure: peak RSS during training minus the RSS when training started",
    "cpu_peak_rss_mb": "CPU figure: the arm process's lifetime peak RSS (ru_maxrss, data loading included)",
}
TIME_METRICS = {"seconds_per_epoch": "mean time per epoch after warm-up",
                "seconds_per_step": "mean time per optimizer step after warm-up"}
LOSS_METRICS = {"loss_last_quarter": "mean step loss over the last quarter of the steps"}
# published (off, on) pairs in the spec's paper cells
PUBLISHED_PAIRS = {"memory": ("vram_off_mb", "vram_on_mb"), "time": ("epoch_off_s", "epoch_on_s")}


def published_ratios(spec, focus: str) -> dict[str, float]:
    """GPU -> published on/off ratio for `focus` (memory or time), from the spec's paper cells."""
    off, on = PUBLISHED_PAIRS.get(focus, (None, None))
    return {str(c["gpu"]): float(c[on]) / float(c[off]) for c in spec.paper.cells
            if off in c and on in c and "gpu" in c}


def _focus_metrics(focus: str, df) -> dict[str, str]:
    table = {"memory": MEMORY_METRICS, "time": TIME_METRICS, "loss": LOSS_METRICS}[focus]
    return {k: v for k, v in table.items() if k in df.columns and df[k].notna().any()}


def arm_ratios(df, metric: str) -> dict[str, tuple[float, int]]:
    """Mixed arm -> (mean over repeats of metric(arm) / metric(fp32) at the same repeat, number of pairs)."""
    out: dict[str, tuple[float, int]] = {}
    if "precision" not in df or metric not in df:
        return out
    base = {int(r.get("repeat", 0) or 0): r[metric] for _, r in df[df["precision"] == "fp32"].iterrows()}
    for arm in ("fp16", "bf16"):
        ratios = [r[metric] / base[int(r.get("repeat", 0) or 0)] for _, r in df[df["precision"] == arm].iterrows()
                  if int(r.get("repeat", 0) or 0) in base and base[int(r.get("repeat", 0) or 0)]
                  and not math.isnan(r[metric])]
        if ratios:
            out[arm] = (sum(ratios) / len(ratios), len(ratios))
    return out


def _devices(df) -> str:
    return ", ".join(sorted({str(d) for d in df.get("device_name", []) if isinstance(d, str)})) or "unknown device"


def _failed_records(spec, df) -> list[dict]:
    hashes = set(df["_spec_hash"].dropna()) if "_spec_hash" in df else set()
    return [r for p in PROFILES for r in read_failed_cells(spec.id, p) if r.get("spec_hash") in hashes]


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    plt = pyplot(theme=False)
    focus = spec.fixed["focus"]
    paths = []
    metrics = _focus_metrics(focus, df) if focus != "loss" else {}
    published = published_ratios(spec, focus)
    rows = [(f"{arm} / fp32: {metric}", ratio) for metric in metrics for arm, (ratio, _) in arm_ratios(df, metric).items()]
    rows += [(f"thesis {gpu}: fp16 AMP / fp32", r) for gpu, r in published.items()]
    if rows:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
        colors = ["tab:blue" if not label.startswith("thesis") else "tab:grey" for label, _ in rows]
        ax.barh(range(len(rows)), [r for _, r in rows], color=colors)
        ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
        ax.axvline(1.0, color="black", lw=0.8)
        for i, (_, r) in enumerate(rows):
            ax.text(r, i, f" {r:.3f}", va="center", fontsize=7)
        ax.invert_yaxis()
        what = "memory" if focus == "memory" else "time"
        ax.set_xlabel(f"mixed precision / fp32 ({what}; < 1: mixed precision {'saves memory' if focus == 'memory' else 'is faster'})")
        ax.set_title(f"On/off ratios vs the thesis (Tab. {spec.source.table})\n{_devices(df)}", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stem}_ratios.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    if "loss_curve" in df:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        styles = {"fp32": "tab:blue", "fp16": "tab:red", "bf16": "tab:orange"}
        for _, r in df.sort_values(["precision"]).iterrows():
            xs, ys = r.get("loss_curve_steps"), r.get("loss_curve")
            if isinstance(xs, list) and xs:
                ax.plot(xs, ys, color=styles.get(r["precision"], None), lw=1, alpha=0.85,
                        ls="-" if int(r.get("repeat", 0) or 0) == 0 else "--",
                        label=f"{ARM_LABELS.get(r['precision'], r['precision'])}, repeat {int(r.get('repeat', 0) or 0)}")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("DSM training loss (binned step losses)")
        ax.set_title(f"Loss curves, mixed precision on vs off (cf. thesis Fig. 5.6)\n{_devices(df)}", fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{stem}_loss_curves.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def report_notes(spec, df) -> list[str]:
    focus = spec.fixed["focus"]
    notes = []
    first = df.iloc[0]
    batch_note = first.get("batch_note") if isinstance(first.get("batch_note"), str) else None
    notes.append(f"Device: {_devices(df)}. Every arm trained {int(first.get('epochs', 0))} epoch(s) of "
                 f"{int(first.get('steps_per_epoch', 0))} steps at batch {int(first['batch_size'])} "
                 f"({first.get('batch_source')}{'; ' + batch_note if batch_note else ''}), the same seed, data order "
                 f"and initial weights per repeat; "
                 f"{'a fresh process per arm' if bool(first.get('isolated_process')) else 'all arms in one process'}.")
    flags = first.get("cpu_bf16_flags")
    if isinstance(flags, list):
        notes.append("The CPU's native bf16 instructions: " + (", ".join(flags) if flags else
                     "none (bf16 arithmetic is emulated)") + "; bf16 autocast on the CPU runs oneDNN's kernels.")
    if isinstance(first.get("amp_batch"), dict) and first.get("amp_batch"):
        notes.append("Largest batch that fits with mixed precision: "
                     + ", ".join(f"{k} {v}" for k, v in first["amp_batch"].items()) + ".")
    clip = str(first.get("clip_order"))
    notes.append("Gradient clipping under the GradScaler: " + (
        "after scaler.unscale_ (the true gradients are clipped)." if clip == "unscale_then_clip" else
        "on the *scaled* gradients without unscale_ (the thesis authors' order): the fp16 arm clips "
        "at 1/scale of the threshold, so the two arms are different optimisers."))
    published = published_ratios(spec, focus)
    pub_text = ", ".join(f"{gpu} {r:.3f}" for gpu, r in published.items())
    for metric, label in (_focus_metrics(focus, df).items() if focus != "loss" else []):
        for arm, (ratio, n) in arm_ratios(df, metric).items():
            pct = f"{abs(1 - ratio) * 100:.1f} %"
            if focus == "memory":
                word = f"saves {pct}" if ratio < 1 else f"needs {pct} more"
            else:
                word = f"is {pct} {'faster' if ratio < 1 else 'slower'}"
            notes.append(f"{ARM_LABELS[arm]} / fp32, {label}: {ratio:.3f} (mixed precision {word}"
                         f"{f', mean of {n} repeats' if n > 1 else ''}); thesis fp16 AMP / "
                         f"fp32: {pub_text or 'no published ratio'}.")
    if focus == "memory" and "cpu_peak_rss_mb" in df and df["cpu_peak_rss_mb"].notna().any():
        notes.append("On the CPU the figures are peak resident memory of the process, not accelerator memory; "
                     "autocast keeps fp32 master weights and caches bf16 copies of them, so the saving is "
                     "in activations only.")
    if focus == "loss" or "loss_last_quarter" in df:
        notes += _loss_notes(df)
    for rec in _failed_records(spec, df):
        f = rec["failed"]
        arm = ARM_LABELS.get(f.get("precision"), f.get("precision"))
        if f.get("reason") == "unavailable":
            notes.append(f"{arm}: not run at profile {rec['profile']}: {f.get('message')}.")
        else:
            last = f.get("last_finite_loss")
            notes.append(f"{arm} (cell {rec['key']}, profile {rec['profile']}): **diverged** ({f.get('reason')}) at "
                         f"step {f.get('step')}, loss {f.get('loss')}, last finite loss "
                         f"{'–' if last is None else f'{last:.4g}'}; stopped, its MLflow run marked FAILED and left "
                         f"out of every table and figure above, as the thesis discarded such runs.")
    return notes


def _loss_notes(df) -> list[str]:
    if "loss_last_quarter" not in df:
        return []
    notes = []
    by_arm = {arm: list(g["loss_last_quarter"].dropna()) for arm, g in df.groupby("precision")}
    for arm, vals in sorted(by_arm.items()):
        if vals:
            spread = (max(vals) - min(vals)) if len(vals) > 1 else float("nan")
            notes.append(f"{ARM_LABELS.get(arm, arm)}: mean loss over the last quarter of training "
                         f"{sum(vals) / len(vals):.4g}" + (f" (range over {len(vals)} repeats {spread:.2g})"
                                                            if len(vals) > 1 else "") + ".")
    base = by_arm.get("fp32", [])
    for arm in ("fp16", "bf16"):
        vals = by_arm.get(arm, [])
        if not vals or not base:
            continue
        base_mean = sum(base) / len(base)
        gap = sum(vals) / len(vals) - base_mean
        notes.append(f"{arm} - fp32, mean late-training loss: {gap:+.2g} ({gap / base_mean * 100:+.2g} % of fp32's); "
                     f"thesis Fig. 5.6: mixed precision \"has no notable effect on training loss\".")
    return notes
