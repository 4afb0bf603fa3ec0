"""The five source documents as people cite them: author, title, year and kind, by file name.

Every spec's `source.document` and every claim's `place.document` is one of these files under
`../shared/seeds/` (their README says which tables come from which). Reports and the README name a
document by this reference, never by its file name alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Reference:
    short: str     # how a sentence names it: "Küchler (2021)"
    author: str
    title: str
    year: str
    kind: str      # bachelor thesis, conference paper, ...

    def full(self) -> str:
        return f"{self.author}, *{self.title}*, {self.kind}, {self.year}"


DOCUMENTS: dict[str, Reference] = {
    "000_6e84dfabea47f45d.txt": Reference(
        "Küchler (2021)", "Tim Küchler", "Semantic Image Synthesis with Score-Based Generative Models", "2021",
        "Bachelor thesis in Physics, Heidelberg University (Heidelberg Collaboratory for Image Processing)"),
    "001_c5ab23c6a8dde0aa.txt": Reference(
        "Bozsó (2023)", "Katica Bozsó", "Semantic Segmentation Mask-Guided Image Generation with Diffusion Models",
        "2023", "Students' Scientific Conference (TDK) paper, Budapest University of Technology and Economics"),
    "002_3fb1e941b5731827.txt": Reference(
        "Teonis (2023)", "Eleftherios G. Teonis", "Mitigating Exposure Bias in Discriminator Guided Diffusion Models",
        "2023", "Diploma thesis, National Technical University of Athens (School of Electrical and Computer "
        "Engineering)"),
    "003_91946acc88ff1384.txt": Reference(
        "Anonymous short report (n.d.)", "author not stated", "Generating Images with a Score-Based Diffusion Model",
        "year not stated", "short report"),
    "004_07988ab1aeeb4faa.txt": Reference(
        "Banerjee (2021)", "Arindam Banerjee", "Score-based Models (SBM 2)", "2021",
        "lecture slides, CS 598: Deep Generative and Dynamical Models (16 November 2021)"),
}


def reference(document: str) -> Reference | None:
    return DOCUMENTS.get(document)


def short_cite(document: str) -> str:
    """'Küchler (2021)' for a known document file, else the file name."""
    ref = DOCUMENTS.get(document)
    return ref.short if ref else document


def seeds_dir() -> Path | None:
    """The folder of the five documents: $REPRO_SEEDS, else `shared/seeds` beside the repository or
    beside a folder above it (a git worktree); None where they are not on this machine."""
    if os.environ.get("REPRO_SEEDS"):
        return Path(os.environ["REPRO_SEEDS"])
    root = Path(__file__).resolve().parents[2]
    for base in root.parents:
        if (base / "shared" / "seeds").is_dir():
            return base / "shared" / "seeds"
    return None
