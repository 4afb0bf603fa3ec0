"""Baselines of semantic image synthesis against the guided score model (000 thesis Sec. 5.4.5,
Tab. 5.4 mIoU / pixel accuracy, Tab. 5.5 FID): one cell per method, every method judged on the
same label maps by the same evaluator segmenter and Frechet metric as table5_3.

Rows: `spade` and `pix2pixhd` are trained by the suite (model roles of the same names), `ncsnpp`
is the suite's NCSN++ guided by the noise-conditional U-Net at s0 (0.002) and snr (0.1) with
table5_3's sampler, `oracle` is the evaluator on the maps' real images. A method whose released
outputs are given in `fixed.folders` is scored from that folder instead (as `repro evaluate`
does); a method with neither (CRN: the suite has no cascaded refinement network) is "published
only". Every generated image is written as an 8-bit PNG pair under the cell's artifacts
(images/, maps/) and judged as stored, so `repro evaluate` on that folder gives the same numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from repro.errors import UserError
from repro.experiments.semantic.settings import SynthesisFixed
from repro.plots import pyplot

GRID_KEYS = ("method",)
METHODS = ("crn", "pix2pixhd", "spade", "ncsnpp", "oracle")
GAN_ROLES = ("spade", "pix2pixhd")
LABELS = {"crn": "CRN", "pix2pixhd": "pix2pixHD", "spade": "SPADE", "ncsnpp": "NCSN++", "oracle": "Oracle"}


class FolderRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: str
    maps: str


class Fixed(SynthesisFixed):
    n_maps: int = Field(500, ge=2, description="label maps of the spec's split, the same for every method "
                                               "(Tab. 5.4/5.5: all 500 Cityscapes validation maps)")
    n_reference: int = Field(500, ge=2, description="real images of the spec's split for the Frechet distance")
    allow_rank_deficient: bool = Field(False, description="fewer samples than feature dims")
    floor_split: str | None = Field(None, description="split whose n_maps real images give the real-vs-real floor")
    sheet_maps: int = Field(4, ge=1)
    folders: dict[str, FolderRow] = Field(default_factory=dict,
                                          description="method -> folder pair of released outputs to score")


def prepare(ctx):
    from repro.images import save_image_grid
    from repro.experiments.semantic.scoring import triptych_sheet

    f = ctx.spec.fixed
    methods = list(ctx.spec.grid.get("method", []))
    unknown = [m for m in methods + list(f["folders"]) if m not in METHODS]
    if unknown:
        raise UserError(f"spec {ctx.spec.id}: unknown method {unknown[0]!r}; methods: {', '.join(METHODS)}")
    quality = {"n_reference": f["n_reference"], "floor_split": f["floor_split"],
               "allow_rank_deficient": f["allow_rank_deficient"]}
    if "ncsnpp" in methods and "ncsnpp" not in f["folders"]:
        from repro.experiments.semantic.prepare import prepare_semantic

        state = prepare_semantic(ctx, f["n_maps"], quality)   # table5_3's maps, models, scorer, oracle
    else:
        state = _judging_state(ctx, f["n_maps"], quality)
    k = min(f["sheet_maps"], f["n_maps"])
    d = ctx.artifacts_dir("maps")
    triptych_sheet(state.real[:k], state.maps[:k], [], state.colors, d / "maps.png")
    save_image_grid(state.real[:k], d / "real_strip.png", nrow=k, scale=2)
    return state


def _judging_state(ctx, n_maps: int, quality: dict[str, Any]):
    """The maps, evaluator, scorer and Oracle without the score model and guide."""
    from repro.data import dataset_info
    from repro.data.palette import palette
    from repro.experiments.score.evaluation import prepare_scoring
    from repro.experiments.semantic.prepare import SemanticState
    from repro.experiments.semantic.scoring import compliance, load_maps, segment

    ds = ctx.spec.dataset
    info = dataset_info(ds.name)
    real, maps = load_maps(ds, n_maps)
    scoring = prepare_scoring(ctx, {**quality, "n_samples": n_maps})
    trained = ctx.model("evaluator")
    oracle = compliance(segment(trained.net, real), maps, info.num_classes, info.ignore_index)
    colors, _ = palette(ds.name)
    models = {"evaluator": {"name": trained.name, "hash": trained.hash, "sha256": trained.meta.get("sha256")}}
    return SemanticState(None, None, trained.net, real, maps, colors, info.num_classes, info.ignore_index,
                         scoring["scorer"], {"oracle_miou": oracle["miou"], "oracle_pixel_acc": oracle["pixel_acc"],
                                             "oracle_miou_dataset": oracle["miou_dataset"],
                                             "real_floor": scoring["floor"]}, models)


@torch.no_grad()
def generate_with(generator: torch.nn.Module, maps: torch.Tensor, num_classes: int, batch_size: int,
                  device: torch.device) -> torch.Tensor:
    """A GAN generator's images in [0, 1] for label maps [N, H, W] (eval mode: batch-norm running
    statistics, as the releases' test scripts)."""
    from repro.nets.spade import one_hot_map

    generator.eval()
    out = [(generator(one_hot_map(maps[i: i + batch_size].to(device), num_classes)).float().cpu() + 1) / 2
           for i in range(0, maps.shape[0], batch_size)]
    return torch.cat(out).clamp_(0, 1)


def run_cell(ctx, state, cell, run):
    from repro.results import relative_to_results
    from repro.images import save_image_grid
    from repro.commands.evaluate import judge, quantize, read_folder_pairs, write_pairs
    from repro.experiments.semantic.scoring import triptych_sheet
    from repro.specs import cell_key

    f = ctx.spec.fixed
    method = cell["method"]
    metrics = list(ctx.spec.metrics)
    extra: dict[str, Any] = {"method_label": LABELS[method], "n_maps": int(state.maps.shape[0]), **state.oracle,
                             "evaluator": state.models["evaluator"]["name"], "models": state.models}
    key = cell_key(cell)
    maps = state.maps
    if method in f["folders"]:
        row = f["folders"][method]
        res = ctx.spec.dataset.resolution
        pairs = read_folder_pairs(Path(row["images"]), Path(row["maps"]), ctx.spec.dataset.name, state.num_classes,
                                  tuple(res) if res else None)
        images, maps = pairs.images, pairs.maps
        extra.update(source="evaluated folder", folder_images=row["images"], folder_maps=row["maps"],
                     n_maps=len(pairs.names))
    elif method == "oracle":
        images = state.real
        extra.update(source="suite run", judged="the evaluator on the maps' real images")
    elif method == "ncsnpp":
        images, more = _ncsnpp_images(ctx, state, f)
        extra.update(source="suite run", **more)
    elif method in GAN_ROLES and method in ctx.spec.models:
        trained = ctx.model(method)
        images = generate_with(trained.net, maps, state.num_classes, f["batch_size"], ctx.device)
        meta = trained.meta
        extra.update(source="suite run", model=trained.name, model_hash=trained.hash,
                     model_train_seconds=meta.get("train_seconds"), model_steps=meta.get("steps"),
                     model_update=meta.get("update"), model_adversarial=meta.get("adversarial"),
                     model_vgg_loss=meta.get("vgg_loss"), model_betas=meta.get("betas"),
                     model_lr_g=meta.get("lr_g"), model_lr_d=meta.get("lr_d"),
                     model_parameters_generator=meta.get("parameters_generator"),
                     model_modulation=(meta.get("net") or {}).get("modulation"))
    else:
        extra.update(source="published only",
                     reason=("the suite has no CRN (cascaded refinement network); give its released outputs "
                             "in fixed.folders.crn" if method == "crn" else
                             f"no model role {method!r} in this spec and no folder in fixed.folders"))
        return {"values": {}, "extra": extra, "artifacts": []}

    images = quantize(images)
    values, judged = judge(state.evaluator, state.scorer if method != "oracle" else None, images, maps,
                           state.num_classes, state.ignore_index, metrics)
    if method == "oracle":    # Tab. 5.5 has no FID for the real images; the real-vs-real floor is an extra
        judged["metric"] = state.scorer.name if state.scorer is not None else None
    extra.update(judged)
    d = ctx.artifacts_dir(key)
    artifacts = []
    if method != "oracle":
        img_dir, _ = write_pairs(images, maps, d / "folder")
        extra["folder_png"] = relative_to_results(img_dir)
    k = min(f["sheet_maps"], images.shape[0])
    sheet = triptych_sheet(state.real[:k] if method not in f["folders"] else None, maps[:k], [images[:k]],
                           state.colors, d / "sheet.png")
    strip = save_image_grid(images[:k], d / "strip.png", nrow=k, scale=2)
    artifacts += [sheet, strip]
    extra.update(sheet_png=relative_to_results(sheet), strip_png=relative_to_results(strip),
                 maps_png=relative_to_results(ctx.artifacts_dir("maps") / "maps.png"),
                 rank_deficient=f["allow_rank_deficient"])
    return {"values": values, "extra": extra, "artifacts": artifacts}


def _ncsnpp_images(ctx, state, f) -> tuple[torch.Tensor, dict[str, Any]]:
    """The guided score model's images for the maps, table5_3's sampler at fixed.s0 / fixed.snr."""
    from repro.experiments.semantic.scoring import compliance
    from repro.experiments.semantic.settings import synthesis_setting
    from repro.experiments.semantic.synthesis import synthesize

    setting = synthesis_setting(f, {})
    n = state.maps.shape[0]
    out = synthesize(state.score_model, state.guide, state.maps, setting, list(range(n)),
                     (ctx.spec.seed, "semantic"), f["batch_size"], ctx.device)
    guide_view = compliance(state.guide.clean_labels(out.images), state.maps, state.num_classes,
                            state.ignore_index)
    more = {**setting.record(), "s0_scale": f["s0_scale"], "nfe_per_sample": out.nfe,
            "seconds_sampling": out.seconds, "ms_per_image": 1000 * out.seconds / n,
            "guide_miou": guide_view["miou"], "guide_pixel_acc": guide_view["pixel_acc"]}
    return out.images, more


# ----------------------------------------------------------------------------- report

def _quality_name(df) -> str | None:
    for m in ("fid", "fd_evalnet"):
        if m in df and df[m].notna().any():
            return m
    return None


def verdicts(df) -> list[dict[str, Any]]:
    """The thesis's three verdicts (Sec. 5.4.5) on the rows the suite has numbers for (Oracle
    excluded): SPADE best on all three; the score model second in FID and third in accuracy; its
    mIoU far below the GANs' (here: at least 0.1 below the weaker GAN, as 0.31 vs 0.52 there)."""
    rows = df[(df["method"] != "oracle")]
    out = []
    q = _quality_name(df)
    have = lambda m: m in rows and rows[m].notna()  # noqa: E731

    def rank(metric: str, method: str, higher_better: bool):
        r = rows[have(metric)] if metric in rows else rows.iloc[0:0]
        if method not in set(r["method"]):
            return None, len(r)
        order = r.sort_values(metric, ascending=not higher_better)["method"].tolist()
        return order.index(method) + 1, len(r)

    def add(claim, held, detail):
        out.append({"claim": claim, "verdict": "inconclusive" if held is None else ("held" if held else "did not hold"),
                    "detail": detail})

    for metric, higher, label in (("miou", True, "mIoU"), ("pixel_acc", True, "pixel accuracy"),
                                  (q, False, q or "FID")):
        if metric is None:
            continue
        r, n = rank(metric, "spade", higher)
        add(f"SPADE best in {label}", None if r is None or n < 2 else r == 1,
            f"SPADE ranks {r} of {n} rows with a {label}" if r else "no SPADE number")
    if q:
        r, n = rank(q, "ncsnpp", False)
        add(f"NCSN++ second in {q}", None if r is None or n < 2 else r == 2,
            f"NCSN++ ranks {r} of {n}" if r else "no NCSN++ number")
    r, n = rank("pixel_acc", "ncsnpp", True)
    add("NCSN++ third in pixel accuracy", None if r is None or n < 3 else r == 3,
        f"NCSN++ ranks {r} of {n}" + (" (fewer than 3 rows: not decidable)" if r and n < 3 else "") if r
        else "no NCSN++ number")
    gans = rows[rows["method"].isin(["spade", "pix2pixhd", "crn"]) & have("miou")] if "miou" in rows else rows.iloc[0:0]
    nc = rows[(rows["method"] == "ncsnpp") & have("miou")] if "miou" in rows else rows.iloc[0:0]
    if len(gans) and len(nc):
        weakest = float(gans["miou"].min())
        mine = float(nc["miou"].iloc[0])
        add("NCSN++ mIoU far below the GANs", mine <= weakest - 0.1,
            f"NCSN++ {mine:.3f} vs the weaker GAN's {weakest:.3f} (published 0.309 vs 0.517)")
    else:
        add("NCSN++ mIoU far below the GANs", None, "needs the NCSN++ row and a GAN row")
    return out


def report_notes(spec, df) -> list[str]:
    notes = []
    by = {r["method"]: r for _, r in df.iterrows()}
    for m in spec.grid.get("method", METHODS):
        r = by.get(m)
        src = r.get("source") if r is not None else "not run"
        what = {"suite run": "a suite run", "evaluated folder": "an evaluated folder of released outputs",
                "published only": "published only"}.get(src, src)
        line = f"{LABELS[m]}: {what}"
        if r is not None and src == "suite run" and m in GAN_ROLES:
            line += (f" (model {r.get('model')}, {int(r.get('model_steps') or 0)} steps, {r.get('model_update')} "
                     f"updates, {r.get('model_adversarial')} loss, VGG loss {r.get('model_vgg_loss')}, "
                     f"trained in {float(r.get('model_train_seconds') or 0):.0f} s)")
        if r is not None and src == "suite run" and m == "ncsnpp":
            scale = float(r.get("s0_scale") or 1.0)
            s0 = float(r.get("schedule_s0") or 0.0)
            s0_text = f"s0 = {s0 / scale:g}" + (f" x s0_scale {scale:g} = {s0:g}" if scale != 1 else "")
            line += (f" ({s0_text}, snr {r.get('snr')}, {int(r.get('steps') or 0)} PC steps, "
                     f"{float(r.get('ms_per_image') or 0):.0f} ms per image)")
        if r is not None and m == "oracle" and src == "suite run":
            line += " (the evaluator on the maps' real images; no FID, as in Tab. 5.5)"
        if r is not None and src == "published only" and r.get("reason"):
            line += f" — {r.get('reason')}"
        notes.append(line + ".")
    for v in verdicts(df):
        notes.append(f"Thesis verdict '{v['claim']}': **{v['verdict']}** on the suite's numbers ({v['detail']}).")
    if "real_floor" in df and df["real_floor"].notna().any():
        notes.append(f"Real-vs-real floor of the Frechet distance (real images of the floor split vs the "
                     f"reference): {float(df['real_floor'].dropna().iloc[0]):.4g}.")
    notes.append("The second reference, Park et al. 2019 (SPADE) Tab. 1 on Cityscapes, measured its own "
                 "protocol (DRN-D-105 on SPADE's outputs at 512x256, FID on the 500 val images): CRN 52.4 mIoU / "
                 "77.1 % / FID 104.7, SPADE 62.3 / 81.9 % / 71.8 (park2019_* columns of the published table); "
                 "its pix2pixHD numbers are not carried (not verified here).")
    return notes


def report_figures(spec, df, out_dir: Path, stem: str) -> list[Path]:
    from repro.results import copy_first_artifact, resolve_artifact
    from repro.images import rows_figure

    plt = pyplot(theme=False)
    q = _quality_name(df)
    panels = [m for m in ("miou", "pixel_acc", q) if m and m in df and df[m].notna().any()]
    figs = []
    if panels:
        pub = {c["method"]: c for c in spec.paper.cells}
        order = [m for m in spec.grid.get("method", METHODS) if m in set(df["method"])]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.2), squeeze=False)
        for ax, m in zip(axes[0], panels):
            vals = [float(df[df["method"] == k][m].iloc[0]) if m in df and df[df["method"] == k][m].notna().any()
                    else float("nan") for k in order]
            xs = range(len(order))
            ax.bar([x - 0.2 for x in xs], vals, width=0.4, label="reproduced", color="tab:blue")
            pub_key = "fid" if m == q else m
            pv = [float(pub.get(k, {}).get(pub_key, float("nan")) or float("nan")) for k in order]
            target = ax if pub_key == m else ax.twinx()
            target.bar([x + 0.2 for x in xs], pv, width=0.4, label=f"published {pub_key} (thesis)",
                       color="tab:orange", alpha=0.7)
            ax.set_xticks(list(xs))
            ax.set_xticklabels([LABELS[k] for k in order], fontsize=8, rotation=20)
            ax.set_title({"miou": "mean IoU (Tab. 5.4)", "pixel_acc": "pixel accuracy (Tab. 5.4)"}.get(
                m, f"{m} (Tab. 5.5: fid)"), fontsize=9)
            ax.legend(fontsize=7, loc="upper left")
            if target is not ax:
                target.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        bars = out_dir / f"{stem}_bars.png"
        fig.savefig(bars, dpi=120)
        plt.close(fig)
        figs.append(bars)
    rows = []
    if "maps_png" in df and df["maps_png"].notna().any():
        maps_dir = resolve_artifact(str(df["maps_png"].dropna().iloc[0]))
        rows.append(("real images", maps_dir.parent / "real_strip.png" if maps_dir else None))
    for m in spec.grid.get("method", METHODS):
        sub = df[df["method"] == m]
        if len(sub) and "strip_png" in sub and sub["strip_png"].notna().any() and m != "oracle":
            rows.append((LABELS[m], resolve_artifact(str(sub["strip_png"].iloc[0]))))
    if rows:
        grid = rows_figure(rows, out_dir / f"{stem}_samples.png",
                           "The same maps for every method (cf. thesis Fig. 5.12)")
        if grid:
            figs.append(grid)
    maps = copy_first_artifact(df, "maps_png", out_dir / f"{stem}_maps.png")
    return figs + ([maps] if maps else [])
