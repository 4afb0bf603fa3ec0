"""`repro run SPEC` resolves its spec once and preflights it once (issue 25): the command resolves
at the edge and hands the ResolvedSpec down to the engine, which neither resolves nor checks again."""
from __future__ import annotations

import sys

import pytest


def _count_calls(monkeypatch, original, calls: list, skip: dict) -> None:
    """Wrap `original` wherever a repro module holds it (its home and every `from ... import` of it),
    recording the first argument of each call made while skip["on"] is false."""
    def counting(*args, **kwargs):
        if not skip["on"]:
            calls.append(args[0] if args else kwargs)
        return original(*args, **kwargs)

    for module in list(sys.modules.values()):
        if module is None or not getattr(module, "__name__", "").startswith("repro"):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                monkeypatch.setattr(module, attr, counting)


def test_repro_run_resolves_the_spec_once_and_preflights_it_once(workdir, monkeypatch, capsys):
    import repro.commands.run
    import repro.engine.preflight
    import repro.experiments
    import repro.specs
    from repro.cli import main

    skip = {"on": False}   # counts every call, the cost estimate's included
    checked, unchecked, preflights, guards = [], [], [], []
    _count_calls(monkeypatch, repro.experiments.resolve_spec, checked, skip)
    _count_calls(monkeypatch, repro.specs.resolve_spec, unchecked, skip)   # every resolution goes through it
    _count_calls(monkeypatch, repro.engine.preflight.preflight, preflights, skip)
    real_guard = repro.commands.run.run_guard

    def guard(resolved, *args, **kwargs):   # the cost estimate gets the ResolvedSpecs: it resolves nothing
        guards.append([r.id for r in resolved])
        return real_guard(resolved, *args, **kwargs)

    monkeypatch.setattr(repro.commands.run, "run_guard", guard)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "table5_3", "--profile", "test", "--device", "cpu", "--no-progress", "--yes",
              "--set", "grid.s0=[0.002]"])
        raise SystemExit(0)
    out = capsys.readouterr()
    assert exit_.value.code == 0, out.err
    assert "table5_3 [test]: 1 cells (1 run, 0 already finished)" in out.out
    assert checked == ["table5_3"] and unchecked == ["table5_3"]
    assert [r.id for r in preflights] == ["table5_3"]
    assert guards == [["table5_3"]]
