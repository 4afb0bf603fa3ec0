"""The 001 paper's unconditional baseline model (ddpm_uncond_bdd) and bdd_uncond's comparison with it
(Sec. 5.2.5: unconditional queries of the mask-guided model "somewhat more blurr[y]" than the baseline's
samples): the config is mask_ddpm_bdd's with every mask dropped, its training never uses the mask, and a
run at the test profile stores a baseline cell, paired with the others by prior noise, that the claim
is judged on."""
from __future__ import annotations

import pytest
import torch

from repro.specs import load_spec, model_base_chain, resolve_model


def test_baseline_config_is_the_mask_guided_one_with_every_mask_dropped():
    from repro.trainers.mask_ddpm import never_conditional, parse, validate

    assert model_base_chain("ddpm_uncond_bdd") == ["ddpm_uncond_bdd", "mask_ddpm_bdd"]
    for profile in ("test", "smoke", "paper"):
        base, guided = resolve_model("ddpm_uncond_bdd", profile), resolve_model("mask_ddpm_bdd", profile)
        validate(base)
        net, ts = parse(base)
        net_g, ts_g = parse(guided)
        assert net == net_g and base.config.dataset == guided.config.dataset and base.config.seed == guided.config.seed
        assert ts.p_uncond == 1.0 and ts_g.p_uncond == 0.1 and never_conditional(ts.p_uncond)
        assert ts.model_dump(exclude={"p_uncond"}) == ts_g.model_dump(exclude={"p_uncond"}), profile
    assert load_spec("bdd_uncond").models["baseline"] == "ddpm_uncond_bdd"


@pytest.mark.parametrize("mode", ["per_sample", "per_batch"])
def test_p_uncond_one_drops_every_mask(mode):
    from repro.guidance.classifier_free import drop_masks

    g = torch.Generator().manual_seed(0)
    assert all(bool(drop_masks(64, 1.0, mode, g, "cpu").all()) for _ in range(50))


def test_baseline_loss_never_reaches_the_mask_branch():
    from repro.data import load_dataset, stack
    from repro.nets.bdd_unet import MaskGuidedUNet
    from repro.trainers.mask_ddpm import eval_loss, make_schedule, mask_loss

    torch.manual_seed(0)
    net = MaskGuidedUNet(base=4, emb_dim=8)
    sched = make_schedule({"schedule": "paper_cosine_beta", "T": 6, "beta_start": 1e-4, "beta_end": 0.02})
    images, labels = stack(load_dataset("bdd_scenes", split="train", resolution=(16, 16), n=4, seed=0), limit=4)
    g = torch.Generator().manual_seed(1)
    mask_loss(net, sched, {"image": images, "label": labels}, g, 19, 1.0, "per_sample").backward()
    assert all(float(p.grad.abs().max()) == 0.0 for p in net.mask_in.parameters())
    assert float(net.inc.body[0].weight.grad.abs().max()) > 0
    # the held-out loss of a model trained without masks does not depend on the (untrained) mask branch
    before = eval_loss(net, sched, images, labels, 19, seed=2, conditional=False)
    with torch.no_grad():
        for p in net.mask_in.parameters():
            p.add_(1.0)
    assert eval_loss(net, sched, images, labels, 19, seed=2, conditional=False) == before
    assert eval_loss(net, sched, images, labels, 19, seed=2) != before          # the conditional one does


def test_bdd_uncond_at_test_profile_judges_the_baseline_comparison(workdir, monkeypatch):
    from repro import results
    from repro.claims import judge
    from repro.engine.run import run_spec
    from repro.experiments.bdd import sampling
    from repro.reporting.render import render_report

    monkeypatch.setenv("REPRO_NO_MLFLOW", "1")
    priors = []
    real_sample = sampling.ddpm_sample

    def recording(eps_fn, schedule, x, **kw):
        priors.append(x.clone())
        return real_sample(eps_fn, schedule, x, **kw)

    monkeypatch.setattr(sampling, "ddpm_sample", recording)
    summary = run_spec("bdd_uncond", "test", progress=False)
    assert summary.ran and not summary.failed
    cells = {r["cell"]["mode"]: r for r in results.read_cells("bdd_uncond", "test")}
    assert set(cells) == {"unconditional", "baseline", "conditional"}
    base = cells["baseline"]["extra"]
    assert base["model"] == "ddpm_uncond_bdd" and base["model_p_uncond"] == 1.0
    assert cells["unconditional"]["extra"]["model"] == "mask_ddpm_bdd"
    assert base["network_rows_per_pass"] == 4 and base["resample_unit"] == "images" and base["resample_n"] == 4
    assert len(base["sharpness_per_sample"]) == 4
    assert sum(base["sharpness_per_sample"]) / 4 == pytest.approx(base["sharpness"], rel=1e-4)
    # image i starts from the same prior noise in every mode
    assert len(priors) == 3 and all(torch.equal(p, priors[0]) for p in priors)

    spec = load_spec("bdd_uncond")
    claim = next(c for c in spec.claims if c.id == "unconditional_blurrier_than_baseline")
    v = judge(claim, {"bdd_uncond": list(cells.values())}, "bdd_uncond")
    assert v.verdict in ("held", "did not hold", "inconclusive") and v.n_units == 4, v
    text = render_report("bdd_uncond").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `unconditional_blurrier_than_baseline`"))
    assert "not judged" not in row and f"**{v.verdict}**" in row
