"""The paper's `fid`: pytorch-fid's InceptionV3 pool3 features (2048 dims) with its FID weights.

The weights file is never downloaded here. It is looked up, in order, at the path the
user names, at $REPRO_FID_WEIGHTS, and in the torch hub checkpoints cache, where
pytorch-fid itself stores it on a machine with internet access.
"""

from __future__ import annotations

import contextlib
import os
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
def _offline_fid_inception(state_dict: dict | None):
    """Within the context, pytorch-fid builds its FID Inception from `state_dict`, never downloading.

    pytorch-fid's fid_inception_v3() fetches its weights through the module-level
    load_state_dict_from_url; this swaps that for the local state dict. With
    state_dict=None the network keeps its own initial (random) parameters.
    """
    import pytorch_fid.inception as pfi

    built = []
    original_build, original_fetch = pfi._inception_v3, pfi.load_state_dict_from_url

    def build_and_remember(*args, **kwargs):
        built.append(original_build(*args, **kwargs))
        return built[-1]

    def local_state_dict(url, *args, **kwargs):
        return state_dict if state_dict is not None else built[-1].state_dict()

    pfi._inception_v3, pfi.load_state_dict_from_url = build_and_remember, local_state_dict
    try:
        yield
    finally:
        pfi._inception_v3, pfi.load_state_dict_from_url = original_build, original_fetch


def fid_inception_network(state_dict: dict | None = None) -> torch.nn.Module:
    """pytorch-fid's full FID Inception (the layout of its published weights file)."""
    import pytorch_fid.inception as pfi

    with _offline_fid_inception(state_dict):
        return pfi.fid_inception_v3()


def _load_weights(path: Path) -> dict:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable, truncated or not a tensor file
        raise FIDUnavailable(f"cannot read FID weights file {path} ({type(err).__name__}); {_where_to_put_it()}") from err
    if not isinstance(state_dict, dict):
        raise FIDUnavailable(f"{path} holds no state dict; {_where_to_put_it()}")
    return state_dict


def build_fid_inception(weights: str | os.PathLike | None) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 wrapper (pool3 output, resize to 299, [0,1] input) from a local file.

    weights=None builds it with random parameters (for tests and fixtures only).
    """
    from pytorch_fid.inception import InceptionV3

    state_dict = _load_weights(Path(weights)) if weights is not None else None
    try:
        with _offline_fid_inception(state_dict):
            model = InceptionV3(
                [InceptionV3.BLOCK_INDEX_BY_DIM[FID_FEATURE_DIM]],
                resize_input=True,
                normalize_input=True,
                use_fid_inception=True,
            )
    except RuntimeError as err:  # load_state_dict: missing/unexpected keys or wrong shapes
        raise FIDUnavailable(f"{weights} is not pytorch-fid's {FID_WEIGHTS_FILENAME}: {str(err).splitlines()[0]}") from err
    return model.eval()


class InceptionFeatures:
    """2048-dim pool3 features of images in [0,1] with pytorch-fid's FID Inception."""

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device | None = None):
        """device=None runs on whatever device the images given to features() are on."""
        self.weights_path = require_inception_weights(weights)
        self.device = None if device is None else torch.device(device)
        self.model = build_fid_inception(self.weights_path)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
        """images [N,C,H,W] in [0,1] (C = 1 or 3) -> features [N, 2048] (float32, CPU)."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N,1|3,H,W], got {tuple(images.shape)}")
        device = self.device if self.device is not None else images.device
        self.model.to(device)
        out = []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device, torch.float32).clamp(0, 1)
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            pooled = self.model(batch)[0]  # [B, 2048, 1, 1]
            out.append(pooled.flatten(1).cpu())
        return torch.cat(out) if out else torch.empty(0, FID_FEATURE_DIM)


def fid_from_images(
    real: torch.Tensor,
    fake: torch.Tensor,
    weights: str | os.PathLike | None = None,
    batch_size: int = 50,
    device: str | torch.device | None = None,
    allow_rank_deficient: bool = False,
) -> float:
    """The paper's FID between two image sets in [0,1].

    Refuses with <= 2048 images per set unless allow_rank_deficient, which mirrors
    protocols that computed FID on fewer samples (thesis Tab. 5.3: 100); such a value
    is biased and must be labelled so by the caller.
    """
    require_inception_weights(weights)
    if not allow_rank_deficient:
        n = min(real.shape[0], fake.shape[0])
        require_more_samples_than_dims(n, FID_FEATURE_DIM, "Inception pool3 features (fid)")
    extractor = InceptionFeatures(weights, device)
    return frechet_distance_from_features(
        extractor.features(real, batch_size), extractor.features(fake, batch_size), allow_rank_deficient
    )
