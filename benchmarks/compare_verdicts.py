"""Compare the verdict words of two sets of rendered reports: do two runs reach the same verdicts?

    python benchmarks/compare_verdicts.py REPORTS_A REPORTS_B [--quiet]

REPORTS_A and REPORTS_B are `reports/` folders (of two clones after `make main`, or two
`REPRO_REPORTS`). In every `<spec>.md` present in either folder, each line that states a verdict
("held", "did not hold", "inconclusive", with an optional "(in part)") is a claim; claims are
matched in their order in the file, by the text before the verdict with the numbers taken out
(numbers may move between runs, the claim may not). With `comparison.csv` in both folders its
`verdict` column is compared row by row too (rows keyed by spec, cell, metric).

Prints each claim whose verdict differs, then a summary: claims compared, equal, different,
reports present on one side only. Exit 0 when every verdict is the same on both sides, 1 when
any differs or a report is missing from one side, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import folder  # noqa: E402  (the same folder argument as compare_runs.py)

VERDICT = re.compile(r"\b(did not hold|inconclusive|held)\b( \(in part\))?")
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?")


def claims(text: str) -> list[tuple[str, str]]:
    """(claim with numbers masked, verdict) for each line that states a verdict, in order.
    The verdict of a line is its last verdict phrase (a claim's text can quote the words before)."""
    out = []
    for line in text.splitlines():
        found = list(VERDICT.finditer(line))
        if not found:
            continue
        last = found[-1]
        verdict = last.group(1) + (last.group(2) or "")
        out.append((NUMBER.sub("#", line[:last.start()]).strip(), verdict))
    return out


def report_verdicts(folder: Path) -> dict[str, list[tuple[str, str]]]:
    return {p.name: claims(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.md"))
            if p.name != "README.md"}


def table_verdicts(folder: Path) -> dict[tuple[str, str, str], str] | None:
    path = folder / "comparison.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        return {(r["spec"], r["cell"], r["metric"]): r["verdict"] for r in csv.DictReader(f)}


def compare(dir_a: Path, dir_b: Path) -> dict:
    a, b = report_verdicts(dir_a), report_verdicts(dir_b)
    out: dict = {"compared": 0, "equal": 0, "differs": [], "only_a": sorted(set(a) - set(b)),
                 "only_b": sorted(set(b) - set(a)), "per_report": {}}
    for name in sorted(set(a) & set(b)):
        ca, cb = a[name], b[name]
        same = 0
        for i in range(max(len(ca), len(cb))):
            claim_a, verdict_a = ca[i] if i < len(ca) else ("<no claim>", "<absent>")
            claim_b, verdict_b = cb[i] if i < len(cb) else ("<no claim>", "<absent>")
            out["compared"] += 1
            if verdict_a == verdict_b and claim_a == claim_b:
                out["equal"] += 1
                same += 1
            else:
                out["differs"].append((name, i + 1, claim_a, verdict_a, verdict_b))
        out["per_report"][name] = (same, max(len(ca), len(cb)))
    ta, tb = table_verdicts(dir_a), table_verdicts(dir_b)
    if ta is not None and tb is not None:
        rows = sorted(set(ta) | set(tb))
        out["table"] = {"rows": len(rows),
                        "differs": [(k, ta.get(k, "<absent>"), tb.get(k, "<absent>")) for k in rows
                                    if ta.get(k) != tb.get(k)]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports_a", type=folder)
    ap.add_argument("reports_b", type=folder)
    ap.add_argument("--quiet", action="store_true", help="the summary only")
    args = ap.parse_args(argv)
    r = compare(args.reports_a, args.reports_b)
    if not args.quiet:
        for name, (same, total) in r["per_report"].items():
            if total:
                print(f"  {name:<22} {same}/{total} verdicts equal")
        for name, i, claim, va, vb in r["differs"]:
            print(f"differs  {name} claim {i}: {va!r} vs {vb!r}: {claim[:120]}")
        for name in r["only_a"]:
            print(f"only in {args.reports_a}: {name}")
        for name in r["only_b"]:
            print(f"only in {args.reports_b}: {name}")
    print(f"{r['compared']} verdicts in {len(r['per_report'])} reports: {r['equal']} equal, "
          f"{len(r['differs'])} differ; {len(r['only_a'])} reports only in A, {len(r['only_b'])} only in B")
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
