"""Model kinds: how to build and train each kind of model a spec can name.

A model config `experiments/models/<name>.yaml` has `kind: K`; the module `repro.trainers.K`
defines:
- `build_net(resolved: ResolvedModel, meta: dict) -> nn.Module` (architecture only);
- `train_model(resolved, out_dir: Path, device, run, progress) -> (nn.Module, meta: dict)`:
  trains (resuming from out_dir/checkpoint.pt), returns the weights to store and what
  training measured (JSON-serialisable; `build_net` gets it back when loading);
- optionally `validate(resolved)` raising UserError for bad `net`/`train` settings.
Loading, hashing and storing under artifacts/ is `repro.models`' job.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from repro.errors import UserError

N = TypeVar("N", bound=BaseModel)
T = TypeVar("T", bound=BaseModel)


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


def model_kinds() -> list[str]:
    return sorted(MODEL_KINDS)


def trainer_file(kind: str) -> str:
    """The repo-relative file of a model kind's trainer (for DVC's code dependencies)."""
    return MODEL_KINDS[kind].replace(".", "/") + ".py"


def kind_module(kind: str) -> ModuleType:
    if kind not in MODEL_KINDS:
        raise UserError(f"unknown model kind {kind!r}; known kinds: {', '.join(model_kinds())}")
    return importlib.import_module(MODEL_KINDS[kind])


def parse_settings(resolved, net_schema: type[N], train_schema: type[T]) -> tuple[N, T]:
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
    from repro.specs import resolve_model

    up = resolve_model(name, resolved.profile, overrides or None)
    if up.config.kind != kind:
        raise UserError(f"model {resolved.id}: train.{role} {name!r} is a {up.config.kind} model, "
                        f"not {article} {kind} one")
    a, b = resolved.config.dataset, up.config.dataset
    if (a.name, a.resolution) != (b.name, b.resolution):
        raise UserError(f"model {resolved.id}: dataset {a.name} {a.resolution} differs from {role.replace('_', ' ')} "
                        f"{name}'s {b.name} {b.resolution}; train on the {role.replace('_', ' ')}'s data")
    return up
