"""Damaged stored files (repro.stored): a garbled, empty or stray cell file, a garbled spec.json or a
model's meta.json is moved into quarantine/, named in one warning, and its work done again; the
resumed run's cells equal the undamaged run's. `repro doctor` names every damaged file and a
store that is not an SQLite database."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro import results

SPEC, PROFILE = "fig5_9", "test"


def _cli(argv, capsys) -> tuple[int, str, str]:
    from repro.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def _computed(rec: dict) -> dict:
    return {k: rec.get(k) for k in ("cell", "key", "values", "extra", "seed", "spec_hash")}


@pytest.fixture
def finished(workdir, capsys) -> dict[str, dict]:
    code, _, err = _cli(["run", SPEC, "--profile", PROFILE, "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    cells = {c["key"]: _computed(c) for c in results.read_cells(SPEC, PROFILE)}
    assert len(cells) == 4
    return cells


def test_damaged_cells_and_spec_json_are_set_aside_and_redone(workdir, finished, capsys):
    run = results.run_dir(SPEC, PROFILE)
    cells = run / "cells"
    damage = {cells / "t=0.4.json": b'{"cell": {"t": 0.4}, "valu', cells / "t=0.8.json": b"",
              cells / "notes.json": json.dumps({"hello": 1}).encode(), run / "spec.json": b"\xff\xfe garbage"}
    for path, data in damage.items():
        path.write_bytes(data)
    code, out, _ = _cli(["doctor"], capsys)
    named = [ln for ln in out.splitlines() if ln.startswith("damaged")]
    assert code == 0 and sorted(ln.split()[1].rstrip(":") for ln in named) == sorted(str(p) for p in damage)
    assert any("an empty file" in ln for ln in named) and any("not a record of this kind (no 'cell', 'values')" in ln
                                                                for ln in named)

    code, out, err = _cli(["run", SPEC, "--profile", PROFILE, "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: damaged file")]
    assert sorted(ln.split()[3].rstrip(":") for ln in warnings) == sorted(str(p) for p in damage)
    assert "(2 run, 2 already finished)" in out
    assert {c["key"]: _computed(c) for c in results.read_cells(SPEC, PROFILE)} == finished
    kept = sorted((run / "quarantine").iterdir())
    assert len(kept) == 4 and sorted(p.read_bytes() for p in kept) == sorted(damage.values())   # nothing deleted
    assert json.loads((run / "spec.json").read_text())["hash"]   # written again
    for argv in (["report", SPEC], ["compare", SPEC, "--profile", PROFILE]):
        code, _, err = _cli(argv, capsys)
        assert code == 0 and "Traceback" not in err, err
    out = _cli(["doctor"], capsys)[1]
    assert not [ln for ln in out.splitlines() if ln.startswith("damaged")] and "none damaged" in out


def test_a_damaged_meta_json_is_set_aside_and_the_model_restored(workdir, finished, capsys):
    meta = next(Path("artifacts").glob("noisy_unet/test-*/meta.json"))
    before = json.loads(meta.read_text())
    meta.write_text('{"sha256": ')
    code, out, _ = _cli(["doctor"], capsys)
    assert any(ln.startswith(f"damaged     {meta}: not JSON") for ln in out.splitlines())
    code, out, err = _cli(["train", "noisy_unet", "--profile", PROFILE, "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    assert f"warning: damaged file {meta}: not JSON" in err
    assert json.loads(meta.read_text())["sha256"] == before["sha256"]   # the same weights, from its checkpoint
    assert [p.read_text() for p in (meta.parent / "quarantine").iterdir()] == ['{"sha256": ']


def test_doctor_names_a_store_that_is_not_sqlite(workdir, capsys):
    (workdir / "mlflow.db").write_bytes(b"this is not a database")
    code, out, _ = _cli(["doctor"], capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("mlflow      sqlite"))
    assert code == 0 and "DAMAGED:" in line and f"{workdir / 'mlflow.db'} is not an SQLite database" in line


def test_doctor_names_a_store_whose_schema_another_mlflow_made(workdir, capsys):
    # a store made by an older MLflow (its alembic revision set back to MLflow's first one): doctor says
    # which revision it has and which this MLflow expects, and what to do; a current store is fine
    import sqlite3

    from repro.tracking.store import prepare_store

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    prepare_store(uri)
    code, out, _ = _cli(["doctor"], capsys)
    assert code == 0 and next(ln for ln in out.splitlines() if ln.startswith("mlflow      sqlite")) == f"mlflow      {uri}"
    with sqlite3.connect(workdir / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")   # MLflow 1.x's first revision
    code, out, _ = _cli(["doctor"], capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("mlflow      sqlite"))
    assert code == 0 and "DAMAGED: its schema is at revision 451aebb31d03, MLflow " in line
    assert f"`mlflow db upgrade {uri}`" in line


def test_an_atomic_write_onto_a_folder_or_under_a_file_is_one_line(tmp_path):
    # the last guard of every writer: a path that is a folder, or one below a file, is named, nothing made
    from repro.atomic import atomic_write_text
    from repro.errors import UserError

    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("kept")
    with pytest.raises(UserError, match=r"cannot write .*folder: it is a folder"):
        atomic_write_text(tmp_path / "folder", "x")
    with pytest.raises(UserError, match=r"cannot write .*file/a/b.json: .*/file is a file, not a folder"):
        atomic_write_text(tmp_path / "file" / "a" / "b.json", "x")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "folder"]
    assert (tmp_path / "file").read_text() == "kept"
