"""BDD100K of the 001 paper: loader on a fixture tree, colour book, embedded profile, specs end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repro.data import load_dataset, stack
from repro.data.bdd100k import CLASS_NAMES, centre_square, polygon_points, split_indices
from repro.data.colorbook import ColorBook, one_hot
from repro.errors import UserError

W, H = 64, 36   # a 16:9 frame like BDD100K's 1280x720


def _frame(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Image: the centre square is mid grey + k, the side bands pure red; labels: left band car (13),
    centre columns road (0) over sky (10) rows, right band 200 (not a class -> unlabeled)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :, 0] = 255
    img[:, 14:50] = 100 + k
    lab = np.full((H, W), 10, np.uint8)
    lab[18:] = 0
    lab[:, :14] = 13
    lab[:, 50:] = 200
    return img, lab


@pytest.fixture
def bdd_root(tmp_path) -> Path:
    root = tmp_path / "bdd100k"
    for split, names in (("train", [f"t{i}" for i in range(6)]), ("val", ["v0", "v1"])):
        (root / "images" / "10k" / split).mkdir(parents=True)
        (root / "labels" / "sem_seg" / "masks" / split).mkdir(parents=True)
        for k, name in enumerate(names):
            img, lab = _frame(k + (10 if split == "val" else 0))
            Image.fromarray(img).save(root / "images" / "10k" / split / f"{name}.jpg", quality=100)
            Image.fromarray(lab).save(root / "labels" / "sem_seg" / "masks" / split / f"{name}.png")
    return root


def test_centre_square_of_a_bdd_frame():
    assert centre_square((1280, 720)) == (280, 0, 1000, 720)   # 720x720 (001 Sec. 4.1)


def test_loader_crops_resizes_and_splits(bdd_root):
    train = load_dataset("bdd100k", split="train", resolution=(18, 18), root=str(bdd_root), seed=3)
    test = load_dataset("bdd100k", split="test", resolution=(18, 18), root=str(bdd_root), seed=3)
    assert (len(train), len(test)) == (7, 1)                        # 7000/1000 of 8000, scaled
    names = lambda ds: {f[1].stem for f in ds.frames}  # noqa: E731
    assert names(train).isdisjoint(names(test)) and len(names(train) | names(test)) == 8
    item = train[0]
    assert item["image"].shape == (3, 18, 18) and item["label"].shape == (18, 18)
    # the red side bands (red - green = 1) are cropped away; JPEG bleeds a little into the edge columns
    assert float((item["image"][0] - item["image"][1]).abs().max()) < 0.3
    lab = item["label"].numpy()
    # 36x36 centre (cols 14..49) -> 18x18: left band (13) and 200 -> gone; sky on top, road below
    assert set(np.unique(lab)) == {0, 10}
    assert (lab[:9] == 10).all() and (lab[9:] == 0).all()
    other = load_dataset("bdd100k", split="test", resolution=(18, 18), root=str(bdd_root), seed=4)
    again = load_dataset("bdd100k", split="test", resolution=(18, 18), root=str(bdd_root), seed=3)
    assert names(again) == names(test)
    assert split_indices(8000, 0)["test"].__len__() == 1000 and len(split_indices(8000, 0)["train"]) == 7000
    assert split_indices(8000, 0) != split_indices(8000, 1) or names(other) != names(test)
    official = load_dataset("bdd100k", split="official_val", resolution=(18, 18), root=str(bdd_root))
    assert {f[1].stem for f in official.frames} == {"v0", "v1"}


def test_uncropped_unlabeled_ids_become_255(bdd_root):
    ds = load_dataset("bdd100k", split="official_train", resolution=(36, 64), root=str(bdd_root))
    # a square crop is always taken: 36x36 -> resized to 36x64 keeps only centre content
    lab = ds[0]["label"].numpy()
    assert set(np.unique(lab)) <= {0, 10}


def test_polygon_layout(tmp_path):
    root = tmp_path / "bdd100k"
    (root / "images" / "10k" / "train").mkdir(parents=True)
    (root / "labels" / "sem_seg" / "polygons").mkdir(parents=True)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "images" / "10k" / "train" / "a.jpg")
    frames = [{"name": "a.jpg", "labels": [
        {"category": "sky", "poly2d": [{"vertices": [[0, 0], [63, 0], [63, 35], [0, 35]], "types": "LLLL",
                                        "closed": True}]},
        {"category": "car", "poly2d": [{"vertices": [[14, 18], [49, 18], [49, 35], [14, 35]], "types": "LLLL",
                                        "closed": True}]}]}]
    (root / "labels" / "sem_seg" / "polygons" / "sem_seg_train.json").write_text(json.dumps(frames))
    ds = load_dataset("bdd100k", split="official_train", resolution=(36, 36), root=str(root))
    assert ds.label_kind == "polygons"
    lab = ds[0]["label"].numpy()
    assert (lab[:17] == 10).all() and (lab[19:] == CLASS_NAMES.index("car")).all()   # later labels paint over


def test_bezier_with_collinear_controls_is_the_segment():
    pts = polygon_points([[0, 0], [1, 0], [2, 0], [3, 0], [3, 3]], "LCCLL")
    xs = np.array(pts)
    assert np.allclose(xs[1:9, 1], 0) and np.allclose(xs[8], [3, 0]) and np.allclose(xs[-1], [3, 3])


def test_missing_dataset_is_one_line(tmp_path):
    with pytest.raises(UserError, match="bdd100k not found"):
        load_dataset("bdd100k", split="train", root=str(tmp_path / "nowhere"))


# ----------------------------------------------------------------------------- colour book

def test_colour_book_has_the_19_cityscapes_colours():
    from repro.data.palette import CITYSCAPES_COLORS

    book = ColorBook.load()
    assert book.num_classes == 19 and book.names[13] == "car"
    assert np.array_equal(book.colors, CITYSCAPES_COLORS[:19])


def test_colour_book_round_trip_and_unknown_colour(tmp_path):
    book = ColorBook.load()
    labels = np.array([[0, 13, 255], [10, 18, 5]])
    path = book.write_mask(labels, tmp_path / "m.png")
    assert np.array_equal(book.read_mask(path), labels)
    rgb = book.to_rgb(labels)
    rgb[1, 2] = (0, 0, 140)    # a near-car colour, as an antialiased brush leaves
    Image.fromarray(rgb).save(tmp_path / "bad.png")
    with pytest.raises(UserError) as e:
        book.read_mask(tmp_path / "bad.png")
    msg = str(e.value)
    assert "(x=2, y=1)" in msg and "(0, 0, 140)" in msg and "car (0, 0, 142)" in msg and "\n" not in msg


def test_one_hot_unlabeled_is_zero():
    oh = one_hot(torch.tensor([[[0, 255], [18, 3]]]), 19)
    assert oh.shape == (1, 19, 2, 2)
    assert oh[0, :, 0, 1].sum() == 0 and oh[0, 0, 0, 0] == 1 and oh[0, 18, 1, 0] == 1
    assert torch.equal(oh.sum(1), torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]))


def test_embedded_profile_is_square_with_bdd_ids():
    from repro.data.street_canvas import CLASS_NAMES as street_names
    from repro.data.street_scenes import StreetScenes

    ds = load_dataset("bdd_scenes", split="train", resolution=(16, 16), n=4)
    images, labels = stack(ds)
    assert images.shape == (4, 3, 16, 16) and labels.shape == (4, 16, 16)
    wide = StreetScenes("train", (16, 32), n=4)
    w_img, w_lab = wide.stack()
    assert torch.equal(images, w_img[..., 8:24])                        # the centre square of the frame
    names = np.array(street_names)[w_lab[..., 8:24].numpy()]
    expect = {"background": "terrain", "traffic_sign": "traffic sign"}
    assert all(CLASS_NAMES[b] == expect.get(s, s) for s, b in zip(names.ravel(), labels.numpy().ravel()))
    assert torch.equal(ds[1]["label"], labels[1])


# ----------------------------------------------------------------------------- trainer

def test_mask_loss_drops_per_sample_or_per_batch():
    from repro.diffusion.ddpm import DDPMSchedule
    from repro.trainers.mask_ddpm import mask_loss

    seen = []

    def model(x, t, mask, drop=None):
        seen.append((None if mask is None else tuple(mask.shape), None if drop is None else drop.clone()))
        return torch.zeros_like(x)

    sched = DDPMSchedule.make("linear", 10)
    batch = {"image": torch.rand(64, 3, 8, 8), "label": torch.randint(0, 19, (64, 8, 8))}
    g = torch.Generator().manual_seed(0)
    mask_loss(model, sched, batch, g, 19, 0.5, "per_sample")
    assert seen[0][0] == (64, 19, 8, 8) and 10 < int(seen[0][1].sum()) < 54
    seen.clear()
    for _ in range(40):
        mask_loss(model, sched, batch, g, 19, 0.5, "per_batch")
    assert all(m is not None and (d.all() or not d.any()) for m, d in seen)   # the whole batch together
    assert {bool(d[0]) for _, d in seen} == {True, False}                       # batches with and without


@pytest.mark.slow
def test_mask_ddpm_training_resumes_exactly(tmp_path):
    from repro.specs import parse_set, resolve_model
    from repro.trainers.mask_ddpm import train_model

    def trained(out, overrides=None):
        torch.manual_seed(0)   # as repro.trainers.ensure.ensure_model seeds the initial weights
        net, meta = train_model(resolve_model("mask_ddpm_bdd", "test", overrides), out, torch.device("cpu"), None, False)
        return net, meta

    _, part = trained(tmp_path / "a", parse_set(["train.max_steps=1"]))
    resumed, meta = trained(tmp_path / "a")                   # picks up the checkpoint after step 1
    straight, meta2 = trained(tmp_path / "b")
    assert part["steps"] == 1 and meta["steps"] == meta2["steps"] == 2   # 8 images, batch 4, one epoch
    for (k, a), (_, b) in zip(resumed.state_dict().items(), straight.state_dict().items()):
        assert torch.equal(a, b), k
    assert meta["parameters"] == 88_503 and meta["weights"] == "ema" and meta["drop_mode"] == "per_sample"


def test_timing_variants_leave_the_shared_net_alone():
    from repro.experiments.bdd.timing import prepare_variant, variant_unavailable
    from repro.nets.bdd_unet import MaskGuidedUNet

    net = MaskGuidedUNet(base=4, emb_dim=8)
    prep = prepare_variant(net, "channels_last")
    assert prep.channels_last and prep.autocast and prep.net is not net
    assert net.inc.body[0].weight.is_contiguous()                                # the original untouched
    assert prep.net.inc.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not prepare_variant(net, "fp32").autocast
    assert variant_unavailable("cuda_graphs", torch.device("cpu")) == "CUDA graphs need a CUDA device"
    assert variant_unavailable("bf16", torch.device("cpu")) is None


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_three_specs_at_test_profile_end_to_end(workdir, capsys):
    from typer.testing import CliRunner

    from repro import results
    from repro.cli import app
    from repro.engine.run import run_spec
    from repro.reporting.render import render_report

    for spec in ("bdd_metrics", "bdd_table2", "bdd_uncond"):
        summary = run_spec(spec, "test", progress=False)
        assert summary.ran and not summary.failed, spec
        text = render_report(spec).read_text()
        assert "Reproduction at profile `test`" in text
    rec = results.read_cells("bdd_metrics", "test")[0]
    assert set(rec["values"]) == {"ssim", "fd_evalnet", "kid_evalnet", "pixel_acc", "miou"}
    assert rec["extra"]["loop"] == "appendix" and rec["extra"]["nfe_per_batch"] == 5   # T = 6: 5 calls
    assert rec["extra"]["guidance_convention"] == "lerp" and rec["extra"]["guidance_w_ho_salimans"] == 2.0
    assert rec["extra"]["network_rows_per_pass"] == 8                                 # 2B for B = 4
    assert "0.6818" in (workdir / "reports" / "bdd_metrics.md").read_text()
    timing = {(r["cell"]["batch_size"], r["cell"]["mode"], r["cell"]["variant"]): r
              for r in results.read_cells("bdd_table2", "test")}
    assert timing[(2, "conditional", "fp32")]["extra"]["network_rows_per_step"] == 4
    assert timing[(2, "unconditional", "fp32")]["extra"]["network_rows_per_step"] == 2
    assert timing[(1, "conditional", "fp32")]["extra"]["steps_timed"] == 6            # Alg. 2: T calls

    runner = CliRunner()
    from repro.data.colorbook import ColorBook

    book = ColorBook.load()
    labels = np.zeros((16, 16), np.int64)
    labels[8:] = 13
    book.write_mask(labels, workdir / "drawn.png")
    out = runner.invoke(app, ["sample", "ddpm", "--mask", str(workdir / "drawn.png"), "-n", "2", "--out",
                              str(workdir / "s"), "--profile", "test", "--no-progress", "--guidance", "1.0",
                              "--convention", "ho_salimans"])
    assert out.exit_code == 0, out.output
    info = json.loads((workdir / "s" / "info.json").read_text())
    assert info["guidance_w_ho_salimans"] == 1.0 and info["guidance_s_lerp"] == 2.0
    from importlib import metadata

    assert info["environment"]["packages"]["torch"] == metadata.version("torch") and info["environment"]["threads"] == 1
    sheet = Image.open(workdir / "s" / "sheet.png")
    assert sheet.width > 2.5 * sheet.height                 # mask + 2 samples in one row
    rgb = book.to_rgb(labels)
    rgb[2, 7] = (10, 200, 10)
    Image.fromarray(rgb).save(workdir / "bad.png")
    from repro.cli import main

    with pytest.raises(SystemExit) as ex:
        main(["sample", "ddpm", "--mask", str(workdir / "bad.png"), "--profile", "test"])
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 2 and len(err.splitlines()) == 1
    assert "(x=7, y=2)" in err and "(10, 200, 10)" in err and "nearest class colour" in err
    out = runner.invoke(app, ["show", "bdd_metrics", "--profile", "paper"])
    assert out.exit_code == 0 and "88,842,371" in out.output
