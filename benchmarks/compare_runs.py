"""Compare two results trees cell by cell: are the numbers the same, bit for bit?

    python benchmarks/compare_runs.py DIR_A DIR_B [--ignore PATTERN ...] [--quiet]

DIR_A and DIR_B are results roots (`results/` of two clones, or two `REPRO_RESULTS`), or any
folders holding `<spec>/<profile>/cells/<key>.json` below them. Every cell file present in
either tree is compared:

- byte-identical: the files are equal as bytes;
- equal: equal once the fields that differ between any two runs are left out (VOLATILE: the
  wall time, the finish time, the MLflow run id) and any `--ignore` pattern (fnmatch on dotted
  field paths, e.g. 'values.*seconds*' for a timing benchmark's measured times);
- differs: some other field differs; each such field is listed with both values and |a - b|.
  Floats are compared by their bits (so NaN equals NaN and -0.0 differs from 0.0).

At the end, per spec and metric: how many cells differ and the largest |a - b| (how much a
figure moves, e.g. between two thread counts). Exit status 0 when every cell is equal, 1 when
any differs or is missing from one side, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any, Iterator

VOLATILE = ("seconds", "finished_at", "mlflow_run_id")


def cell_files(root: Path) -> dict[str, Path]:
    """{relative path: file} of every cell file below root."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("cells/*.json"))}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is not type(b):
        return False
    return a == b


def field_differences(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, value in a, value in b) for every leaf where a and b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                yield sub, a.get(k, "<absent>"), b.get(k, "<absent>")
            else:
                yield from field_differences(a[k], b[k], sub)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from field_differences(x, y, f"{path}.{i}")
    elif not _same(a, b):
        yield path, a, b


def _ignored(path: str, patterns: list[str]) -> bool:
    top = path.split(".", 1)[0]
    return top in VOLATILE or any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _gap(a: Any, b: Any) -> float | None:
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        d = abs(float(a) - float(b))
        return d if not math.isnan(d) else None
    return None


def compare(dir_a: Path, dir_b: Path, ignore: list[str]) -> dict[str, Any]:
    files_a, files_b = cell_files(dir_a), cell_files(dir_b)
    out: dict[str, Any] = {"byte_identical": [], "equal": [], "differs": {}, "only_a": [], "only_b": [],
                           "moves": {}}
    for rel in sorted(set(files_a) | set(files_b)):
        if rel not in files_b:
            out["only_a"].append(rel)
            continue
        if rel not in files_a:
            out["only_b"].append(rel)
            continue
        raw_a, raw_b = files_a[rel].read_bytes(), files_b[rel].read_bytes()
        if raw_a == raw_b:
            out["byte_identical"].append(rel)
            continue
        diffs = [d for d in field_differences(json.loads(raw_a), json.loads(raw_b)) if not _ignored(d[0], ignore)]
        if not diffs:
            out["equal"].append(rel)
            continue
        out["differs"][rel] = diffs
        spec = rel.split("/", 1)[0]
        for path, a, b in diffs:
            if path.startswith("values."):
                entry = out["moves"].setdefault((spec, path[len("values."):]), [0, 0.0])
                entry[0] += 1
                gap = _gap(a, b)
                if gap is not None:
                    entry[1] = max(entry[1], gap)
    return out


def folder(text: str) -> Path:
    """argparse type of a folder argument: a path that is not a folder is a usage error (exit 2)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a folder")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir_a", type=folder)
    ap.add_argument("dir_b", type=folder)
    ap.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                    help="dotted field paths to leave out (fnmatch), e.g. 'values.*seconds*'; repeatable")
    ap.add_argument("--quiet", action="store_true", help="the summary only")
    args = ap.parse_args(argv)
    r = compare(args.dir_a, args.dir_b, args.ignore)
    n = sum(len(r[k]) for k in ("byte_identical", "equal", "only_a", "only_b")) + len(r["differs"])
    if not args.quiet:
        for rel, diffs in r["differs"].items():
            print(f"differs  {rel}")
            for path, a, b in diffs:
                gap = _gap(a, b)
                print(f"    {path}: {a!r} vs {b!r}" + (f" (|a - b| = {gap:.3g})" if gap is not None else ""))
        for rel in r["only_a"]:
            print(f"only in {args.dir_a}: {rel}")
        for rel in r["only_b"]:
            print(f"only in {args.dir_b}: {rel}")
    print(f"{n} cells: {len(r['byte_identical'])} byte-identical, {len(r['equal'])} equal but for "
          f"{'/'.join(VOLATILE)}{' and ' + ', '.join(args.ignore) if args.ignore else ''}, "
          f"{len(r['differs'])} differ, {len(r['only_a'])} only in A, {len(r['only_b'])} only in B")
    if r["moves"]:
        print("values that differ: spec, metric, cells, max |a - b|")
        for (spec, metric), (count, gap) in sorted(r["moves"].items()):
            print(f"  {spec:<16} {metric:<28} {count:>4}  {gap:.4g}")
    return 0 if not (r["differs"] or r["only_a"] or r["only_b"]) else 1


if __name__ == "__main__":
    sys.exit(main())
