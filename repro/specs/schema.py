"""The schema of experiment specs and model configs (pydantic models, validated at the edge)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from repro.specs.references import reference

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
        ref = reference(self.document)
        parts = [f"{ref.short}, {ref.title} ({self.document})" if ref else self.document]
        if self.table:
            parts.append(f"Tab. {self.table}")
        if self.figure:
            parts.append(f"Fig. {self.figure}")
        if self.section:
            parts.append(f"Sec. {self.section}")
        return ", ".join(parts)


MAX_PIXELS = 64_000_000   # per image; the paper resolutions are 0.13 MP (Cityscapes 256x512)


class DatasetSpec(StrictModel):
    name: str
    split: str = "val"
    resolution: tuple[int, int] | None = Field(default=None, description="[H, W]")
    root: str | None = None
    n_train: int | None = Field(default=None, ge=1)
    n_eval: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _resolution(self) -> "DatasetSpec":
        if self.resolution is not None:
            h, w = self.resolution
            if h < 1 or w < 1:
                raise ValueError(f"resolution {h}x{w}: both sides must be at least 1")
            if h * w > MAX_PIXELS:   # refused before any tensor is allocated (a MemoryError after it)
                raise ValueError(f"resolution {h}x{w} is {h * w / 1e6:.0f} megapixels per image, over the "
                                 f"{MAX_PIXELS / 1e6:.0f} MP a run is allowed to hold per image")
        return self


class PaperValues(StrictModel):
    protocol: dict[str, Any] = Field(default_factory=dict)
    cells: list[dict[str, Any]] = Field(default_factory=list)
    notes: str | None = None


CLAIM_KINDS = ("trend", "better", "rank", "ratio", "threshold", "equal", "gain_contrast")
RESAMPLE_UNITS = ("samples", "maps", "images", "seeds", "repeats", "none")


class ClaimPlace(StrictModel):
    """Where a claim stands: the document file, its section / table / figure, and the line range
    of the quoted words in the document text (1-based, inclusive)."""
    document: str
    section: str | None = None
    table: str | None = None
    figure: str | None = None
    lines: tuple[int, int]


class CellSelector(StrictModel):
    """The cells a side of a claim takes: grid values (`where`; a list means any of them), from
    this spec or another (`spec`); several matching cells are reduced by `pick` in every resample
    (min / max: the best setting of a group, chosen again in each resample, so the selection is
    part of the spread)."""
    spec: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    pick: Literal["only", "min", "max"] = "only"


class Claim(StrictModel):
    """One claim of a document that a spec checks (judged by repro.claims, DESIGN.md).

    kinds: `trend` (metric over grid key `over` in `cells`, Spearman rho, `direction`
    increasing / decreasing); `better` (metric of `a` vs `b`, `direction` lower / higher: a is
    claimed lower / higher), per group of `across` keys; `rank` (`a` has rank `rank` among `cells`
    by `among`, 1 = best, `direction` lower / higher is better); `ratio` (a / b within a factor
    `within` of `published`); `threshold` (a above / below `value`, `direction` higher / lower);
    `equal` (|a - b| <= `within`); `gain_contrast` (the relative change a vs b is lower / higher
    than c vs d: `direction`)."""
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    quote: str = Field(min_length=8)
    place: ClaimPlace
    kind: Literal[CLAIM_KINDS]  # type: ignore[valid-type]
    metric: str = Field(pattern=r"^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$",
                        description="the metric, or alternatives `fid|fd_evalnet`: the first the cells measure")
    direction: Literal["increasing", "decreasing", "lower", "higher"] | None = None
    unit: Literal[RESAMPLE_UNITS]  # type: ignore[valid-type]
    claim: str = Field(min_length=8, description="the claim in the suite's words: what is compared here")
    over: str | None = None
    among: str | None = None
    cells: CellSelector | None = None
    a: CellSelector | None = None
    b: CellSelector | None = None
    c: CellSelector | None = None
    d: CellSelector | None = None
    across: list[str] = Field(default_factory=list)
    rank: int | None = Field(default=None, ge=1)
    value: float | None = None
    published: float | None = None
    within: float | None = Field(default=None, gt=0)
    profiles: list[Literal["test", "smoke", "paper"]] = Field(default_factory=lambda: ["test", "smoke", "paper"])
    note: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> "Claim":
        need = {"trend": ("over", "direction"), "better": ("a", "b", "direction"),
                "rank": ("a", "among", "rank", "direction"), "ratio": ("a", "b", "published", "within"),
                "threshold": ("a", "value", "direction"), "equal": ("a", "b", "within"),
                "gain_contrast": ("a", "b", "c", "d", "direction")}[self.kind]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"claim {self.id}: a {self.kind} claim needs {', '.join(missing)}")
        if self.kind == "trend" and self.direction not in ("increasing", "decreasing"):
            raise ValueError(f"claim {self.id}: a trend's direction is increasing or decreasing")
        if self.kind != "trend" and self.direction in ("increasing", "decreasing"):
            raise ValueError(f"claim {self.id}: direction is lower or higher for a {self.kind} claim")
        if self.kind == "ratio" and self.published <= 0:
            raise ValueError(f"claim {self.id}: a ratio's published value must be positive")
        if self.place.lines[0] > self.place.lines[1]:
            raise ValueError(f"claim {self.id}: place.lines must be [first, last]")
        return self


class ExternalReference(StrictModel):
    """Values from outside the five documents, shown for context with their full citation and
    never judged as the documents' numbers."""
    citation: str
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
    external: ExternalReference | None = None
    claims: list[Claim] = Field(default_factory=list)
    seed: int = Field(default=0, ge=0)
    profiles: dict[Literal["test", "smoke", "paper"], dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_claims(self) -> "Spec":
        ids = [c.id for c in self.claims]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"claim ids must be unique within a spec: {', '.join(dup)}")
        return self


class ModelConfig(StrictModel):
    id: str
    title: str = ""
    kind: str
    source: Source | None = None
    dataset: DatasetSpec
    net: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0)
    # How many independently seeded copies `repro train` makes (seed, seed + 1, ...): what a spec
    # that carries training noise in its claims asks for (e.g. table5_4_5's fixed.model_seeds).
    # Not part of a copy's identity (each copy's hash has its own seed).
    replicas: int = Field(1, ge=1)
    profiles: dict[Literal["test", "smoke", "paper"], dict[str, Any]] = Field(default_factory=dict)


def validation_message(e: ValidationError, what: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(root)"
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"invalid {what}: {loc}: {err['msg']}{more}"
