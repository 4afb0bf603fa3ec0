"""MLflow as a person browses it: what an experiment says about itself, how runs are named, links.

MLflow 3's UI opens an experiment in its per-browser "workflow type", which starts as GenAI
(the traces overview); `?workflowType=machine_learning` on the link opens the runs instead,
and the experiment tag `mlflow.experimentKind = custom_model_development` records that these are
model-development experiments. Every experiment the suite creates gets that tag and a
description (tag `mlflow.note.content`, the UI's "Description"): for a spec, the table, the
document and section it reproduces and the published values in words, with no links.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from repro.specs import list_model_ids, list_spec_ids, load_spec, resolve_model

KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"
WORKFLOW_QUERY = "workflowType=machine_learning"
DEFAULT_UI = "http://127.0.0.1:5000"

# Titles of the source documents (../shared/seeds/README.md), by file name prefix.
DOCUMENTS = {
    "000": "Bachelor thesis, Heidelberg 2021: Semantic Image Synthesis with Score-Based Generative Models",
    "001": "Student conference paper, BME: Semantic Segmentation Mask-Guided Image Generation with Diffusion Models",
    "002": "Diploma thesis, NTUA 2023: Mitigating Exposure Bias in Discriminator Guided Diffusion Models",
    "003": "Short report: Generating Images with a Score-Based Diffusion Model",
    "004": "Lecture slides: Score-based Models",
}
_LINK = re.compile(r"(https?://|www\.)\S+")


def _no_links(text: str) -> str:
    return " ".join(_LINK.sub("", text).split())


def _document(source: Any) -> str:
    title = DOCUMENTS.get(source.document[:3])
    return f"{title} ({source.document})" if title else source.document


def _where(source: Any) -> str:
    parts = [f"Table {source.table}" if source.table else "", f"Figure {source.figure}" if source.figure else "",
             f"Section {source.section}" if source.section else ""]
    return ", ".join(p for p in parts if p)


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def published_summary(spec: Any, limit: int = 2500) -> str:
    """The published values in words: each cell's settings and numbers, then the protocol."""
    cells = []
    for cell in spec.paper.cells:
        cells.append(", ".join(f"{k} {_value(v)}" for k, v in cell.items()))
    text = ("Published values: " + "; ".join(cells) + ".") if cells else \
        "No table of values is published" + (f": {spec.paper.notes.strip()}" if spec.paper.notes else ".")
    if spec.paper.protocol:
        text += " Protocol: " + "; ".join(f"{k}: {v}" for k, v in spec.paper.protocol.items()) + "."
    text = _no_links(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def spec_description(spec: Any) -> str:
    return _no_links(
        f"{spec.title}. Reproduces {_where(spec.source)} of the {_document(spec.source)}. ") + " " + \
        published_summary(spec) + (
        f" Runs: one parent run per `repro run {spec.id}` (named {spec.id}-PROFILE, it carries the rendered "
        f"report), one child run per grid cell (named {spec.id} CELL [PROFILE], it carries the cell's metrics, "
        f"results file and figures).")


def model_description(cfg: Any) -> str:
    where = f" ({_where(cfg.source)} of the {_document(cfg.source)})" if cfg.source else ""
    return _no_links(f"Training runs of the model {cfg.id}: {cfg.title or cfg.kind}{where}. One run per "
                     f"trained (config, profile); specs that name this model reuse the trained weights.")


def experiment_tags(experiment: str) -> dict[str, str]:
    """The kind tag for every experiment; the description for a spec's or a model's experiment."""
    tags = {KIND_TAG: KIND}
    try:
        if experiment in list_spec_ids():
            tags[NOTE_TAG] = spec_description(load_spec(experiment))
        elif experiment.startswith("train-") and experiment[6:] in list_model_ids():
            tags[NOTE_TAG] = model_description(resolve_model(experiment[6:], "paper").config)
    except Exception:   # a description is a courtesy: an unreadable spec must not stop a run
        pass
    return tags


def child_run_name(key: str, tags: dict[str, Any]) -> str:
    """A cell's run name: spec id, cell key, profile (as the tracker's tags give them)."""
    spec, profile = tags.get("repro.spec"), tags.get("repro.profile")
    if not spec:
        return key
    return f"{spec} {key}" + (f" [{profile}]" if profile else "")


def report_line(spec_id: str, experiment_id: str) -> str:
    """A report's line linking the spec's experiment in `repro ui` (runs view)."""
    return (f"MLflow: [the runs of {spec_id}]({experiment_url(experiment_id)}) in the store where they "
            f"were recorded (`repro ui` serves it at that address).")


def experiment_url(experiment_id: str, base: str = DEFAULT_UI) -> str:
    """The link that opens an experiment on its runs (not MLflow 3's GenAI overview)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_QUERY}"


def store_description(uri: str) -> str:
    """Which store a URI names, in words (a relative SQLite path made absolute)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        state = "" if path.exists() else " (not created yet: it appears with the first run)"
        return f"sqlite:///{path}{state}"
    if "://" not in uri or uri.startswith("file:"):
        return f"{Path(uri.removeprefix('file://')).resolve()} (file store)"
    return uri
