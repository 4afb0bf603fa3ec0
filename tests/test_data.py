"""Dataset registry: embedded street scenes and digits, real loaders on fixture trees the tests write."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from repro.data import DatasetInfo, dataset_info, default_root, list_datasets, load_dataset, stack
from repro.data.cityscapes import BACKGROUND
from repro.data.street_render import CLASS_NAMES, contact_sheet
from repro.data.street_scenes import StreetScenes, render_images
from repro.errors import UserError

# ---------------------------------------------------------------- registry


def test_registry_lists_all_datasets_with_consistent_info():
    names = list_datasets()
    assert names == sorted(["street_scenes", "digits", "cityscapes", "cifar10", "image_folder", "bdd100k",
                            "bdd_scenes"])
    for name in names:
        info = dataset_info(name)
        assert isinstance(info, DatasetInfo) and info.name == name
        assert info.kind in {"segmentation", "classification", "images"}
        assert len(info.class_names) == info.num_classes
    assert dataset_info("cityscapes").num_classes == 20 and dataset_info("cityscapes").class_names[19] == "background"
    assert dataset_info("street_scenes").embedded and not dataset_info("cifar10").embedded
    assert dataset_info("digits").channels == 1


def test_unknown_dataset_is_a_user_error_listing_known_names():
    with pytest.raises(UserError, match="unknown dataset 'nope'.*street_scenes"):
        dataset_info("nope")
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("../etc")


@pytest.mark.parametrize("name", ["street_scenes", "digits"])
def test_unknown_split_and_bad_arguments_are_user_errors(name):
    with pytest.raises(UserError, match="unknown split 'bogus'"):
        load_dataset(name, split="bogus")
    with pytest.raises(UserError, match="resolution"):
        load_dataset(name, resolution=(0, 8))
    with pytest.raises(UserError, match="n=0"):
        load_dataset(name, n=0)


def test_default_root_follows_repro_data(monkeypatch, tmp_path):
    monkeypatch.delenv("REPRO_DATA", raising=False)
    assert str(default_root("cityscapes")) == "data/cityscapes"
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    assert default_root("cifar10") == tmp_path / "cifar10"
    with pytest.raises(UserError, match=f"cifar10 not found at {tmp_path / 'cifar10'}"):
        load_dataset("cifar10")


# ---------------------------------------------------------------- street_scenes


def test_street_scenes_same_arguments_give_identical_tensors():
    a = load_dataset("street_scenes", split="train", resolution=(16, 32), n=8, seed=3)
    b = load_dataset("street_scenes", split="train", resolution=(16, 32), n=8, seed=3)
    for i in (0, 5):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["label"], b[i]["label"])
    assert not torch.equal(a[0]["image"], a[1]["image"])
    other_seed = load_dataset("street_scenes", split="train", resolution=(16, 32), n=8, seed=4)
    assert not torch.equal(a[0]["image"], other_seed[0]["image"])


def test_street_scene_does_not_depend_on_batch_or_dataset_size():
    alone = render_images(0, "val", [70], (16, 32))
    batch = render_images(0, "val", range(64, 80), (16, 32))
    assert np.array_equal(alone[0][0], batch[0][6]) and np.array_equal(alone[1][0], batch[1][6])
    small = load_dataset("street_scenes", split="val", resolution=(16, 32), n=3)
    large = load_dataset("street_scenes", split="val", resolution=(16, 32), n=100)
    assert torch.equal(small[2]["image"], large[2]["image"])


def test_street_scene_splits_are_disjoint_streams():
    fingerprints = {}
    for split in ("train", "val", "test"):
        images, _ = load_dataset("street_scenes", split=split, resolution=(16, 32), n=32).arrays()
        fingerprints[split] = {img.tobytes() for img in images}
        assert len(fingerprints[split]) == 32
    assert not fingerprints["train"] & fingerprints["val"]
    assert not fingerprints["train"] & fingerprints["test"]
    assert not fingerprints["val"] & fingerprints["test"]


@pytest.mark.parametrize("resolution", [(16, 32), (32, 64)])
def test_street_scene_items_have_the_documented_shapes(resolution):
    ds = load_dataset("street_scenes", split="val", resolution=resolution, n=4)
    item = ds[3]
    assert item["image"].shape == (3, *resolution) and item["image"].dtype == torch.float32
    assert item["label"].shape == resolution and item["label"].dtype == torch.int64
    assert item["index"] == 3 and 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    images, labels = stack(ds)
    assert images.shape == (4, 3, *resolution) and labels.shape == (4, *resolution)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert torch.equal(batch["image"], images) and torch.equal(batch["label"], labels)


def test_street_scene_defaults():
    ds = load_dataset("street_scenes")
    assert len(ds) == 512 and ds.resolution == (64, 128) == dataset_info("street_scenes").default_resolution
    assert len(load_dataset("street_scenes", split="val")) == 128


def test_every_street_class_appears_and_labels_are_in_range():
    ds = load_dataset("street_scenes", split="train", resolution=(32, 64), n=64)
    images, labels = stack(ds)
    assert labels.min() >= 0 and labels.max() < len(CLASS_NAMES)
    counts = torch.bincount(labels.flatten(), minlength=len(CLASS_NAMES))
    missing = [CLASS_NAMES[c] for c in range(len(CLASS_NAMES)) if counts[c] == 0]
    assert not missing, f"classes never drawn: {missing}"
    # Large classes are in (nearly) every image; small ones still in many.
    present = torch.stack([(labels == c).flatten(1).any(1) for c in range(len(CLASS_NAMES))]).float().mean(1)
    assert present[CLASS_NAMES.index("road")] == 1 and present[CLASS_NAMES.index("sky")] == 1
    assert present.min() > 0.5


def test_street_classes_differ_in_colour():
    # A learnable dataset: sky is bluer than road, vegetation greener than building.
    images, labels = stack(load_dataset("street_scenes", split="train", resolution=(32, 64), n=64))
    mean = {name: images.permute(1, 0, 2, 3)[:, labels == c].mean(1) for c, name in enumerate(CLASS_NAMES)}
    assert mean["sky"][2] > mean["road"][2] + 0.1
    assert mean["vegetation"][1] - mean["vegetation"][0] > mean["building"][1] - mean["building"][0] + 0.1


def test_night_scenes_are_darker_than_day_scenes():
    ds = load_dataset("street_scenes", split="train", resolution=(16, 32), n=64)
    night = torch.tensor([ds.is_night(i) for i in range(len(ds))])
    assert 5 <= int(night.sum()) <= 40  # both lighting conditions occur
    brightness = stack(ds)[0].mean(dim=(1, 2, 3))
    assert brightness[night].mean() < 0.5 * brightness[~night].mean()
    assert brightness[night].max() < brightness[~night].median()


def test_resolution_changes_keep_the_scene_layout():
    small = load_dataset("street_scenes", split="train", resolution=(16, 32), n=32).arrays()[1]
    large = load_dataset("street_scenes", split="train", resolution=(32, 64), n=32).arrays()[1]
    agreement = (small == large[:, ::2, ::2]).mean()
    assert agreement > 0.85
    unrelated = (small == np.roll(large[:, ::2, ::2], 1, axis=0)).mean()  # other scenes agree far less
    assert unrelated < agreement - 0.15


def test_contact_sheet_tiles_images_and_colourised_labels():
    images, labels = load_dataset("street_scenes", split="val", resolution=(16, 32), n=8).arrays()
    sheet = contact_sheet(images, labels, columns=2, gap=2)
    assert sheet.shape == (4 * 18, 2 * 66, 3) and sheet.dtype == np.uint8
    assert np.array_equal(sheet[:16, :32], images[0].transpose(1, 2, 0))


@pytest.mark.bench
def test_bench_street_scenes_render_speed():
    start = time.perf_counter()
    load_dataset("street_scenes", split="train", resolution=(32, 64), n=1000).arrays()
    elapsed = time.perf_counter() - start
    print(f"street_scenes: 1000 images at 32x64 in {elapsed:.2f} s")
    assert elapsed < 3.0


# ---------------------------------------------------------------- digits


def test_digits_counts_splits_and_values():
    train = load_dataset("digits", split="train")
    val = load_dataset("digits", split="val")
    assert len(train) + len(val) == 1797 and abs(len(val) - 0.2 * 1797) < 6
    x_train, y_train = stack(train)
    x_val, y_val = stack(val)
    assert x_train.shape == (len(train), 1, 8, 8) and y_train.dtype == torch.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert set(y_train.tolist()) == set(range(10)) == set(y_val.tolist())
    train_rows = {tuple(r) for r in x_train.flatten(1).tolist()}
    val_rows = {tuple(r) for r in x_val.flatten(1).tolist()}
    assert len(train_rows & val_rows) < 5  # a few duplicate digits exist in the raw data; the split is disjoint
    assert torch.equal(stack(load_dataset("digits", split="test"))[1], y_val)  # test is an alias of val


def test_digits_split_is_seeded_and_resizable():
    a = stack(load_dataset("digits", split="val", seed=0))[0]
    assert torch.equal(a, stack(load_dataset("digits", split="val", seed=0))[0])
    assert not torch.equal(a, stack(load_dataset("digits", split="val", seed=1))[0])
    big = load_dataset("digits", split="val", resolution=(16, 16), n=10)
    assert len(big) == 10 and big[0]["image"].shape == (1, 16, 16) and big[0]["label"].shape == ()
    assert torch.allclose(big[0]["image"].mean(), a[0].mean(), atol=0.05)  # bilinear keeps the mean ink


# ---------------------------------------------------------------- cityscapes (fixture tree)

# labelId -> expected training id: 7 road, 8 sidewalk, 26 car, 33 bicycle, 23 sky; 0 unlabeled,
# 4 static, 9 parking, 15 bridge -> background 19 (000 Sec. 5.4.1).
_CITY_IDS = {7: 0, 8: 1, 26: 13, 33: 18, 23: 10, 0: 19, 4: 19, 9: 19, 15: 19}


def _write_cityscapes(root, split="val", cities=("aachen", "bremen"), with_labels=True):
    ids = np.array(list(_CITY_IDS), np.uint8)
    for k, city in enumerate(cities):
        stem = f"{city}_000000_00001{k}"
        img_dir = root / "leftImg8bit" / split / city
        lab_dir = root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        # 8x16 label map made of 9 vertical bands, one per labelId, shifted per image.
        label_ids = np.repeat(np.roll(ids, k)[None, np.arange(16) * len(ids) // 16], 8, axis=0)
        rgb = np.stack([label_ids * 7, np.full_like(label_ids, 100 + 50 * k), 255 - label_ids * 7], -1)
        Image.fromarray(rgb.astype(np.uint8)).save(img_dir / f"{stem}_leftImg8bit.png")
        if with_labels:
            Image.fromarray(label_ids).save(lab_dir / f"{stem}_gtFine_labelIds.png")
    return ids


def test_cityscapes_maps_label_ids_to_20_training_classes(tmp_path):
    _write_cityscapes(tmp_path)
    ds = load_dataset("cityscapes", split="val", root=str(tmp_path), resolution=(8, 16))
    assert len(ds) == 2
    first = ds[0]
    assert first["image"].shape == (3, 8, 16) and first["label"].shape == (8, 16)
    raw = np.asarray(Image.open(tmp_path / "gtFine/val/aachen/aachen_000000_000010_gtFine_labelIds.png"))
    expected = np.vectorize(_CITY_IDS.get)(raw)
    assert np.array_equal(first["label"].numpy(), expected)
    assert set(first["label"].unique().tolist()) == {0, 1, 10, 13, 18, BACKGROUND}
    img = np.asarray(Image.open(tmp_path / "leftImg8bit/val/aachen/aachen_000000_000010_leftImg8bit.png"))
    assert torch.allclose(first["image"], torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255)
    # sorted order: aachen before bremen; n limits the count
    assert load_dataset("cityscapes", split="val", root=str(tmp_path), n=1).pairs[0][0].parent.name == "aachen"


def test_cityscapes_resizes_labels_without_inventing_classes(tmp_path):
    _write_cityscapes(tmp_path)
    ds = load_dataset("cityscapes", split="val", root=str(tmp_path), resolution=(4, 24))
    images, labels = stack(ds)
    assert images.shape == (2, 3, 4, 24) and labels.shape == (2, 4, 24)
    assert set(labels.unique().tolist()) <= set(_CITY_IDS.values())
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_cityscapes_missing_root_and_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="cityscapes not found at .*leftImg8bit/ and gtFine/"):
        load_dataset("cityscapes", root=str(tmp_path / "absent"))
    _write_cityscapes(tmp_path, with_labels=False)
    with pytest.raises(UserError, match="aachen_000000_000010_gtFine_labelIds.png"):
        load_dataset("cityscapes", split="val", root=str(tmp_path))
    with pytest.raises(UserError, match="split 'train' has no images"):
        load_dataset("cityscapes", split="train", root=str(tmp_path))
    with pytest.raises(UserError, match="unknown split 'training'"):
        load_dataset("cityscapes", split="training", root=str(tmp_path))


def test_cityscapes_palette_label_maps_keep_their_ids_and_rgb_ones_are_refused(tmp_path):
    _write_cityscapes(tmp_path)
    path = tmp_path / "gtFine/val/bremen/bremen_000000_000011_gtFine_labelIds.png"
    ids = np.asarray(Image.open(path))
    palette = Image.fromarray(ids, mode="L").convert("P")  # same indices, with a palette
    palette.putpalette([255 - (i % 256) for i in range(768)])
    palette.save(path)
    ds = load_dataset("cityscapes", split="val", root=str(tmp_path), resolution=(8, 16))
    assert np.array_equal(ds[1]["label"].numpy(), np.vectorize(_CITY_IDS.get)(ids))
    Image.fromarray(np.stack([ids] * 3, -1)).save(path)
    with pytest.raises(UserError, match="not single-channel ids"):
        ds[1]


def test_cityscapes_unreadable_image_is_a_user_error(tmp_path):
    _write_cityscapes(tmp_path)
    broken = tmp_path / "leftImg8bit/val/bremen/bremen_000000_000011_leftImg8bit.png"
    broken.write_bytes(b"not a png")
    ds = load_dataset("cityscapes", split="val", root=str(tmp_path), resolution=(8, 16))
    with pytest.raises(UserError, match="cannot read image .*bremen_000000_000011_leftImg8bit.png"):
        ds[1]


# ---------------------------------------------------------------- cifar10 (pickle fixture)


def _write_cifar(folder, per_batch=3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, fh, protocol=2)
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"lorry"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, fh, protocol=2)
    return batches


def test_cifar10_reads_official_batches(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    train = load_dataset("cifar10", split="train", root=str(tmp_path))
    assert len(train) == 15 and train.class_names[9] == "lorry"
    item = train[4]  # second image of data_batch_2
    data, labels = batches["data_batch_2"]
    # Each row is 1024 red, then 1024 green, then 1024 blue values in row-major order.
    expected = torch.from_numpy(data[1].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(item["image"], expected) and item["label"] == labels[1]
    test = load_dataset("cifar10", split="val", root=str(tmp_path))  # val is an alias of test
    images, y = stack(test)
    assert images.shape == (3, 3, 32, 32) and y.tolist() == batches["test_batch"][1]
    assert len(load_dataset("cifar10", split="train", root=str(tmp_path), n=4)) == 4
    small = load_dataset("cifar10", split="test", root=str(tmp_path), resolution=(16, 16))
    assert stack(small)[0].shape == (3, 3, 16, 16)


def test_cifar10_files_directly_in_root_and_errors(tmp_path):
    _write_cifar(tmp_path, per_batch=2)
    (tmp_path / "batches.meta").unlink()
    ds = load_dataset("cifar10", split="test", root=str(tmp_path))
    assert len(ds) == 2 and ds.class_names[0] == "airplane"
    with pytest.raises(UserError, match="cifar10 not found at"):
        load_dataset("cifar10", root=str(tmp_path / "missing"))
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        load_dataset("cifar10", split="train", root=str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path, capsys):
    _write_cifar(tmp_path, per_batch=1)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, fh, protocol=2)
    with pytest.raises(UserError, match="cannot read cifar10 batch .*test_batch"):
        load_dataset("cifar10", split="test", root=str(tmp_path))
    assert "pwned" not in capsys.readouterr().out


# ---------------------------------------------------------------- image_folder


def _write_pngs(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(folder / f"img{i}.png")


def test_image_folder_reads_recursively_and_resizes(tmp_path):
    _write_pngs(tmp_path / "a", [(10, 12), (20, 8)])
    _write_pngs(tmp_path / "b" / "deep", [(5, 5)])
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "gray.JPG")  # grayscale, upper-case suffix
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset("image_folder", root=str(tmp_path), resolution=(8, 8))
    assert len(ds) == 4 and dataset_info("image_folder").kind == "images"
    images, labels = stack(ds)
    assert images.shape == (4, 3, 8, 8) and labels.tolist() == [0, 0, 0, 0]
    assert torch.allclose(images[1], torch.full((3, 8, 8), 40 / 255))  # a/img1.png, a flat colour
    with pytest.raises(UserError, match="differ in size"):
        stack(load_dataset("image_folder", root=str(tmp_path)))  # native sizes cannot be stacked


def test_image_folder_split_subfolders_and_errors(tmp_path):
    _write_pngs(tmp_path / "train", [(4, 4), (4, 4)])
    _write_pngs(tmp_path / "val", [(4, 4)])
    assert len(load_dataset("image_folder", split="val", root=str(tmp_path))) == 1
    assert len(load_dataset("image_folder", split="all", root=str(tmp_path))) == 3
    with pytest.raises(UserError, match="image_folder not found at"):
        load_dataset("image_folder", root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .png/.jpg/.jpeg images"):
        load_dataset("image_folder", root=str(tmp_path / "empty"))
    (tmp_path / "val" / "img0.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match="cannot read image .*img0.png"):
        load_dataset("image_folder", split="val", root=str(tmp_path))[0]
