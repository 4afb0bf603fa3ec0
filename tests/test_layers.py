"""The package's structure, checked (docs DESIGN.md "Layout" and the rules under it): the layer
contracts of pyproject.toml ([tool.importlinter]), no import cycle, small modules, experiment
families with empty `__init__` files and no private modules, `repro.*` imports at the top.

Each failure lists every offending module or import, one per line."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "repro"
MAX_LINES = 400

# (module file, imported repro module) pairs that may stay inside a function; each with its reason.
# The CLI's verbs that load torch (through the engine) are imported when the verb runs, so that
# `repro --help`, `repro list` and `repro show` start in a fraction of a second without torch
# (tests/test_pipeline.py: test_help_and_list_do_not_import_torch_or_mlflow); the command
# modules themselves import repro at their top.
_HEAVY_VERB = "a heavy verb's module is loaded when the verb runs: `repro --help` imports no torch"
LOCAL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    ("repro/cli.py", module): _HEAVY_VERB
    for module in ("repro.plan", *(f"repro.commands.{verb}" for verb in (
        "run", "sweep", "train", "evaluate", "sample_semantic", "sample_ddpm", "doctor", "report", "compare",
        "dvc", "track")))
}


def _py_files(folder: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _fail_listing(title: str, lines: list[str]) -> None:
    """Fail with one offender a line (no assertion rewriting of the list)."""
    if lines:
        pytest.fail(f"{title}:\n  " + "\n  ".join(lines), pytrace=False)


def test_import_linter_contracts_are_kept():
    """`lint-imports` with pyproject.toml's contracts: the layers, no cycle between siblings, the
    experiment families independent of each other."""
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe) if exe.exists() else shutil.which("lint-imports") or "lint-imports", "--no-cache"]
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", COLUMNS="200")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        pytest.fail("lint-imports: contracts broken\n" + text[text.find("Contracts"):], pytrace=False)


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's strongly connected components of the import graph (iterative), those of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out)


def test_no_import_cycle_among_repro_modules():
    """Module by module, function-level imports included: a cycle is a layer violation (move the
    code to where it belongs) even where Python happens to import it without error."""
    graph = grimp.build_graph("repro", cache_dir=None)
    lines = []
    for component in _strongly_connected(graph):
        members = set(component)
        lines.append(f"cycle of {len(component)}: {', '.join(component)}")
        for importer in component:
            for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
                details = graph.get_import_details(importer=importer, imported=imported)
                where = ", ".join(f"l.{d['line_number']}" for d in details)
                lines.append(f"    {importer} -> {imported} ({where})")
    _fail_listing(f"{len(_strongly_connected(graph))} import cycle(s) among repro modules", lines)


def test_no_module_is_over_400_lines():
    over = [f"{_rel(p)}: {n} lines" for p in _py_files() if (n := len(p.read_text().splitlines())) > MAX_LINES]
    _fail_listing(f"{len(over)} module(s) over {MAX_LINES} lines (one idea each: split by idea)", over)


def test_no_private_module_in_experiments():
    """A kind's helpers are named for what they are, in its family folder (no `_helpers.py`)."""
    private = [_rel(p) for p in sorted((PACKAGE / "experiments").rglob("_*"))
               if "__pycache__" not in p.parts and p.name not in ("__init__.py", "__pycache__")]
    _fail_listing(f"{len(private)} `_`-prefixed module(s) under repro/experiments/", private)


def test_experiment_family_init_files_are_empty():
    """No code, no re-exports, no text (DESIGN.md: a family `__init__.py` stays empty): importing one
    runner must not import its siblings, so a change to one touches only its own specs' stages."""
    busy = [f"{_rel(init)}: {len(init.read_text().splitlines())} line(s)"
            for init in sorted((PACKAGE / "experiments").glob("*/__init__.py")) if init.read_text().strip()]
    _fail_listing(f"{len(busy)} experiment family __init__.py file(s) not empty", busy)


def _repro_module(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "repro"]
    if node.level:
        package = list(path.relative_to(REPO).parts[:-1])
        return [".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))]
    return [node.module] if node.module and node.module.split(".")[0] == "repro" else []


def _local_repro_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, function, imported module) of each repro import inside a function of the file."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name if function is None else f"{function}.{child.name}")
            elif isinstance(child, (ast.Import, ast.ImportFrom)) and function is not None:
                found.extend((child.lineno, function, m) for m in _repro_module(child, path))
            else:
                visit(child, function)

    visit(ast.parse(path.read_text(), filename=str(path)), None)
    return found


def test_repro_imports_sit_at_the_top_of_each_module():
    """Only heavy third-party libraries may be imported inside a function (DESIGN.md: the
    structure is visible at the top of each module)."""
    local = [f"{_rel(p)}:{line}: {module} (in {function})"
             for p in _py_files() for line, function, module in _local_repro_imports(p)
             if (_rel(p), module) not in LOCAL_IMPORTS_ALLOWED]
    modules = sorted({entry.split(":")[0] for entry in local})
    _fail_listing(f"{len(local)} repro import(s) inside functions, in {len(modules)} modules", local)
