"""Model kinds: how to build, check and train each kind of model a spec can name.

A model config `experiments/models/<name>.yaml` has `kind: K`; MODEL_KINDS names the module that
implements K, and that module provides the members of `Trainer` (and, where the config names
weights files, those of `NamesWeightsFiles`). Storing and hashing trained models under
artifacts/ is `repro.models`' job; training one on demand is `repro.trainers.ensure`'s.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from pydantic import BaseModel, ValidationError

from repro.errors import UserError
from repro.specs import ResolvedModel, resolve_model

if TYPE_CHECKING:   # annotations only: importing the table imports neither torch nor a trainer
    import torch
    from torch import nn

    from repro.checkpoints import WeightsFile

N = TypeVar("N", bound=BaseModel)
T = TypeVar("T", bound=BaseModel)


class Trainer(Protocol):
    """What every trainer module `repro.trainers.<kind>` provides (all members required)."""

    def parse(self, resolved: ResolvedModel) -> tuple[BaseModel, BaseModel]:
        """The config's `net` and `train` sections, validated against the kind's schemas."""

    def validate(self, resolved: ResolvedModel) -> None:
        """Raise UserError for a bad setting (schemas, cross-setting rules, files that must exist,
        the models it is trained on), before anything runs; returns nothing."""

    def build_net(self, resolved: ResolvedModel, meta: dict[str, Any] | None = None) -> nn.Module:
        """The architecture (untrained); `meta` is what training measured (repro.models' meta.json)."""

    def train_model(self, resolved: ResolvedModel, out_dir: Path, device: torch.device, run: Any,
                    progress: bool) -> tuple[nn.Module, dict[str, Any]]:
        """Train (resuming from out_dir/checkpoint.pt); the weights to store and what training
        measured (JSON-serialisable; `build_net` gets it back when loading)."""


class NamesWeightsFiles(Protocol):
    """Optional member of a trainer module whose config names weights files (checked by preflight,
    repro.trainers.weights): discriminator, edm, pretrained_segmenter, score_sde."""

    def weights_files(self, resolved: ResolvedModel) -> list[WeightsFile]:
        """Each file the config names, with the check it must pass."""


# model kind -> its trainer module: the one list of model kinds (strings: importing the table
# imports no trainer, so a training stage depends on its own trainer only).
MODEL_KINDS: dict[str, str] = {
    "discriminator": "repro.trainers.discriminator",
    "edm": "repro.trainers.edm",
    "evaluator": "repro.trainers.evaluator",
    "mask_ddpm": "repro.trainers.mask_ddpm",
    "noisy_classifier": "repro.trainers.noisy_classifier",
    "noisy_segmenter": "repro.trainers.noisy_segmenter",
    "pix2pixhd": "repro.trainers.pix2pixhd",
    "pretrained_segmenter": "repro.trainers.pretrained_segmenter",
    "score_sde": "repro.trainers.score_sde",
    "spade": "repro.trainers.spade",
}


def trainer_file(kind: str) -> str:
    """The repo-relative file of a model kind's trainer (for DVC's code dependencies)."""
    return MODEL_KINDS[kind].replace(".", "/") + ".py"


def kind_module(kind: str) -> Trainer:
    """The trainer module of a model kind (imported now)."""
    if kind not in MODEL_KINDS:
        raise UserError(f"unknown model kind {kind!r}; known kinds: {', '.join(sorted(MODEL_KINDS))}")
    return cast(Trainer, importlib.import_module(MODEL_KINDS[kind]))


def parse_settings(resolved: ResolvedModel, net_schema: type[N], train_schema: type[T]) -> tuple[N, T]:
    """Validate a model config's `net` and `train` sections; a bad value is a one-line UserError."""
    parsed = []
    for section, schema in (("net", net_schema), ("train", train_schema)):
        try:
            parsed.append(schema.model_validate(getattr(resolved.config, section)))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in (section, *err["loc"]))
            raise UserError(f"model {resolved.id}: {loc}: {err['msg']}") from None
    return parsed[0], parsed[1]


def upstream_model(resolved, role: str, name: str, overrides: dict | None, kind: str, *, article: str = "a"):
    """The config (at this profile) of the model another one is trained on (a discriminator on a
    generator's samples, a noise-conditional classifier on a score model's SDE), checked: of `kind`
    and on the same dataset and resolution. `role` names the setting, e.g. "generator"."""
    up = resolve_model(name, resolved.profile, overrides or None)
    if up.config.kind != kind:
        raise UserError(f"model {resolved.id}: train.{role} {name!r} is a {up.config.kind} model, "
                        f"not {article} {kind} one")
    a, b = resolved.config.dataset, up.config.dataset
    if (a.name, a.resolution) != (b.name, b.resolution):
        raise UserError(f"model {resolved.id}: dataset {a.name} {a.resolution} differs from {role.replace('_', ' ')} "
                        f"{name}'s {b.name} {b.resolution}; train on the {role.replace('_', ' ')}'s data")
    return up
