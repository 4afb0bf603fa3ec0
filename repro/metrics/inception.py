"""The paper's `fid`: pytorch-fid's InceptionV3 pool3 features (2048 dims) with its FID weights.

The weights file is never downloaded here. It is looked up, in order, at the path the
user names, at $REPRO_FID_WEIGHTS, and in the torch hub checkpoints cache, where
pytorch-fid itself stores it on a machine with internet access.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

from repro.errors import UserError
from repro.metrics.frechet import frechet_distance_from_features, require_more_samples_than_dims

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_ENV = "REPRO_FID_WEIGHTS"
FID_FEATURE_DIM = 2048


class FIDUnavailable(UserError):
    """pytorch-fid's Inception weights are not on this machine."""


def _hub_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME


def inception_weights_path(user_path: str | os.PathLike | None = None) -> Path | None:
    """The FID weights file: user_path, else $REPRO_FID_WEIGHTS, else the torch hub cache; None if absent.

    A path the user named explicitly (argument or environment) that does not exist is an error.
    """
    for named, source in ((user_path, "the given path"), (os.environ.get(FID_WEIGHTS_ENV) or None, f"${FID_WEIGHTS_ENV}")):
        if named is not None:
            path = Path(named).expanduser()
            if not path.is_file():
                raise FIDUnavailable(f"FID weights file {path} ({source}) does not exist; {_where_to_put_it()}")
            return path
    cached = _hub_cache_path()
    return cached if cached.is_file() else None


def _where_to_put_it() -> str:
    return (
        f"put pytorch-fid's {FID_WEIGHTS_FILENAME} at {_hub_cache_path()}, "
        f"or name it with ${FID_WEIGHTS_ENV} or the weights option"
    )


def require_inception_weights(user_path: str | os.PathLike | None = None) -> Path:
    """Like inception_weights_path, but raises FIDUnavailable when no file is found."""
    path = inception_weights_path(user_path)
    if path is None:
        raise FIDUnavailable(f"`fid` is unavailable offline without the Inception weights: {_where_to_put_it()}")
    return path


@contextlib.contextmanager
def _hub_dir_holding(weights: Path):
    """Within the context, torch hub's checkpoint folder holds `weights` under pytorch-fid's file
    name, so that pytorch-fid's own loader (load_state_dict_from_url of FID_WEIGHTS_URL) finds it
    there and never downloads. Uses only torch.hub's public get_dir / set_dir."""
    before = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="repro-fid-hub-") as tmp:
        ckpt = Path(tmp) / "checkpoints"
        ckpt.mkdir()
        (ckpt / FID_WEIGHTS_FILENAME).symlink_to(Path(weights).resolve())
        torch.hub.set_dir(tmp)
        try:
            if not (Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME).is_file():
                # torch.hub.get_dir does not follow set_dir (patched?): pytorch-fid would download
                raise FIDUnavailable(f"cannot point torch hub at {weights}; {_where_to_put_it()}")
            yield
        finally:
            torch.hub.set_dir(before)


def fid_inception_network(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised network in the layout of pytorch-fid's FID Inception (for tests and
    fixtures: its state dict has the published weights file's keys and shapes). Built from
    torchvision's Inception v3 with 1008 classes and pytorch-fid's public FIDInception blocks."""
    import torchvision
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = (FIDInceptionA(192, 32), FIDInceptionA(256, 64),
                                                    FIDInceptionA(288, 64))
        net.Mixed_6b, net.Mixed_6c = FIDInceptionC(768, 128), FIDInceptionC(768, 160)
        net.Mixed_6d, net.Mixed_6e = FIDInceptionC(768, 160), FIDInceptionC(768, 192)
        net.Mixed_7b, net.Mixed_7c = FIDInceptionE_1(1280), FIDInceptionE_2(2048)
    return net


def _load_weights(path: Path) -> dict:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable, truncated or not a tensor file
        raise FIDUnavailable(f"cannot read FID weights file {path} ({type(err).__name__}); {_where_to_put_it()}") from err
    if not isinstance(state_dict, dict):
        raise FIDUnavailable(f"{path} holds no state dict; {_where_to_put_it()}")
    return state_dict


def build_fid_inception(weights: str | os.PathLike | None) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 wrapper (pool3 output, resize to 299, [0,1] input), its weights
    read by pytorch-fid itself from the local file (first checked to load with weights_only=True,
    so pytorch-fid's own torch.load runs nothing but tensors). weights=None: random weights in the
    published layout (fid_inception_network; for tests, fixtures and cost probes only)."""
    if weights is None:
        with tempfile.TemporaryDirectory(prefix="repro-fid-random-") as tmp:
            path = Path(tmp) / FID_WEIGHTS_FILENAME
            torch.save(fid_inception_network().state_dict(), path)
            return build_fid_inception(path)
    from pytorch_fid.inception import InceptionV3

    path = Path(weights)
    _load_weights(path)
    try:
        with _hub_dir_holding(path):
            model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FID_FEATURE_DIM]], resize_input=True,
                                normalize_input=True, use_fid_inception=True)
    except RuntimeError as err:  # load_state_dict: missing/unexpected keys or wrong shapes
        raise FIDUnavailable(f"{weights} is not pytorch-fid's {FID_WEIGHTS_FILENAME}: {str(err).splitlines()[0]}") from err
    return model.eval()


# How images reach the Inception: as 8-bit files hold them (pytorch-fid and EDM's fid.py compute
# on image files), or the float samples themselves.
FID_INPUTS = {
    "uint8": "8-bit, floor(255 x + 0.5) / 255 (PNG files as torchvision's save_image and EDM write them)",
    "uint8_trunc": "8-bit, floor(255 x) / 255 (score_sde_pytorch's samples, np.clip(x * 255).astype(uint8))",
    "float": "float samples in [0, 1], not quantised",
}


def quantize_images(images: torch.Tensor, inputs: str = "uint8") -> torch.Tensor:
    """Images in [0, 1] as the Inception sees them under `inputs` (FID_INPUTS), still in [0, 1]."""
    if inputs not in FID_INPUTS:
        raise UserError(f"unknown FID inputs {inputs!r}; choose one of {', '.join(FID_INPUTS)}")
    x = images.clamp(0, 1)
    if inputs == "float":
        return x
    q = torch.floor(x * 255 + 0.5) if inputs == "uint8" else torch.floor(x * 255)
    return q.clamp(0, 255) / 255


def image_files_like_pytorch_fid(folder: str | os.PathLike) -> list[Path]:
    """The files pytorch-fid reads from a folder (fid_score.compute_statistics_of_path): every file
    with one of its IMAGE_EXTENSIONS directly in the folder, sorted."""
    from pytorch_fid.fid_score import IMAGE_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    files = sorted(f for ext in IMAGE_EXTENSIONS for f in root.glob(f"*.{ext}"))
    if not files:
        raise UserError(f"{root} holds no images pytorch-fid reads ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def read_images_like_pytorch_fid(folder: str | os.PathLike) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] exactly as pytorch-fid loads a folder: its ImagePathDataset (PIL,
    convert('RGB')) with torchvision's ToTensor. All images must share one size."""
    import torchvision.transforms as TF
    from pytorch_fid.fid_score import ImagePathDataset

    files = image_files_like_pytorch_fid(folder)
    ds = ImagePathDataset(files, transforms=TF.ToTensor())
    images = [ds[i] for i in range(len(ds))]
    if len({tuple(im.shape) for im in images}) > 1:
        raise UserError(f"{folder}: images of different sizes; pytorch-fid batches them, so they must match")
    return torch.stack(images)


class InceptionFeatures:
    """2048-dim pool3 features of images in [0,1] with pytorch-fid's FID Inception, the images
    quantised first as `inputs` says (FID_INPUTS; default 8-bit, as image files hold them)."""

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 inputs: str = "uint8"):
        """device=None runs on whatever device the images given to features() are on."""
        if inputs not in FID_INPUTS:
            raise UserError(f"unknown FID inputs {inputs!r}; choose one of {', '.join(FID_INPUTS)}")
        self.weights_path = require_inception_weights(weights)
        self.device = None if device is None else torch.device(device)
        self.inputs = inputs
        self.model = build_fid_inception(self.weights_path)

    @property
    def protocol(self) -> str:
        return f"pytorch-fid InceptionV3 pool3 (2048) on {FID_INPUTS[self.inputs]}"

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
        """images [N,C,H,W] in [0,1] (C = 1 or 3) -> features [N, 2048] (float32, CPU)."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N,1|3,H,W], got {tuple(images.shape)}")
        device = self.device if self.device is not None else images.device
        self.model.to(device)
        out = []
        for start in range(0, images.shape[0], batch_size):
            batch = quantize_images(images[start : start + batch_size].to(device, torch.float32), self.inputs)
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            pooled = self.model(batch)[0]  # [B, 2048, 1, 1]
            out.append(pooled.flatten(1).cpu())
        return torch.cat(out) if out else torch.empty(0, FID_FEATURE_DIM)


def fid_from_images(
    real: torch.Tensor | str | os.PathLike,
    fake: torch.Tensor | str | os.PathLike,
    weights: str | os.PathLike | None = None,
    batch_size: int = 50,
    device: str | torch.device | None = None,
    allow_rank_deficient: bool = False,
    inputs: str = "uint8",
) -> float:
    """The paper's FID between two image sets in [0,1] (or folders, read as pytorch-fid reads them),
    quantised as `inputs` says (FID_INPUTS; default 8-bit).

    Refuses with <= 2048 images per set unless allow_rank_deficient, which mirrors
    protocols that computed FID on fewer samples (thesis Tab. 5.3: 100); such a value
    is biased and must be labelled so by the caller.
    """
    require_inception_weights(weights)
    real = read_images_like_pytorch_fid(real) if isinstance(real, (str, os.PathLike)) else real
    fake = read_images_like_pytorch_fid(fake) if isinstance(fake, (str, os.PathLike)) else fake
    if not allow_rank_deficient:
        n = min(real.shape[0], fake.shape[0])
        require_more_samples_than_dims(n, FID_FEATURE_DIM, "Inception pool3 features (fid)")
    extractor = InceptionFeatures(weights, device, inputs)
    return frechet_distance_from_features(
        extractor.features(real, batch_size), extractor.features(fake, batch_size), allow_rank_deficient
    )
