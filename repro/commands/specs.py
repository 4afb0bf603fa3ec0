"""The specs a command names, and what `repro list` / `repro show` print about them."""
from __future__ import annotations

from typing import Any, Iterator

import yaml

from repro.experiments import resolve_spec, runner_module
from repro.specs import list_spec_ids, load_spec


def spec_ids(arg: str) -> list[str]:
    """`all` -> every spec id; a spec id -> [it] (an unknown id or bad YAML: UserError)."""
    if arg == "all":
        return list_spec_ids()
    load_spec(arg)
    return [arg]


def list_lines() -> Iterator[str]:
    """`repro list`: one line per spec: id, title, kind, source."""
    rows = []
    for spec_id in list_spec_ids():
        spec = load_spec(spec_id)
        rows.append((spec.id, spec.title, spec.source.cite(), spec.kind))
    if not rows:
        yield "no specs found"
        return
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    w[1] = min(w[1], 70)
    for r in rows:
        title = r[1] if len(r[1]) <= w[1] else r[1][: w[1] - 1] + "…"
        yield f"{r[0]:<{w[0]}}  {title:<{w[1]}}  {r[3]:<{w[3]}}  {r[2]}"


def show_lines(spec_id: str, profile: str, overrides: dict[str, Any]) -> Iterator[str]:
    """`repro show`: the spec resolved at a profile, then the published values."""
    resolved = resolve_spec(spec_id, profile, overrides)
    body = resolved.spec.model_dump(mode="json", exclude={"profiles", "paper"})
    yield f"# {spec_id} at profile {profile} (hash {resolved.hash})"
    yield yaml.safe_dump(body, sort_keys=False).rstrip()
    paper = resolved.spec.paper
    yield "\n# published values" + (f" ({', '.join(f'{k}: {v}' for k, v in paper.protocol.items())})"
                                     if paper.protocol else "")
    if paper.notes:
        yield paper.notes.strip()
    for cell in paper.cells:
        yield "  " + ", ".join(f"{k}={v}" for k, v in cell.items())
    # a kind may add lines (e.g. the model's parameter count)
    yield from getattr(runner_module(resolved.spec.kind), "describe", lambda r: [])(resolved)
