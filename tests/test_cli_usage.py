"""Every command-line mistake: Typer's usage line and the problem, exit 2, nothing written, no MLflow run.

The cases are derived from the app itself (every command and subcommand, every option), so a
command added later is covered without editing this file.
"""
from __future__ import annotations

import enum
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer
import typer.main

from repro import cli

REPO = Path(__file__).resolve().parent.parent


def _leaf_commands():
    """(path, click command) for every command of the app, subcommands included."""
    def walk(cmd, path):
        ctx = typer.Context(cmd, info_name=path[-1] if path else "repro")
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), [*path, name])
        else:
            yield path, cmd
    return list(walk(typer.main.get_command(cli.app), []))


def _annotation(param):
    ann = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if typing.get_origin(ann) is typing.Union:   # Optional[int] -> int
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    return ann


def _is_flag(param) -> bool:
    return bool(getattr(param, "is_flag", False) or getattr(param, "count", False))


def _value_kind(param) -> str | None:
    """'number' / 'choice' for options whose value is type-checked, else None."""
    ann = _annotation(param)
    if ann in (int, float):
        return "number"
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "choice"
    name = getattr(getattr(param, "type", None), "name", "")   # click types (older Typer)
    if name in ("integer", "float", "integer range", "float range"):
        return "number"
    if name == "choice":
        return "choice"
    return None


def _required_args(cmd, skip=None) -> list[str]:
    """Placeholder values for the command's required arguments and options (except `skip`)."""
    out: list[str] = []
    for p in cmd.params:
        if p is skip or not p.required:
            continue
        if p.param_type_name == "argument":
            out += ["x"] * max(1, p.nargs)
        else:
            out += [p.opts[0], "x"]
    return out


def _cases():
    cases = []
    for path, cmd in _leaf_commands():
        name = " ".join(path)
        base = _required_args(cmd)
        cases.append(pytest.param([*path, *base, "--no-such-option"], id=f"{name}: unknown option"))
        for p in cmd.params:
            if not p.required:
                continue
            what = "argument" if p.param_type_name == "argument" else f"option {p.opts[0]}"
            cases.append(pytest.param([*path, *_required_args(cmd, skip=p)], id=f"{name}: missing {what}"))
        for p in cmd.params:
            if p.param_type_name != "option" or _is_flag(p):
                continue
            opt = p.opts[0]
            rest = _required_args(cmd, skip=p)
            cases.append(pytest.param([*path, *rest, opt], id=f"{name}: {opt} without a value"))
            kind = _value_kind(p)
            if kind is not None:
                bad = "abc" if kind == "number" else "no-such-choice"
                cases.append(pytest.param([*path, *rest, opt, bad], id=f"{name}: {opt} {bad}"))
            if opt == "--set":
                cases.append(pytest.param([*path, *rest, "--set", "fixed.steps"], id=f"{name}: --set without ="))
                cases.append(pytest.param([*path, *rest, "--set", "=3"], id=f"{name}: --set with empty key"))
        arguments = [p for p in cmd.params if p.param_type_name == "argument"]
        if all(p.nargs == 1 for p in arguments):   # every argument given, then one too many
            given = ["x"] * len(arguments) + [v for p in cmd.params if p.required and p not in arguments
                                               for v in (p.opts[0], "x")]
            cases.append(pytest.param([*path, *given, "extra-argument"], id=f"{name}: extra argument"))
    # sorted: a set's order changes with PYTHONHASHSEED, and pytest-xdist workers must collect the same list
    for group_path in sorted({tuple(p[:-1]) for p, _ in _leaf_commands()}):
        cases.append(pytest.param([*group_path, "no-such-command"],
                                  id=f"{' '.join(group_path) or 'repro'}: unknown command"))
    return cases


@pytest.fixture
def bare_dir(tmp_path, monkeypatch):
    """An empty working directory with MLflow's default store (./mlflow.db) and default outputs."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "REPRO_RESULTS", "REPRO_ARTIFACTS", "REPRO_REPORTS", "REPRO_NO_MLFLOW"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _run_main(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_the_cases_cover_every_command():
    ids = {c.id for c in _cases()}
    for path, _ in _leaf_commands():
        assert f"{' '.join(path)}: unknown option" in ids
    # the four mistakes of the issue are among them
    assert {"run: missing argument", "run: unknown option", "run: --set without a value",
            "ui: --port abc", "run: --set without ="} <= ids


@pytest.mark.parametrize("argv", _cases())
def test_usage_mistake(argv, bare_dir, capsys):
    code, out, err = _run_main(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert out == ""
    assert len(lines) == 2, err
    assert lines[0].startswith("Usage: repro")
    assert lines[1].startswith("error: ")
    assert "Traceback" not in err and "crashed" not in err
    assert list(bare_dir.iterdir()) == []   # nothing written: no results/, no mlflow.db


@pytest.mark.parametrize("argv", [["run", "no_such_spec"], ["ui", "--port", "0"], ["train", "no_such_model"],
                                  ["show", "no_such_spec"], ["report", "no_such_spec"]],
                         ids=" ".join)
def test_user_error_in_a_command_is_one_line(argv, bare_dir, capsys):
    code, out, err = _run_main(argv, capsys)
    assert code == 2
    assert [line for line in err.splitlines() if line.strip()] == [err.strip()]
    assert err.startswith("error: ")
    assert list(bare_dir.iterdir()) == []


def test_no_arguments_shows_the_help(bare_dir, capsys):
    code, out, err = _run_main([], capsys)
    assert code == 2
    assert "Usage: repro" in out + err and "run" in out + err   # Typer's rich help may print to stdout
    assert list(bare_dir.iterdir()) == []


def test_help_exits_0(bare_dir, capsys):
    try:
        cli.main(["run", "--help"])
        code = 0
    except SystemExit as e:
        code = e.code
    out, _ = capsys.readouterr()
    assert code in (0, None) and "Usage: repro run" in out


class _ForeignUsageError(Exception):
    """An exception of some other packaging of click: no shared base class with any we import."""


_ForeignUsageError.__name__ = "ClickException"


def _click_errors():
    import click

    yield pytest.param(click.UsageError("bad thing"), 2, id="click package")
    yield pytest.param(typer.BadParameter("bad thing"), 2, id="typer's bundled click")
    foreign = _ForeignUsageError("bad thing")
    foreign.exit_code = 2
    foreign.format_message = lambda: "bad thing"
    yield pytest.param(foreign, 2, id="foreign class named ClickException")
    yield pytest.param(click.FileError("f.txt", "no access"), 1, id="click FileError")


@pytest.mark.parametrize("exc, code", _click_errors())
def test_click_exceptions_of_any_packaging(exc, code, monkeypatch, bare_dir, capsys):
    def raising_app(*a, **k):
        raise exc

    monkeypatch.setattr(cli, "app", raising_app)
    got, out, err = _run_main(["run"], capsys)
    assert got == code
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert ("bad thing" in err) or ("no access" in err)


def test_an_exit_code_returned_by_typer_is_the_process_exit_code(monkeypatch, bare_dir, capsys):
    # non-standalone Typer returns typer.Exit's code instead of raising it
    monkeypatch.setattr(cli, "app", lambda *a, **k: 3)
    code, _, _ = _run_main(["run"], capsys)
    assert code == 3


@pytest.mark.parametrize("argv", [["run"], ["run", "fig5_9", "--bogus"], ["run", "fig5_9", "--set"],
                                  ["ui", "--port", "abc"]], ids=" ".join)
def test_console_script(argv, tmp_path):
    """The installed entry point, as a new user types it (the issue's four examples)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REPRO_RESULTS")}
    exe = Path(sys.executable).parent / "repro"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from repro.cli import main; main()"]
    proc = subprocess.run([*cmd, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("Usage: repro ") and lines[1].startswith("error: ")
    assert list(tmp_path.iterdir()) == []
