"""The code each DVC stage runs, found by reading imports, and its fingerprint file.

`fingerprints/<stage>.txt` holds the sha256 of every repro .py file the stage's commands run; a
stage depends on its fingerprint (dvc.yaml), so DVC re-runs it exactly when code it runs changed.
The `code` stage writes them (`python -m repro.commands.pipeline fingerprints`).

What a stage runs, file by file (docs DESIGN.md "Layout": a change to one runner touches only
the stages of the specs that use it):
- the modules that its commands (`repro VERB ...`, read from the stage's cmd) use in repro/cli.py:
  the names the command's function refers to, not everything cli.py imports (cli.py itself only
  parses and calls: it is no dependency);
- the modules loaded by name at run time, from the registries: a spec's runner module
  (repro.experiments.KINDS), the trainers of the models it
  loads (repro.trainers.MODEL_KINDS: a trained model is rebuilt by its trainer's `build_net`);
  a training stage's trainer and those of the models it learns from; every kind's report module
  for `reports`;
- each of those with every repro module it imports, transitively (function-level imports too,
  and the package __init__ files on the way), the dataset loaders left out: the data registry
  imports them all, a stage depends on the code of its own datasets only;
- not the cost estimate (COST_ONLY): `repro run` estimates the run's cost before it starts, but the
  estimate never changes a result (repro.plan.run_guard prints it, or refuses to start on a terminal
  without --yes, and catches every error of its own), so a spec stage does not re-run when the cost
  code changes. The reports print the estimates: their stage depends on it, every kind's cost
  module included (loaded by name, like the report modules).
"""
from __future__ import annotations

import ast
import fnmatch
import hashlib
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from repro.atomic import atomic_write_text
from repro.commands.stages import (clear_caches, reports_commands, resolve_model, resolve_spec, spec_commands,
                                   spec_datasets, spec_models, train_command, upstream_models)
from repro.data.registry import _MODULES as DATASET_MODULES
from repro.experiments import kind_files
from repro.specs import list_spec_ids, repo_root
from repro.trainers import trainer_file

FINGERPRINTS_DIR = "fingerprints"
CLI = "repro/cli.py"
# The cost-before-the-run code (plan/, the work units, each family's cost estimators), which a spec
# stage runs but whose output is no result: left out of the spec stages' code (module docstring).
COST_ONLY = ("repro/plan/*", "repro/work.py", "repro/experiments/cost.py", "repro/experiments/*/cost.py")


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _import_targets(node: ast.Import | ast.ImportFrom, package: list[str]) -> dict[str, str]:
    """Name bound by an import statement -> the dotted repro module it names (a `from pkg import
    name` binds the submodule pkg.name where there is one, else pkg)."""
    root = repo_root()
    if isinstance(node, ast.Import):
        return {(a.asname or a.name): a.name for a in node.names if a.name.split(".")[0] == "repro"}
    if node.level:   # relative: from the importing file's package
        base = package[: len(package) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    if mod.split(".")[0] != "repro":
        return {}
    return {(a.asname or a.name): (f"{mod}.{a.name}" if _module_file(root, f"{mod}.{a.name}") else mod)
            for a in node.names}


def _package(path: Path, root: Path) -> list[str]:
    return list(path.relative_to(root).parts[:-1])   # the package a relative import starts from


@lru_cache(maxsize=None)
def _imported_modules(path: Path, root: Path) -> frozenset[str]:
    """Dotted names of the repro modules a file imports anywhere (function-level imports too)."""
    package = _package(path, root)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(_import_targets(node, package).values())
    return frozenset(out)


def _dataset_files() -> dict[str, str]:
    """Dataset name -> its loader module (repo-relative)."""
    root = repo_root()
    return {name: Path(m.__file__).resolve().relative_to(root).as_posix() for name, m in DATASET_MODULES.items()}


def code_closure(*entry: str, leave_out: tuple[str, ...] = ()) -> list[str]:
    """Repo-relative .py files of the repro package that the entry files import, transitively
    (package __init__ files included, the dataset loaders excluded: see dataset_code); files
    matching a `leave_out` pattern (fnmatch) are neither listed nor followed."""
    root = repo_root()
    loaders = set(_dataset_files().values())
    seen: set[str] = set()
    todo = [root / e for e in entry]
    while todo:
        path = todo.pop()
        rel = path.relative_to(root).as_posix()
        if rel in seen or any(fnmatch.fnmatchcase(rel, pattern) for pattern in leave_out):
            continue
        seen.add(rel)
        parts = path.relative_to(root).parts
        for i in range(1, len(parts)):   # importing a.b.c runs a/__init__ and a/b/__init__
            init = root.joinpath(*parts[:i], "__init__.py")
            if init.is_file():
                todo.append(init)
        for dotted in _imported_modules(path, root):
            f = _module_file(root, dotted)
            if f is not None and f.relative_to(root).as_posix() not in loaders:
                todo.append(f)
    return sorted(seen)


def dataset_code(names: Iterable[str]) -> list[str]:
    """The code that loads (an embedded dataset: generates) each named dataset."""
    files = _dataset_files()
    return sorted({f for name in names for f in (files[name], *code_closure(files[name]))})


# --- what a `repro VERB` command runs: read from repro/cli.py -----------------------------------

def _command_name(fn: ast.FunctionDef) -> str | None:
    """The verb of a top-level `@app.command(...)` function (typer: the name given, else the
    function's name with dashes)."""
    for dec in fn.decorator_list:
        if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "command"
                and isinstance(dec.func.value, ast.Name) and dec.func.value.id == "app"):
            named = dec.args[0] if dec.args and isinstance(dec.args[0], ast.Constant) else None
            return str(named.value) if named is not None else fn.name.replace("_", "-")
    return None


@lru_cache(maxsize=None)
def command_modules(verb: str) -> frozenset[str]:
    """Dotted repro modules that `repro VERB` uses: the imports inside its function and the helpers
    of cli.py it calls, and the names of cli.py's top-level imports they refer to."""
    root = repo_root()
    path = root / CLI
    package = _package(path, root)
    tree = ast.parse(path.read_text(), filename=str(path))
    top_imports: dict[str, str] = {}
    functions: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top_imports.update(_import_targets(node, package))
        elif isinstance(node, ast.FunctionDef):
            functions[node.name] = node
    command = next((f for f in functions.values() if _command_name(f) == verb), None)
    if command is None:
        raise ValueError(f"{CLI} has no command `repro {verb}`")
    used: set[str] = set()
    todo, seen = [command], set()
    while todo:
        fn = todo.pop()
        if fn.name in seen:
            continue
        seen.add(fn.name)
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):   # runs when the command runs
                used.update(_import_targets(node, package).values())
            elif isinstance(node, ast.Name) and node.id in top_imports:
                used.add(top_imports[node.id])
            elif isinstance(node, ast.Name) and node.id in functions:
                todo.append(functions[node.id])
    return frozenset(used)


def command_verbs(commands: Iterable[str]) -> list[str]:
    """The `repro VERB` of each stage command (after the `--` of the stage-time wrapper)."""
    verbs = []
    for cmd in commands:
        tokens = shlex.split(cmd)
        if "--" in tokens:
            tokens = tokens[tokens.index("--") + 1:]
        if tokens[:1] != ["repro"] or len(tokens) < 2:
            raise ValueError(f"stage command {cmd!r} is not `repro VERB ...`: its code is unknown")
        verbs.append(tokens[1])
    return verbs


def commands_code(commands: Iterable[str], *loaded: str, leave_out: tuple[str, ...] = ()) -> list[str]:
    """The files that the stage's commands run: what their verbs use in cli.py, the modules `loaded`
    by name at run time (repo-relative files), and everything those import (but `leave_out`)."""
    root = repo_root()
    entry = {_module_file(root, m) for verb in command_verbs(commands) for m in command_modules(verb)}
    return code_closure(*sorted({p.relative_to(root).as_posix() for p in entry if p is not None} | set(loaded)),
                        leave_out=leave_out)


# --- per stage ----------------------------------------------------------------------------------

def _trainers(models: Iterable[str], profile: str) -> list[str]:
    return sorted({trainer_file(resolve_model(m, profile).config.kind) for m in models})


def stage_code(profile: str) -> dict[str, list[str]]:
    """Per stage, the repo-relative .py files it runs (see the module docstring)."""
    clear_caches()
    _imported_modules.cache_clear()
    command_modules.cache_clear()
    specs = list_spec_ids()
    out: dict[str, list[str]] = {}
    for m in sorted({m for s in specs for m in spec_models(s, profile)}):
        trainers = _trainers([m, *upstream_models(m, profile)], profile)
        data = dataset_code([resolve_model(m, profile).config.dataset.name])
        out[f"train_{m}"] = sorted(set(commands_code([train_command(m)], *trainers)) | set(data))
    for s in specs:
        kind = kind_files(resolve_spec(s, profile).spec.kind)
        loaded = [kind["runner"], *_trainers(spec_models(s, profile), profile)]
        data = dataset_code(spec_datasets(s, profile))
        out[s] = sorted(set(commands_code(spec_commands(s, profile), *loaded, leave_out=COST_ONLY)) | set(data))
    kinds = sorted({resolve_spec(s, profile).spec.kind for s in specs})
    # Each report shows the kind's paper-scale cost estimate (repro.plan, through its cost module).
    out["reports"] = commands_code(reports_commands(), *[kind_files(k)[m] for k in kinds for m in ("report", "cost")])
    return out


def fingerprint_file(stage: str) -> str:
    return f"{FINGERPRINTS_DIR}/{stage}.txt"


def write_fingerprints(profile: str, folder: Path | None = None) -> list[Path]:
    """fingerprints/<stage>.txt: the sha256 of every code file the stage runs, one per line; only
    files whose text changed are rewritten, those of stages no longer in the pipeline removed."""
    root = repo_root()
    folder = folder or root / FINGERPRINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    spec_ids = set(list_spec_ids())
    for stage, files in stage_code(profile).items():
        lines = [f"# Code that stage {stage} runs at profile {profile}, found from its imports by "
                 "repro/commands/fingerprints.py;",
                 "# sha256 of each file. Regenerated by the pipeline's `code` stage (do not edit)."]
        lines += [f"{hashlib.sha256((root / f).read_bytes()).hexdigest()}  {f}" for f in files]
        if stage in spec_ids:   # the spec's settings that change results (resolve's hash; not its claims)
            lines.append(f"{resolve_spec(stage, profile).hash}  experiments/{stage}.yaml (resolved at {profile})")
        text = "\n".join(lines) + "\n"
        path = folder / f"{stage}.txt"
        if not path.exists() or path.read_text() != text:
            atomic_write_text(path, text)
        written.append(path)
    for stale in set(folder.glob("*.txt")) - set(written):
        stale.unlink()
    return written
