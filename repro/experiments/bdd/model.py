"""The trained mask-guided DDPM of a spec (role `ddpm`), and its size as `repro show` prints it."""
from __future__ import annotations

from types import SimpleNamespace

from repro.data import dataset_info
from repro.experiments.bdd.scoring import feature_module
from repro.experiments.bdd.settings import SamplingFixed
from repro.experiments.label_maps import load_maps
from repro.guidance.classifier_free import Guidance
from repro.nets.bdd_unet import PAPER_PARAMETERS, paper_parameter_count
from repro.specs import resolve_model
from repro.trainers.mask_ddpm import mask_ddpm_for, parse


def load_ddpm(ctx):
    return mask_ddpm_for(ctx.model("ddpm"))


def guidance_for(fixed: SamplingFixed, cell: dict) -> Guidance:
    """The cell's guidance weight (grid key `guidance`, else fixed.guidance) in the spec's convention."""
    return Guidance(float(cell.get("guidance", fixed.guidance)), fixed.guidance_convention)


def describe(resolved) -> list[str]:
    """Lines for `repro show`: the DDPM's parameter count at this profile (built on the meta device)."""
    if "ddpm" in resolved.spec.models:
        model = resolved.model("ddpm")
    elif isinstance(resolved.spec.fixed.get("model"), str):   # bdd_table2 names the config it times
        model = resolve_model(resolved.spec.fixed["model"], resolved.profile)
    else:
        return []
    net_cfg, ts = parse(model)
    info = dataset_info(model.config.dataset.name)
    n = paper_parameter_count(info.channels, info.num_classes, net_cfg.base, net_cfg.emb_dim)
    same = " (the paper's 88,842,371, Sec. 4.2)" if n == PAPER_PARAMETERS else ""
    return [f"\n# model {model.id} at profile {resolved.profile}",
            f"parameters: {n:,}{same}; base width {net_cfg.base}, step embedding {net_cfg.emb_dim}, "
            f"{info.num_classes} mask classes, T = {net_cfg.T}, schedule {net_cfg.schedule}",
            f"training: AdamW lr {ts.lr}, batch {ts.batch_size}, {ts.epochs} epochs, EMA {ts.ema_decay}, "
            f"mask drop p = {ts.p_uncond} {ts.drop_mode}"]


def prepare_sampling_state(ctx, n: int, fid_weights: str | None, *, need_evaluator: bool = True):
    """What every BDD sampling runner loads: n test maps with their real images, the DDPM, the
    evaluator segmenter (when the spec names one) and the feature module of the Frechet/KID metrics."""
    st = SimpleNamespace()
    st.real, st.masks = load_maps(ctx.spec.dataset, n)
    st.model = load_ddpm(ctx)
    has = need_evaluator or "evaluator" in ctx.spec.models
    st.evaluator = ctx.model("evaluator").net.to(ctx.device).eval() if has else None
    st.evaluator_name = ctx.spec.models.get("evaluator")
    st.features, st.feature_names = feature_module(ctx, st.evaluator, st.real[:1], fid_weights)
    return st
