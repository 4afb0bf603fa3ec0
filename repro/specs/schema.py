"""The schema of experiment specs and model configs (pydantic models, validated at the edge)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROFILES = ("test", "smoke", "paper")
DEFAULT_PROFILE = "smoke"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(StrictModel):
    document: str
    table: str | None = None
    figure: str | None = None
    section: str | None = None

    def cite(self) -> str:
        parts = [self.document]
        if self.table:
            parts.append(f"Tab. {self.table}")
        if self.figure:
            parts.append(f"Fig. {self.figure}")
        if self.section:
            parts.append(f"Sec. {self.section}")
        return ", ".join(parts)


class DatasetSpec(StrictModel):
    name: str
    split: str = "val"
    resolution: tuple[int, int] | None = Field(default=None, description="[H, W]")
    root: str | None = None
    n_train: int | None = Field(default=None, ge=1)
    n_eval: int | None = Field(default=None, ge=1)
    seed: int = 0


class PaperValues(StrictModel):
    protocol: dict[str, Any] = Field(default_factory=dict)
    cells: list[dict[str, Any]] = Field(default_factory=list)
    notes: str | None = None


class Spec(StrictModel):
    id: str
    title: str
    source: Source
    kind: str
    description: str | None = None
    dataset: DatasetSpec
    models: dict[str, str] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    metrics: list[str] = Field(default_factory=list)
    paper: PaperValues = Field(default_factory=PaperValues)
    seed: int = 0
    profiles: dict[Literal["test", "smoke", "paper"], dict[str, Any]] = Field(default_factory=dict)


class ModelConfig(StrictModel):
    id: str
    title: str = ""
    kind: str
    source: Source | None = None
    dataset: DatasetSpec
    net: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    profiles: dict[Literal["test", "smoke", "paper"], dict[str, Any]] = Field(default_factory=dict)


def validation_message(e: ValidationError, what: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(root)"
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"invalid {what}: {loc}: {err['msg']}{more}"
