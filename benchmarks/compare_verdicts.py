"""Compare the claim verdicts of two sets of rendered reports: do two runs reach the same verdicts?

    python benchmarks/compare_verdicts.py REPORTS_A REPORTS_B [--quiet]

Each folder is a `reports/` folder (a clone's, or one written with `REPRO_REPORTS`) holding
`claims.csv` (`repro compare all --claims`): rows are keyed by spec, claim id and profile, and
their verdicts (held / did not hold / inconclusive / not judged / not run) compared, with the share
of agreeing resamples beside them. `comparison.csv`'s verdict column (paper-value agreement) is
compared row by row too, when both folders have it.

Exit 0 when every verdict is the same on both sides, 1 when any differs or a claim is on one
side only, 2 on a usage error. Used to check that a claim's verdict does not flip between two
runs of the same commit (e.g. torch on 1 vs 2 threads, README "Verdicts across runs").
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import folder  # noqa: E402  (the same folder argument as compare_runs.py)


def _rows(path: Path, key) -> dict | None:
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        return {key(r): r for r in csv.DictReader(f)}


def claim_verdicts(reports: Path) -> dict[tuple[str, str, str], dict]:
    rows = _rows(reports / "claims.csv", lambda r: (r["spec"], r["claim_id"], r["profile"]))
    if rows is None:
        raise SystemExit(f"error: {reports}/claims.csv not found (write it with `repro compare all --claims "
                         f"--out {reports}/claims.csv`)")
    return rows


def compare(dir_a: Path, dir_b: Path) -> dict:
    a, b = claim_verdicts(dir_a), claim_verdicts(dir_b)
    both = sorted(set(a) & set(b))
    out: dict = {"compared": len(both), "only_a": sorted(set(a) - set(b)), "only_b": sorted(set(b) - set(a)),
                 "differs": [(k, a[k]["verdict"], b[k]["verdict"], a[k]["share"], b[k]["share"]) for k in both
                             if a[k]["verdict"] != b[k]["verdict"]],
                 "same": [(k, a[k]["verdict"], a[k]["share"], b[k]["share"]) for k in both
                          if a[k]["verdict"] == b[k]["verdict"]]}
    key = lambda r: (r["spec"], r["cell"], r["metric"])  # noqa: E731
    ta, tb = _rows(dir_a / "comparison.csv", key), _rows(dir_b / "comparison.csv", key)
    if ta is not None and tb is not None:
        rows = sorted(set(ta) | set(tb))
        get = lambda t, k: t[k]["verdict"] if k in t else "<absent>"  # noqa: E731
        out["table"] = {"rows": len(rows), "differs": [(k, get(ta, k), get(tb, k)) for k in rows
                                                       if get(ta, k) != get(tb, k)]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports_a", type=folder)
    ap.add_argument("reports_b", type=folder)
    ap.add_argument("--quiet", action="store_true", help="the summary only")
    args = ap.parse_args(argv)
    r = compare(args.reports_a, args.reports_b)
    if not args.quiet:
        for k, v, sa, sb in r["same"]:
            print(f"  same     {'/'.join(k):<58} {v:<14} share {sa or '–'} vs {sb or '–'}")
        for k, va, vb, sa, sb in r["differs"]:
            print(f"  DIFFERS  {'/'.join(k):<58} {va!r} ({sa or '–'}) vs {vb!r} ({sb or '–'})")
        for k in r["only_a"]:
            print(f"only in {args.reports_a}: {'/'.join(k)}")
        for k in r["only_b"]:
            print(f"only in {args.reports_b}: {'/'.join(k)}")
    print(f"{r['compared']} claim verdicts compared: {r['compared'] - len(r['differs'])} equal, "
          f"{len(r['differs'])} differ; {len(r['only_a'])} only in A, {len(r['only_b'])} only in B")
    bad = bool(r["differs"] or r["only_a"] or r["only_b"])
    if "table" in r:
        t = r["table"]
        print(f"comparison.csv: {t['rows']} rows, {len(t['differs'])} with a different verdict")
        if not args.quiet:
            for key, va, vb in t["differs"]:
                print(f"    {'/'.join(key)}: {va!r} vs {vb!r}")
        bad = bad or bool(t["differs"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
