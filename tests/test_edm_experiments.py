"""EDM / discriminator-guidance / epsilon-scaling experiments (002 thesis Ch. 11-12) end to end at `test`.

One module-scoped run trains the tiny EDM, evaluator and discriminator once and runs the five
specs (fig12_1, fig12_3, fig12_4, table12_1, fig11_exposure); the tests check cells, the
recorded settings, the reports and the models' artifacts.
"""
from __future__ import annotations

import math
import pickle
import re

import pytest
import torch

from repro import results
from repro.errors import UserError
from repro.experiments.dg.dg_epsilon_grid import Fixed
from repro.experiments.dg.settings import derive_method, resolve_cell

SPECS = ("fig12_1", "fig12_3", "fig12_4", "table12_1", "fig11_exposure")
# One worker should build the shared models (with `pytest -n 2 --dist loadgroup`).
pytestmark = pytest.mark.xdist_group("edm_experiments")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from repro.engine.run import run_spec
    from repro.reporting.render import report

    root = tmp_path_factory.mktemp("edm_experiments")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    for var, sub in (("REPRO_ARTIFACTS", "artifacts"), ("REPRO_RESULTS", "results"), ("REPRO_REPORTS", "reports")):
        mp.setenv(var, str(root / sub))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summaries = {s: run_spec(s, "test", device="cpu", progress=False) for s in SPECS}
        paths = report(list(SPECS))
    finally:
        torch.set_num_threads(threads)
    yield {"root": root, "summaries": summaries, "reports": {p.stem: p for p in paths}}
    mp.undo()


def cells(spec_id: str) -> list[dict]:
    return results.read_cells(spec_id, "test")


def by(spec_id: str, **grid) -> dict:
    found = [c for c in cells(spec_id) if all(c["cell"].get(k) == v for k, v in grid.items())]
    assert len(found) == 1, (spec_id, grid, [c["cell"] for c in cells(spec_id)])
    return found[0]


# ---------------------------------------------------------------- settings of a cell
FIXED = Fixed.model_validate({  # resolve_cell reads the runner's validated Fixed
    "solver": "heun", "steps": 18, "w_dg": 0.0, "w_dg_2nd": 0.0, "eps_scale": 1.0, "eps_k": 0.0, "placement": "sedm",
    "methods": {"edm_gpp": {"w_dg": 2.0}, "sedm_gpp": {"w_dg": 1.67, "eps_scale": {18: 1.0004, 9: 1.01}}}})


def test_cell_settings_follow_fixed_then_method_then_cell():
    s = resolve_cell(FIXED, {"method": "sedm_gpp"})
    assert (s.w_dg, s.eps_scale, s.nfe, s.method) == (1.67, 1.0004, 35, "sedm_gpp")
    s = resolve_cell(FIXED, {"method": "sedm_gpp", "steps": 9, "solver": "euler", "w_dg": 0.5})
    assert (s.w_dg, s.eps_scale, s.nfe) == (0.5, 1.01, 9)
    s = resolve_cell(FIXED, {"method": "edm"})
    assert (s.w_dg, s.eps_scale, s.guided, s.scaled) == (0.0, 1.0, False, False)
    assert resolve_cell(FIXED, {"w_dg": 1.0, "eps_scale": 1.001}).method == "sedm_gpp"
    assert derive_method(0, 0, 1.0, 0) == "edm" and derive_method(1, 0, 1.0, 0) == "edm_gpp"
    with pytest.raises(UserError, match="edm_gpp"):
        resolve_cell(FIXED, {"method": "edm_gpp", "eps_scale": 1.01})
    with pytest.raises(UserError, match="steps=5"):
        resolve_cell(FIXED, {"method": "sedm_gpp", "steps": 5})
    with pytest.raises(UserError, match="unknown method"):
        resolve_cell(FIXED, {"method": "ddpm"})
    from pydantic import ValidationError

    from repro.experiments.dg.dg_epsilon_grid import Fixed
    with pytest.raises(ValidationError, match="edm has no guidance"):
        Fixed.model_validate({"methods": {"edm": {"w_dg": 1.0}}})
    with pytest.raises(ValidationError, match="unknown setting"):
        Fixed.model_validate({"methods": {"sedm_gpp": {"b": 1.01}}})


# ---------------------------------------------------------------- models
def test_models_are_stored_with_their_epochs(shared):
    from repro.trainers.ensure import ensure_model
    from repro.train import load_checkpoint

    edm = ensure_model("edm_digits", "test")
    assert edm.meta["image_range"] == [-1, 1] and edm.meta["steps"] >= 1 and (edm.path / "preview.png").exists()
    disc = ensure_model("discriminator_digits", "test")
    assert disc.meta["epoch"] == 2 and disc.meta["epochs"] == 2 and len(disc.meta["history"]) == 2
    assert disc.meta["n_real"] == disc.meta["n_generated"] == 16 and disc.meta["generator_hash"] == edm.hash
    for name in disc.meta["epoch_files"]:
        state = load_checkpoint(disc.path / name)
        assert state and all(k.startswith(("head.", "encoder.")) for k in state)
    # model.pt is the selected (last) epoch
    last = load_checkpoint(disc.path / "epoch_002.pt")
    assert all(torch.equal(disc.net.state_dict()[k], v) for k, v in last.items())
    first = load_checkpoint(disc.path / "epoch_001.pt")
    assert any(not torch.equal(first[k], last[k]) for k in last)


def test_discriminator_trains_on_the_suites_loop_and_resumes_bit_for_bit(shared, tmp_path):
    """The discriminator kind trains through repro/train/loop.py: a run stopped after one epoch and
    continued to two ends with the same weights, bit for bit, as one that trained two epochs straight
    (and its loop checkpoint is the loop's format, not a second loop's)."""
    from repro.specs import resolve_model
    from repro.train import load_checkpoint
    from repro.trainers import discriminator

    cpu = torch.device("cpu")

    def train(epochs, out):   # initial weights follow the seed, as repro.models seeds them
        torch.manual_seed(0)
        return discriminator.train_model(resolve_model("discriminator_digits", "test", {"train.epochs": epochs}),
                                         tmp_path / out, cpu, None, False)

    net_a, meta_a = train(2, "a")
    train(1, "b")
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1   # the loop's own checkpoint
    net_b, meta_b = train(2, "b")
    sa, sb = net_a.state_dict(), net_b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["epoch"] for h in meta_b["history"]] == [1, 2]
    assert [h["train_bce"] for h in meta_a["history"]] == [h["train_bce"] for h in meta_b["history"]]
    # a balanced BCE of an untrained discriminator starts near log 2
    assert math.isclose(meta_a["history"][0]["train_bce"], math.log(2), rel_tol=0.5)


def test_pretrained_edm_pickle_and_discriminator_state_dict_load_instead_of_training(shared, tmp_path, monkeypatch):
    from repro.trainers.ensure import ensure_model

    monkeypatch.setenv("REPRO_TRUST_PICKLE", "1")   # the pickle is this test's own

    edm = ensure_model("edm_digits", "test")
    pkl = tmp_path / "edm.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"ema": edm.net}, f)
    loaded = ensure_model("edm_digits", "test", overrides={"train.pretrained": str(pkl)})
    x, s = torch.randn(2, 1, 16, 16), torch.tensor([0.5, 3.0])
    assert loaded.meta["pretrained"] == str(pkl) and torch.equal(loaded.net(x, s), edm.net(x, s))
    with pytest.raises(UserError, match="does not exist"):
        ensure_model("edm_digits", "test", overrides={"train.pretrained": str(tmp_path / "missing.pkl")})

    disc = ensure_model("discriminator_digits", "test")
    path = tmp_path / "disc.pt"
    torch.save(disc.net.state_dict(), path)
    got = ensure_model("discriminator_digits", "test", overrides={"train.pretrained": str(path)})
    assert got.meta["epoch"] == "pretrained"
    assert all(torch.equal(a, b) for a, b in zip(got.net.state_dict().values(), disc.net.state_dict().values()))
    with pytest.raises(UserError, match="not an edm"):
        ensure_model("discriminator_digits", "test", overrides={"train.generator": "evaluator_digits"})


ADM = {"net.encoder": "adm", "net.adm_width": 32, "net.adm_depth": 1, "net.adm_head_channels": 32,
       "net.train_encoder": False, "net.head": "adm", "net.head_channels": 32, "net.head_depth": 1}


def test_kim_et_al_discriminator_frozen_adm_classifier_and_dg_checkpoints(shared, tmp_path):
    """Kim et al.'s architecture: a frozen ADM classifier (loaded from its state dict file) and an
    ADM-encoder head that alone trains; DG's discriminator_N.pt (the head's state dict) loads."""
    from repro.guidance.discriminator import discriminator_correction
    from repro.trainers.ensure import ensure_model
    from repro.nets.adm import adm_classifier
    from repro.train import load_checkpoint

    torch.manual_seed(3)
    clf = adm_classifier(16, 1, width=32, depth=1, num_head_channels=32)
    clf_path = tmp_path / "32x32_classifier.pt"
    torch.save(clf.state_dict(), clf_path)
    over = {**ADM, "net.adm_classifier": str(clf_path)}
    m = ensure_model("discriminator_digits", "test", overrides=over)
    assert (m.meta["encoder"], m.meta["head"], m.meta["encoder_trained"]) == ("adm", "adm", False)
    got = m.net.encoder.classifier.state_dict()
    assert all(torch.equal(got[k], v) for k, v in clf.state_dict().items())   # loaded, then frozen
    head_params = sum(p.numel() for p in m.net.head.parameters())
    assert m.meta["trainable_parameters"] == head_params
    for name in m.meta["epoch_files"]:
        assert all(k.startswith("head.") for k in load_checkpoint(m.path / name))
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    g = discriminator_correction(m.net, x, torch.tensor([0.5, 2.0]))
    assert g.dtype == x.dtype and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0

    # DG's train.py saves discriminator.state_dict() (the head alone, no prefix); DDP's 'module.' too.
    dg = tmp_path / "discriminator_2.pt"
    torch.save({f"module.{k}": v for k, v in m.net.head.head.state_dict().items()}, dg)
    loaded = ensure_model("discriminator_digits", "test", overrides={**over, "train.pretrained": str(dg)})
    assert loaded.meta["epoch"] == "pretrained"
    x32 = x.float()
    tau = torch.tensor([0.2, 0.7])
    assert torch.equal(loaded.net(x32, tau), m.net(x32, tau))
    wrong = tmp_path / "other.pt"
    torch.save(adm_classifier(16, 1, width=32, depth=1, num_head_channels=32).state_dict(), wrong)
    with pytest.raises(UserError, match="does not match"):
        ensure_model("discriminator_digits", "test", overrides={**over, "train.pretrained": str(wrong)})
    with pytest.raises(UserError, match="needs net.adm_classifier"):
        ensure_model("discriminator_digits", "test", overrides=ADM)
    with pytest.raises(UserError, match="adm_classifier .* does not exist"):
        ensure_model("discriminator_digits", "test", overrides={**ADM, "net.adm_classifier": str(tmp_path / "no.pt")})
    with pytest.raises(UserError, match="head_channels 48"):
        ensure_model("discriminator_digits", "test", overrides={**over, "net.head_channels": 48})


def test_discriminator_trains_on_the_generator_the_run_uses(shared):
    from repro.trainers.ensure import ensure_model

    gen = ensure_model("edm_digits", "test", overrides={"train.epochs": 2})
    disc = ensure_model("discriminator_digits", "test", inject={"train": {"generator_overrides": {"train.epochs": 2}}})
    assert disc.meta["generator_hash"] == gen.hash != ensure_model("edm_digits", "test").hash
    assert disc.meta["generator_overrides"] == {"train.epochs": 2}


# ---------------------------------------------------------------- the grids
def test_fig12_1_euler_grid(shared):
    got = cells("fig12_1")
    assert len(got) == 8 and shared["summaries"]["fig12_1"].total == 8
    for c in got:
        v, e = c["values"], c["extra"]
        assert math.isfinite(v["fd_evalnet"]) and v["fd_evalnet"] >= 0
        assert v["nfe"] == c["cell"]["steps"] and e["solver"] == "euler"     # Euler: NFE = N
        assert e["eps_scale"] == (1.05 if c["cell"]["method"] == "sedm_gpp" else 1.0)
        guided = c["cell"]["w_dg"] > 0
        assert (e["discriminator_epoch"] == 2) if guided else (e["discriminator_epoch"] is None)
        assert (e["guided_evals_per_image"] > 0) == guided
        assert (shared["root"] / "results" / "fig12_1" / "test" / "artifacts" / c["key"] / "samples.png").exists()
    # w = 0, b = 1 (EDM-G++ column at w = 0) differs from EDM with b = 1.05 (the SEDM-G++ column at w = 0)
    a = by("fig12_1", steps=2, method="edm_gpp", w_dg=0.0)["values"]["fd_evalnet"]
    b = by("fig12_1", steps=2, method="sedm_gpp", w_dg=0.0)["values"]["fd_evalnet"]
    assert a != b
    text = shared["reports"]["fig12_1"].read_text()
    assert "fig12_1_test_curves.png" in text and "17.08" in text and "not comparable" in text
    assert (shared["reports"]["fig12_1"].parent / "fig12_1_test_curves.png").stat().st_size > 1000


def test_w0_b1_cell_equals_plain_edm_cell(shared):
    """Same latents in every spec: the grid's w = 0, b = 1 cell is Tab. 12.1's EDM row, bit for bit."""
    plain = by("table12_1", method="edm")
    grid = by("fig12_3", w_dg=0.0, eps_scale=1.0)
    assert plain["extra"]["effective_method"] == grid["extra"]["effective_method"] == "edm"
    # fig12_3 at test samples two runs per cell; its run 0 draws the latents of every one-run cell
    assert grid["extra"]["n_runs"] == 2 and plain["extra"]["n_runs"] == 1
    assert grid["extra"]["fd_evalnet_runs"][0] == plain["values"]["fd_evalnet"]
    assert grid["values"]["nfe"] == plain["values"]["nfe"] == 3      # Heun, 2 steps: 2N - 1
    scaled = by("fig12_3", w_dg=0.0, eps_scale=1.05)
    assert scaled["extra"]["fd_evalnet_runs"][0] != plain["values"]["fd_evalnet"]


def test_repeated_runs_give_mean_and_standard_error(shared):
    """n_runs: each run draws its own latents; the value is the runs' mean, the s.e. their spread."""
    for c in cells("fig12_3"):
        runs = c["extra"]["fd_evalnet_runs"]
        assert len(runs) == 2 and runs[0] != runs[1]
        assert math.isclose(c["values"]["fd_evalnet"], (runs[0] + runs[1]) / 2, rel_tol=1e-12)
        assert math.isclose(c["values"]["fd_evalnet_se"], abs(runs[0] - runs[1]) / 2, rel_tol=1e-9)  # s/sqrt(2)
    text = shared["reports"]["fig12_3"].read_text()
    assert "fd_evalnet s.e." in text and "paired resamples of the samples" in text
    one_run = shared["reports"]["table12_1"].read_text()
    assert "fd_evalnet s.e." not in one_run


def test_cells_store_frechet_replicates_for_the_claims_engine(shared):
    """Issue 26: every cell stores fd_evalnet on the shared paired resamples of its samples (replicate j on
    index set j of resample_indices(n), averaged over the runs like the value); one run or several."""
    from repro.metrics.spread import RESAMPLES

    for spec_id in ("fig12_1", "fig12_3", "fig12_4", "table12_1"):
        for c in cells(spec_id):
            e = c["extra"]
            assert e["resample_unit"] == "samples" and e["resample_n"] == e["n_samples"] == 12
            boot = e["fd_evalnet_boot"]
            assert len(boot) == RESAMPLES and all(math.isfinite(b) and b >= -1e-9 for b in boot)
            assert len(set(boot)) > 1                      # the resamples differ
    # the same latents in every cell of a spec: replicate j pairs the same samples
    a = by("table12_1", method="edm_gpp")["extra"]["fd_evalnet_boot"]
    b = by("table12_1", method="sedm_gpp")["extra"]["fd_evalnet_boot"]
    assert a != b


def test_fig12_3_heatmap_report(shared):
    got = cells("fig12_3")
    assert sorted((c["cell"]["w_dg"], c["cell"]["eps_scale"]) for c in got) == [
        (0.0, 1.0), (0.0, 1.05), (1.0, 1.0), (1.0, 1.05)]
    assert all(c["extra"]["w_dg_2nd"] == 0.0 and c["extra"]["placement"] == "sedm" for c in got)
    report = shared["reports"]["fig12_3"]
    text = report.read_text()
    png = report.parent / "fig12_3_test_heatmap.png"
    assert "fig12_3_test_heatmap.png" in text and png.stat().st_size > 5000
    assert "Best cell: w_DG_1st" in text and "1.67 and 2" in text
    assert re.search(r"\|\s*1\.0004\s*\|", text)   # the published best b, not rounded to '1'
    assert "Features of fd_evalnet: evaluator" in text and "on float images" in text


def test_report_tables_keep_grid_values_exact():
    """Epsilon scales like 1.0004 are settings: printed as given, never rounded to '1'."""
    from repro.reporting.render import _fmt_setting, _markdown

    table = _markdown([{"eps_scale": _fmt_setting(1.0004), "fid": "2.5"},
                       {"eps_scale": _fmt_setting(1.000004), "fid": "–"}])
    assert "1.0004 " in table and "1.000004 " in table and "| 1 " not in table


def test_fig12_4_and_table12_1(shared):
    assert {(c["cell"]["w_dg"], c["cell"]["eps_scale"]) for c in cells("fig12_4")} == {(1.0, 1.0), (1.0, 1.05)}
    assert "1.73" in shared["reports"]["fig12_4"].read_text()
    rows = {c["cell"]["method"]: c["extra"] for c in cells("table12_1")}
    assert (rows["edm"]["w_dg"], rows["edm"]["eps_scale"]) == (0.0, 1.0)
    assert (rows["edm_gpp"]["w_dg"], rows["edm_gpp"]["eps_scale"]) == (1.0, 1.0)
    assert (rows["sedm_gpp"]["w_dg"], rows["sedm_gpp"]["eps_scale"]) == (1.0, 1.05)
    text = shared["reports"]["table12_1"].read_text()
    assert "VDM (Kingma et al., 2021)" in text and "table12_1_test_bars.png" in text and "Reproduced rows" in text


def test_fig11_exposure_curves(shared):
    got = {(c["cell"]["solver"], c["cell"]["method"]): c for c in cells("fig11_exposure")}
    assert set(got) == {("euler", "edm"), ("euler", "edm_gpp"), ("heun", "edm"), ("heun", "edm_gpp")}
    for c in got.values():
        e = c["extra"]
        nfe = 3                                             # Euler: 3 steps; Heun: 2 steps = 2N - 1
        assert len(e["sampling_norm"]) == len(e["training_norm"]) == len(e["sigmas"]) == nfe == c["values"]["nfe"]
        assert all(x > 0 for x in e["sampling_norm"] + e["training_norm"])
        assert math.isfinite(c["values"]["eps_norm_excess_pct"])
        assert e["sigmas"] == sorted(e["sigmas"], reverse=True)      # sampling order: sigma falls
    # the training-side curve depends only on the schedule: shared by EDM and EDM-G++
    assert got[("euler", "edm")]["extra"]["training_norm"] == got[("euler", "edm_gpp")]["extra"]["training_norm"]
    assert got[("euler", "edm")]["extra"]["sampling_norm"][0] == got[("euler", "edm_gpp")]["extra"]["sampling_norm"][0]
    assert got[("heun", "edm_gpp")]["extra"]["discriminator_epoch"] == 2
    # per sample (latent i in every cell): its excess over the training curve, whose mean is the value
    for c in got.values():
        e = c["extra"]
        assert e["resample_unit"] == "samples" and e["resample_n"] == 6
        for m in ("eps_norm_excess_pct", "eps_norm_excess_last_third_pct"):
            per = e[f"{m}_per_sample"]
            assert len(per) == 6 and math.isclose(sum(per) / 6, c["values"][m], rel_tol=1e-5, abs_tol=1e-4)
    report = shared["reports"]["fig11_exposure"]
    assert (report.parent / "fig11_exposure_test_eps_norms.png").exists() and "EDM-G++ / EDM excess" in report.read_text()


def test_discriminator_epoch_is_selectable_and_recorded(shared, tmp_path, monkeypatch):
    from repro.engine.run import run_spec

    key = "steps=2__method=edm_gpp__w_dg=1"
    before = by("fig12_1", steps=2, method="edm_gpp", w_dg=1.0)["values"]["fd_evalnet"]
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "results"))   # keep the shared results intact
    run_spec("fig12_1", "test", overrides={"fixed.discriminator_epoch": 1}, device="cpu", progress=False,
             only=[key])
    rec = results.read_cell("fig12_1", "test", key)
    assert rec["extra"]["discriminator_epoch"] == 1 and rec["values"]["fd_evalnet"] != before
    with pytest.raises(UserError, match="no weights for epoch 7"):
        run_spec("fig12_1", "test", overrides={"fixed.discriminator_epoch": 7}, device="cpu", progress=False,
                 only=[key])


@pytest.mark.parametrize("spec_id", SPECS)
def test_report_tables_hold_the_published_and_the_reproduced_values_in_their_rows(shared, spec_id):
    """Each published value stands in its own cell's row of the report's published table, and each
    reproduced metric in the row of the cell file it came from (to the printed precision)."""
    from repro.specs import load_spec
    from tests._report_tables import row_for, section, same, tables

    spec = load_spec(spec_id)
    md = shared["reports"][spec_id].read_text()
    if spec.paper.cells:
        published = [r for t in tables(section(md, "Published values")) for r in t]
        for cell in spec.paper.cells:
            numbers = {k: v for k, v in cell.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            keys = {k: v for k, v in cell.items() if k in spec.grid or not isinstance(v, (int, float))}
            rows = [r for r in published if all(k in r and same(r[k], v, exact=True) for k, v in keys.items())]
            assert rows, f"published cell {cell} has no row in {spec_id}'s report"
            for metric, value in numbers.items():
                if metric not in keys:
                    assert any(metric in r and same(r[metric], value) for r in rows), (spec_id, cell, metric)
    reproduced = [r for t in tables(section(md, "Reproduction at profile `test`")) for r in t
                  if all(k in r for k in spec.grid)]
    checked = 0
    for c in cells(spec_id):
        row = row_for(reproduced, {k: v for k, v in c["cell"].items() if k in spec.grid})
        for metric, value in c["values"].items():
            if metric in row and isinstance(value, (int, float)) and math.isfinite(value):
                assert same(row[metric], value), (spec_id, c["cell"], metric, row[metric], value)
                checked += 1
    assert checked >= len(cells(spec_id))   # at least one reproduced number per cell was found and matched
