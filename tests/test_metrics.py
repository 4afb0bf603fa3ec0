"""Metrics: pixel accuracy / mIoU (thesis Eqs. 5.8, 5.9), Frechet distance (Eq. 5.7), FID, KID, SSIM."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from repro.errors import UserError
from repro.metrics import (
    FID_WEIGHTS_FILENAME,
    FIDUnavailable,
    InceptionFeatures,
    InsufficientSamples,
    SegmentationScores,
    feature_statistics,
    fid_from_images,
    frechet_distance,
    frechet_distance_from_features,
    inception_weights_path,
    kid_from_features,
    segmentation_scores,
    ssim,
)

# ---------------------------------------------------------------- segmentation

IGNORE = 255


def _hand_example():
    # image 1: target [[0,0],[1,1]], pred [[0,1],[1,1]]
    # image 2: target [[0,0],[0,ignore]], pred [[0,1],[1,2]] (the ignored pixel's 2 counts nowhere)
    target = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, IGNORE]]])
    pred = torch.tensor([[[0, 1], [1, 1]], [[0, 1], [1, 2]]])
    return pred, target


def test_hand_computed_scores():
    pred, target = _hand_example()
    scores = segmentation_scores(pred, target, num_classes=3, ignore_index=IGNORE)
    # correct: image 1 (a, c, d), image 2 (a) = 4 of 7 valid pixels
    assert scores["pixel_acc"] == pytest.approx(4 / 7)
    # per image: class 0 -> 1/2 and 1/3; class 1 -> 2/3 and 0 (predicted only); class 2 never present
    assert scores["miou"] == pytest.approx(((1 / 2 + 1 / 3) / 2 + (2 / 3 + 0) / 2) / 2)
    # dataset: class 0 -> 2 / (5 + 2 - 2); class 1 -> 2 / (2 + 5 - 2)
    assert scores["miou_dataset"] == pytest.approx(0.4)
    assert scores["per_class_iou"][:2] == pytest.approx([0.4, 0.4])
    assert scores["per_class_iou"][2] is None
    assert (scores["n_images"], scores["n_pixels"]) == (2, 7)
    # the same hand figures per image (class 2 is in neither image's map: None)
    assert scores["image_iou"] == [[pytest.approx(1 / 2), pytest.approx(2 / 3), None],
                                   [pytest.approx(1 / 3), 0.0, None]]


def test_image_miou_recomputes_the_thesis_miou_and_its_resamples():
    from repro.metrics.segmentation import image_miou

    pred, target = _hand_example()
    scores = segmentation_scores(pred, target, num_classes=3, ignore_index=IGNORE)
    assert image_miou(scores["image_iou"]) == pytest.approx(scores["miou"])
    # image 1 twice: class 0 -> 1/2, class 1 -> 2/3, the mean of the two
    assert image_miou(scores["image_iou"], rows=[0, 0]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert image_miou(scores["image_iou"], rows=[1]) == pytest.approx((1 / 3 + 0) / 2)
    # a class absent from some images is averaged over the images it occurs in only
    assert image_miou([[1.0, None], [0.5, 0.0]]) == pytest.approx((0.75 + 0.0) / 2)
    assert math.isnan(image_miou([]))   # no image, no mIoU
    # an in-range ignore label enters no mean (as in `miou`)
    rand = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (5, 6, 6), generator=rand)
    pred = torch.randint(0, 4, (5, 6, 6), generator=rand)
    scores = segmentation_scores(pred, target, num_classes=4, ignore_index=3)
    assert all(row[3] is None for row in scores["image_iou"])
    assert image_miou(scores["image_iou"]) == pytest.approx(scores["miou"])


def test_streaming_equals_one_batch():
    pred, target = _hand_example()
    streamed = SegmentationScores(3, IGNORE)
    streamed.update(pred[:1], target[:1])
    streamed.update(pred[1:], target[1:])
    assert streamed.compute() == segmentation_scores(pred, target, 3, IGNORE)
    streamed.reset()
    streamed.update(pred[:1], target[:1])
    assert streamed.compute()["n_images"] == 1


def test_perfect_prediction_scores_one():
    target = torch.randint(0, 4, (3, 5, 7), generator=torch.Generator().manual_seed(0))
    target[0, 0, :3] = IGNORE
    pred = target.clone()
    pred[0, 0, :3] = 1  # predictions on ignored pixels do not matter
    scores = segmentation_scores(pred, target, 4, IGNORE)
    assert scores["pixel_acc"] == scores["miou"] == scores["miou_dataset"] == 1.0


def test_constant_prediction_gives_chance_level_numbers():
    # image A all class 0; image B half class 1, half class 2; predict class 0 everywhere
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[1, :2] = 1
    target[1, 2:] = 2
    pred = torch.zeros_like(target)
    scores = segmentation_scores(pred, target, 3)
    assert scores["pixel_acc"] == pytest.approx(0.5)  # the share of class 0
    assert scores["per_class_iou"] == pytest.approx([0.5, 0.0, 0.0])  # 16 / 32 for class 0
    assert scores["miou_dataset"] == pytest.approx(1 / 6)
    # per image: class 0 is 1.0 in A and 0.0 in B; classes 1, 2 are 0.0
    assert scores["miou"] == pytest.approx(1 / 6)


@pytest.mark.parametrize("ignore_index", [IGNORE, 0, None])
def test_agrees_with_torchmetrics(ignore_index):
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(1)
    num_classes = 5
    target = torch.randint(0, num_classes, (4, 9, 11), generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target, torch.randint(0, num_classes, target.shape, generator=g))
    pred[pred == 4] = 3  # class 4 is never predicted...
    target[target == 4] = 2  # ...nor present: it must drop out of the mean
    if ignore_index == IGNORE:
        target[:, :2] = IGNORE
    scores = segmentation_scores(pred, target, num_classes, ignore_index)

    jaccard = MulticlassJaccardIndex(num_classes, average="macro", ignore_index=ignore_index)
    accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore_index)
    assert scores["miou_dataset"] == pytest.approx(float(jaccard(pred, target)), abs=1e-6)
    assert scores["pixel_acc"] == pytest.approx(float(accuracy(pred, target)), abs=1e-6)
    assert scores["per_class_iou"][4] is None


@pytest.mark.parametrize("ignore_index", [IGNORE, None])
def test_thesis_per_image_miou_against_torchmetrics_per_image(ignore_index):
    """The thesis's mIoU (IoU per image over the classes present in it, averaged over images per
    class, then over classes) built from torchmetrics' per-image confusion matrix and IoU."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_jaccard_index

    g = torch.Generator().manual_seed(11)
    c = 4
    target = torch.randint(0, c, (5, 6, 7), generator=g)
    target[0][target[0] == 3] = 1          # image 0 has no class 3
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.5, target, torch.randint(0, c, target.shape, generator=g))
    if ignore_index is not None:
        target[:, 0] = ignore_index
    sums, counts = [0.0] * c, [0] * c
    for i in range(target.shape[0]):
        conf = multiclass_confusion_matrix(pred[i:i + 1], target[i:i + 1], c, ignore_index=ignore_index)
        union = conf.sum(0) + conf.sum(1) - conf.diagonal()
        iou = multiclass_jaccard_index(pred[i:i + 1], target[i:i + 1], c, average="none", ignore_index=ignore_index)
        for k in range(c):
            if union[k] > 0:
                sums[k] += float(iou[k])
                counts[k] += 1
    expected = sum(s / n for s, n in zip(sums, counts) if n) / sum(1 for n in counts if n)
    assert segmentation_scores(pred, target, c, ignore_index)["miou"] == pytest.approx(expected, abs=1e-6)


def test_per_image_and_dataset_miou_differ_when_images_differ_in_size_of_classes():
    # class 1: a big region hit exactly in image 1, a 1-pixel region missed in image 2
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, :, :2] = 1
    target[1, 0, 0] = 1
    pred = target.clone()
    pred[1, 0, 0] = 0
    scores = segmentation_scores(pred, target, 2)
    assert scores["per_class_iou"][1] == pytest.approx(8 / 9)  # dataset: 8 / (9 + 8 - 8)
    class0_image = (8 / 8 + 15 / 16) / 2
    class1_image = (1.0 + 0.0) / 2
    assert scores["miou"] == pytest.approx((class0_image + class1_image) / 2)
    assert scores["miou"] < scores["miou_dataset"]


def test_bad_labels_and_shapes_raise():
    scores = SegmentationScores(3, IGNORE)
    with pytest.raises(ValueError, match="target"):
        scores.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="pred"):
        scores.update(torch.full((1, 2, 2), 3), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[N,H,W\]"):
        scores.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="no valid"):
        scores.compute()


# ---------------------------------------------------------------- Frechet distance


def _spd(d, seed):
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)).numpy()


def test_identical_gaussians_have_zero_distance():
    mu, sigma = np.arange(6.0), _spd(6, 0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_diagonal_gaussians_match_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    assert expected == pytest.approx(7.25 + 4 + 1)


def test_equal_full_covariances_leave_only_the_mean_term():
    # sqrt(C C) = C for SPD C, so Eq. 5.7 reduces to ||mu1 - mu2||^2
    sigma = _spd(4, 1)
    mu1, mu2 = np.zeros(4), np.array([1.0, -2.0, 0.0, 3.0])
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(14.0, rel=1e-6)


def test_agrees_with_pytorch_fid_on_full_covariances():
    from pytorch_fid.fid_score import calculate_frechet_distance

    mu1, mu2 = np.linspace(0, 1, 5), np.linspace(1, -1, 5)
    s1, s2 = _spd(5, 10), _spd(5, 11)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(float(calculate_frechet_distance(mu1, s1, mu2, s2)), rel=1e-9)


def test_distance_from_samples_approaches_the_gaussian_value():
    g = torch.Generator().manual_seed(2)
    n = 20000
    f1 = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0], dtype=torch.float64)
    f2 = torch.randn(n, 2, generator=g, dtype=torch.float64) * 3.0 + torch.tensor([1.0, 0.0], dtype=torch.float64)
    expected = 1.0 + (1 + 9 - 2 * 3) + (4 + 9 - 2 * 6)
    assert frechet_distance_from_features(f1, f2) == pytest.approx(expected, rel=0.05)


def test_feature_statistics_are_float64_mean_and_unbiased_covariance():
    f = torch.randn(10, 3, generator=torch.Generator().manual_seed(3))
    mu, sigma = feature_statistics(f)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, f.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(sigma, torch.cov(f.double().T).numpy(), rtol=1e-10)


@pytest.mark.parametrize("n", [1, 8])
def test_too_few_samples_refuse(n):
    f = torch.randn(n, 8, generator=torch.Generator().manual_seed(4))
    with pytest.raises(InsufficientSamples, match="at least 9 samples.*smaller feature layer") as info:
        frechet_distance_from_features(f, torch.randn(20, 8))
    assert isinstance(info.value, UserError)


def test_rank_deficient_opt_in_gives_a_finite_distance():
    g = torch.Generator().manual_seed(12)
    f1, f2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g) + 2.0
    assert frechet_distance_from_features(f1, f1, allow_rank_deficient=True) == pytest.approx(0.0, abs=1e-3)
    apart = frechet_distance_from_features(f1, f2, allow_rank_deficient=True)
    assert math.isfinite(apart) and apart > 8 * 2.0**2 * 0.5
    with pytest.raises(InsufficientSamples, match="at least 2"):
        feature_statistics(f1[:1], allow_rank_deficient=True)


def test_singular_product_retries_with_an_offset(monkeypatch):
    import scipy.linalg

    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky_sqrtm(a, disp=True):  # pytorch-fid asks sqrtm(..., disp=False) first, then retries plainly
        calls.append(a.copy())
        out = np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)
        return out if disp else (out, 0.0)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    value = frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), eps=1e-3)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (1 + 1e-3) ** 2 * np.eye(2))
    assert value == pytest.approx(0.0, abs=1e-2)


def test_large_imaginary_component_raises(monkeypatch):
    import scipy.linalg

    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda a, disp=True: (np.eye(2) * (1 + 1j), 0.0))
    with pytest.raises(ValueError, match="maginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda a, disp=True: (np.eye(2) * (1 + 1e-9j), 0.0))
    assert frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(0.0)


# ---------------------------------------------------------------- pytorch-fid Inception


@pytest.fixture
def no_fid_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("REPRO_FID_WEIGHTS", raising=False)
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path
    torch.hub.set_dir(before)


def test_without_weights_fid_is_unavailable(no_fid_weights):
    assert inception_weights_path() is None
    with pytest.raises(FIDUnavailable, match=FID_WEIGHTS_FILENAME) as info:
        InceptionFeatures()
    assert str(no_fid_weights / "hub" / "checkpoints") in str(info.value)
    with pytest.raises(FIDUnavailable):
        fid_from_images(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(FIDUnavailable, match="does not exist"):
        inception_weights_path(no_fid_weights / "missing.pth")


def test_weights_lookup_order(no_fid_weights, monkeypatch):
    cached = no_fid_weights / "hub" / "checkpoints" / FID_WEIGHTS_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert inception_weights_path() == cached
    env_file = no_fid_weights / "env.pth"
    env_file.write_bytes(b"x")
    monkeypatch.setenv("REPRO_FID_WEIGHTS", str(env_file))
    assert inception_weights_path() == env_file
    user_file = no_fid_weights / "user.pth"
    user_file.write_bytes(b"x")
    assert inception_weights_path(str(user_file)) == user_file
    monkeypatch.setenv("REPRO_FID_WEIGHTS", str(no_fid_weights / "gone.pth"))
    with pytest.raises(FIDUnavailable, match="REPRO_FID_WEIGHTS"):
        inception_weights_path()


def test_unreadable_or_foreign_weights_are_user_errors(no_fid_weights):
    garbage = no_fid_weights / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FIDUnavailable, match="cannot read"):
        InceptionFeatures(garbage)
    foreign = no_fid_weights / "foreign.pth"
    torch.save({"layer.weight": torch.zeros(2)}, foreign)
    with pytest.raises(FIDUnavailable, match="not pytorch-fid"):
        InceptionFeatures(foreign)


@pytest.fixture(scope="module")
def random_fid_weights(tmp_path_factory):
    """A weights file in the published layout, from a randomly initialised FID Inception."""
    from repro.metrics.inception import fid_inception_network

    torch.manual_seed(0)
    state = fid_inception_network().state_dict()
    path = tmp_path_factory.mktemp("fid") / FID_WEIGHTS_FILENAME
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def random_extractor(random_fid_weights):
    hub_before = torch.hub.get_dir()
    extractor = InceptionFeatures(random_fid_weights[0])
    # pytorch-fid read the file from a temporary hub folder; the user's hub folder is back
    assert torch.hub.get_dir() == hub_before
    return extractor


def test_inception_features_load_local_weights(random_fid_weights, random_extractor):
    path, state = random_fid_weights
    extractor = random_extractor
    first_conv = extractor.model.blocks[0][0].conv.weight
    torch.testing.assert_close(first_conv, state["Conv2d_1a_3x3.conv.weight"])
    last_conv = extractor.model.blocks[3][2].branch_pool.conv.weight
    torch.testing.assert_close(last_conv, state["Mixed_7c.branch_pool.conv.weight"])

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    feats = extractor.features(images, batch_size=1)
    assert feats.shape == (2, 2048)
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # pool3 of ReLU outputs
    assert not torch.allclose(feats[0], feats[1])
    gray = extractor.features(images[:1, :1])
    torch.testing.assert_close(gray, extractor.features(images[:1, :1].expand(-1, 3, -1, -1)))


def test_fid_refuses_with_at_most_2048_images(random_fid_weights):
    path, _ = random_fid_weights
    with pytest.raises(InsufficientSamples, match="at least 2049"):
        fid_from_images(torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8), weights=path)


def _write_pngs(folder, images):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        arr = (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.png")


def test_quantisation_like_png_files():
    from repro.metrics.inception import quantize_images

    x = torch.tensor([0.0, 0.5 / 255, 0.49 / 255, 1.0, 1.2, -0.1, 100.6 / 255])
    assert torch.equal(quantize_images(x, "uint8") * 255, torch.tensor([0.0, 1, 0, 255, 255, 0, 101]))
    assert torch.equal(quantize_images(x, "uint8_trunc") * 255, torch.tensor([0.0, 0, 0, 255, 255, 0, 100]))
    assert torch.equal(quantize_images(x, "float"), x.clamp(0, 1))
    with pytest.raises(UserError, match="FID inputs"):
        quantize_images(x, "int4")
    # what torchvision's save_image writes is what the uint8 path sees
    img = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    saved = img.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).float() / 255
    assert torch.equal(quantize_images(img), saved)


def test_folder_is_read_as_pytorch_fid_reads_it(tmp_path):
    from PIL import Image

    from repro.metrics.inception import image_files_like_pytorch_fid, read_images_like_pytorch_fid

    g = torch.Generator().manual_seed(3)
    _write_pngs(tmp_path / "imgs", torch.rand(3, 3, 8, 8, generator=g))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "gray.bmp")   # grey -> RGB
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "UPPER.PNG")  # not globbed
    (tmp_path / "imgs" / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "sub" / "deep.png")
    names = [p.name for p in image_files_like_pytorch_fid(tmp_path / "imgs")]
    assert names == ["000.png", "001.png", "002.png", "gray.bmp"]  # pytorch-fid: its extensions, all paths sorted
    images = read_images_like_pytorch_fid(tmp_path / "imgs")
    expected = np.asarray(Image.open(tmp_path / "imgs" / "001.png").convert("RGB"), np.float32) / 255
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.float32
    assert torch.equal(images[1], torch.from_numpy(expected).permute(2, 0, 1))
    assert torch.equal(images[3], torch.zeros(3, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        image_files_like_pytorch_fid(tmp_path / "empty")


def test_folder_features_equal_pytorch_fids_activations(random_fid_weights, random_extractor, tmp_path):
    from pytorch_fid.fid_score import get_activations

    from repro.metrics.inception import image_files_like_pytorch_fid, read_images_like_pytorch_fid

    _write_pngs(tmp_path / "a", torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)))
    files = image_files_like_pytorch_fid(tmp_path / "a")
    theirs = get_activations(files, random_extractor.model, batch_size=3, dims=2048, device="cpu", num_workers=0)
    ours = random_extractor.features(read_images_like_pytorch_fid(tmp_path / "a"), batch_size=3)
    np.testing.assert_array_equal(ours.numpy(), theirs.astype(np.float32))
    # and the statistics fid_from_images hands to the distance are pytorch-fid's own
    from pytorch_fid.fid_score import calculate_activation_statistics

    mu, sigma = calculate_activation_statistics(files, random_extractor.model, 3, 2048, "cpu", 0)
    our_mu, our_sigma = feature_statistics(ours, allow_rank_deficient=True)
    np.testing.assert_allclose(our_mu, mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(our_sigma, sigma, rtol=0, atol=1e-12)


def test_float_inputs_are_an_option(random_extractor):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    from repro.metrics.inception import quantize_images

    quantised = random_extractor.features(images)          # default: 8-bit
    torch.testing.assert_close(quantised, random_extractor.features(quantize_images(images)), rtol=0, atol=0)
    random_extractor.inputs = "float"
    try:
        floats = random_extractor.features(images)
    finally:
        random_extractor.inputs = "uint8"
    assert not torch.equal(floats, quantised)
    assert "8-bit" in random_extractor.protocol


@pytest.mark.bench
def test_fid_of_two_folders_equals_pytorch_fids_own_calculation(random_fid_weights, tmp_path):
    """The real path end to end (folders -> Inception -> statistics -> distance) against
    pytorch-fid's calculate_fid_given_paths with the same (random) weights in its hub folder.
    Marked bench (`make bench`): each side takes a 2048 x 2048 matrix square root (twice, the
    product being singular with 5 images), minutes on a shared CPU (6 min measured here, loaded).
    The default run checks the same path up to the statistics exactly (test above) and the
    distance is pytorch-fid's own function."""
    from pytorch_fid.fid_score import calculate_fid_given_paths

    path, _ = random_fid_weights
    g = torch.Generator().manual_seed(13)
    _write_pngs(tmp_path / "real", torch.rand(5, 3, 16, 16, generator=g))
    _write_pngs(tmp_path / "fake", torch.rand(5, 3, 16, 16, generator=g) * 0.3)
    ours = fid_from_images(tmp_path / "real", tmp_path / "fake", weights=path, batch_size=5,
                           allow_rank_deficient=True)
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / FID_WEIGHTS_FILENAME).symlink_to(path)
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        theirs = calculate_fid_given_paths([str(tmp_path / "real"), str(tmp_path / "fake")], 5, "cpu", 2048, 0)
    finally:
        torch.hub.set_dir(before)
    assert ours == pytest.approx(float(theirs), rel=1e-9)
    assert ours > 0


# ---------------------------------------------------------------- KID and SSIM


def _direct_kid(x, y):
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_a_direct_computation():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64) + 0.5
    mean, std = kid_from_features(x, y, subset_size=4, num_subsets=3, generator=g)
    assert mean == pytest.approx(_direct_kid(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)  # every subset is the full set


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`")
def test_kid_matches_torchmetrics_on_the_same_features():
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(7)
    real = torch.randn(30, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(30, 8, generator=g, dtype=torch.float64) * 1.3 + 0.2
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=2, subset_size=30)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    tm_mean, _ = metric.compute()
    mean, _ = kid_from_features(real, fake, subset_size=30, num_subsets=2, generator=g)
    assert mean == pytest.approx(float(tm_mean), rel=1e-8)
    assert mean > 0.01


def test_kid_subsets_are_reproducible_and_detect_a_shift():
    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    same = kid_from_features(a, b, 50, 20, torch.Generator().manual_seed(0))
    assert same == kid_from_features(a, b, 50, 20, torch.Generator().manual_seed(0))
    shifted = kid_from_features(a, b + 1.0, 50, 20, torch.Generator().manual_seed(0))
    assert abs(same[0]) < 3 * same[1] + 1e-3
    assert shifted[0] > 10 * abs(same[0])
    with pytest.raises(ValueError, match="subset_size"):
        kid_from_features(a, b, 201)


def test_ssim():
    from torchmetrics.functional import structural_similarity_index_measure

    g = torch.Generator().manual_seed(9)
    x = torch.rand(2, 3, 16, 32, generator=g)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    value = ssim(noisy, x)
    assert 0 < value < 0.9
    assert value == pytest.approx(float(structural_similarity_index_measure(noisy, x, data_range=1.0)))
    small = torch.rand(1, 1, 8, 8, generator=g)
    assert ssim(small, small) == pytest.approx(1.0, abs=1e-6)
    other = torch.rand(1, 1, 8, 8, generator=g)   # 8x8: the window shrinks to 7, sigma 1.5 * 7 / 11
    direct = structural_similarity_index_measure(other, small, data_range=1.0, kernel_size=7, sigma=1.5 * 7 / 11)
    assert ssim(other, small) == pytest.approx(float(direct), abs=1e-7)
    assert math.isfinite(ssim(small, 1 - small))


def test_importing_metrics_is_light():
    code = (
        "import sys, repro.metrics; "
        "print(sorted(m for m in ('scipy', 'pytorch_fid', 'torchmetrics', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_frechet_distance_with_a_dead_feature_dimension_is_finite_and_quiet(capsys):
    import warnings

    from repro.metrics.frechet import frechet_distance_from_features

    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(300, 5, generator=g), torch.randn(300, 5, generator=g) + 0.5
    f1[:, 0] = 0.0   # a dimension that never fires: singular covariances
    f2[:, 0] = 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = frechet_distance_from_features(f1, f2, allow_rank_deficient=True)
        same = frechet_distance_from_features(f1, f1, allow_rank_deficient=True)
    # pytorch-fid's notice of a singular product (it then offsets both covariances) comes as a
    # RuntimeWarning, not as a print on stdout
    assert all(issubclass(w.category, RuntimeWarning) for w in caught if "singular" in str(w.message).lower())
    assert not capsys.readouterr().out
    assert abs(d - 4 * 0.25) < 0.3 and abs(same) < 1e-6   # mean shift 0.5 in 4 live dims


def test_frechet_replicates_equal_pytorch_fid_on_each_resample():
    """One replicate = pytorch-fid's distance of the resampled feature set (the draw counts' weighted
    covariance equals the covariance of the repeated rows); the identity set gives the cell's value."""
    from repro.metrics.frechet import feature_statistics, frechet_distance, frechet_replicates
    from repro.metrics.spread import resample_indices

    g = np.random.default_rng(0)
    ref, fake = g.normal(size=(200, 8)), g.normal(size=(40, 8)) + 0.3
    mu, sigma = feature_statistics(ref)
    sets = np.vstack([np.arange(40)[None], resample_indices(40)[:3]])
    expected = [frechet_distance(mu, sigma, *feature_statistics(fake[idx])) for idx in sets]
    assert frechet_replicates(fake, mu, sigma, sets) == pytest.approx(expected, rel=1e-9)
    assert frechet_replicates(fake, mu, sigma)[:3] == pytest.approx(expected[1:], rel=1e-9)   # default: shared sets
