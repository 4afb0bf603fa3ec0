"""How `repro` ends when a command does not return normally: a usage mistake (Typer's usage line and
the problem), a crash (the traceback, then one line), SIGTERM (one line, exit 143). Used by
repro.cli.main; imports no torch."""
from __future__ import annotations

import sys
import traceback
from typing import Any, List

import typer

from repro import signals

def _context_for(app: Any, argv: List[str]):
    """The context of the (sub)command that argv names, for errors raised without one (e.g. an
    option given without its value): its usage line is still the one to show."""
    try:
        cmd = typer.main.get_command(app)
        ctx = typer.Context(cmd, info_name="repro")
        for token in argv:
            sub = cmd.get_command(ctx, token) if hasattr(cmd, "get_command") and not token.startswith("-") else None
            if sub is None:
                break
            cmd, ctx = sub, typer.Context(sub, info_name=token, parent=ctx)
        return ctx
    except Exception:  # the usage line is a courtesy; the error line is what matters
        return None


def usage_error_lines(app: Any, e: BaseException, argv: List[str]) -> list[str]:
    """Typer's usage line and the problem, one line each. Found by what the exception does
    (exit_code, format_message, the failing context), not by its class: Typer has raised plain
    click's exceptions and, since it bundles click, its own copies, which are not subclasses."""
    ctx = getattr(e, "ctx", None) or _context_for(app, argv)
    lines = []
    if ctx is not None and callable(getattr(ctx, "get_usage", None)):
        lines.append(" ".join(ctx.get_usage().split()))
    problem = " ".join(str(e.format_message()).split())
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and getattr(ctx, "command_path", None) else ""
    lines.append(f"error: {problem}{hint}")
    return lines


def is_click_exception(e: BaseException) -> bool:
    return (isinstance(getattr(e, "exit_code", None), int) and callable(getattr(e, "format_message", None))
            and any(c.__name__ in ("ClickException", "TyperException") for c in type(e).__mro__))


TRACKED_COMMANDS = ("run", "train", "sweep")   # the commands that open MLflow runs and write cells


def crashed(e: BaseException, argv: List[str]) -> None:
    traceback.print_exception(e)
    command = next((a for a in argv if not a.startswith("-")), "")
    if command in TRACKED_COMMANDS:
        echo_err(f"{command} crashed: {type(e).__name__}: {e}. Finished cells are kept; an MLflow run it opened "
                  f"is marked FAILED.")
    else:
        echo_err(f"repro {command} crashed: {type(e).__name__}: {e}".rstrip())
    sys.exit(1)


RESUME = "finished cells are kept, run the same command again to resume"


def terminated_exit() -> None:
    echo_err(f"terminated (SIGTERM); {RESUME}")
    sys.exit(signals.EXIT_CODE)


def echo_err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
