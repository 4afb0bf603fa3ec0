"""Every claim in the specs: its quote stands verbatim in the cited document at the cited lines, the
published values stay the documents', and the claims cover all five documents."""
from __future__ import annotations

import pytest

from repro.specs import list_spec_ids, load_spec, repo_root
from repro.specs.references import DOCUMENTS, seeds_dir

SEEDS = seeds_dir()
ALL = [(spec_id, c) for spec_id in list_spec_ids() for c in load_spec(spec_id).claims]


def normalised(text: str) -> str:
    return " ".join(text.split())


def test_the_specs_check_at_least_40_claims_over_all_five_documents():
    assert len(ALL) >= 40, f"{len(ALL)} claims"
    assert {c.place.document for _, c in ALL} == set(DOCUMENTS)


def test_claims_cite_a_known_document_and_name_known_specs():
    ids = set(list_spec_ids())
    for spec_id, c in ALL:
        assert c.place.document in DOCUMENTS, f"{spec_id}/{c.id}: unknown document {c.place.document}"
        for sel in (c.cells, c.a, c.b, c.c, c.d):
            assert sel is None or sel.spec is None or sel.spec in ids, f"{spec_id}/{c.id}: unknown spec {sel.spec}"


@pytest.mark.skipif(SEEDS is None, reason="the source documents (../shared/seeds) are not here")
@pytest.mark.parametrize("spec_id,claim", ALL, ids=[f"{s}-{c.id}" for s, c in ALL])
def test_quote_is_verbatim_at_its_lines(spec_id, claim):
    lines = (SEEDS / claim.place.document).read_text(encoding="utf-8").splitlines()
    first, last = claim.place.lines
    assert 1 <= first <= last <= len(lines), f"lines {first}-{last} outside the document ({len(lines)} lines)"
    assert normalised(claim.quote) in normalised(" ".join(lines[first - 1:last])), (
        f"{spec_id}/{claim.id}: quote not found in {claim.place.document} lines {first}-{last}")


def test_published_values_carry_no_outside_numbers():
    # values from other papers live in `external:` with their own citation, never in `paper.cells`
    for spec_id in list_spec_ids():
        spec = load_spec(spec_id)
        for cell in spec.paper.cells:
            outside = [k for k in cell if k.startswith(("park2019", "external"))]
            assert not outside, f"{spec_id}: {outside} in paper.cells"


def test_no_verdict_is_computed_outside_the_engine():
    # the experiment families compute cells and describe them; held / did not hold / inconclusive
    # come from repro.claims alone (the renderer appends its table to every report)
    import re

    words = re.compile(r"did not hold|inconclusive|\bheld\b(?!-out)")
    found = []
    for path in sorted((repo_root() / "repro" / "experiments").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if words.search(line):
                found.append(f"{path.relative_to(repo_root())}:{n}: {line.strip()[:80]}")
    assert found == [], "\n".join(found)


def test_readme_names_every_document_by_its_reference():
    readme = (repo_root() / "README.md").read_text(encoding="utf-8")
    for doc, ref in DOCUMENTS.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| {doc} |")), None)
        assert row is not None and ref.title in row, doc
        assert ref.author in row or ref.author == "author not stated", doc
