"""Work units: what a cell or a model training costs, counted before anything runs.

A `Work` item is one kind of network call repeated: `images` image-evaluations of one network in
one mode, `batch` images per call. The units are the ones that decide the cost (issue 13):
network evaluations (NFE x samples), a guided evaluation's extra forward + backward of the guide,
training steps x batch, feature-extraction images. The counts below are pure arithmetic on the
samplers' and trainers' own rules (cited where they are defined); no network is built.
The bottom of the package: it imports nothing of repro, so every kind's cost module
(repro.experiments.<family>.cost) and the plan (repro.plan) can speak it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# What a call does, i.e. what the calibration times for it:
EVAL = "eval"          # a forward pass without gradients (a score / denoiser / segmenter evaluation)
GRAD = "grad"          # forward + backward to the input (a guidance term: segmenter, classifier, discriminator)
TRAIN = "train"        # one optimizer step: forward, backward, parameter update
FEATURES = "features"  # feature extraction (Inception pool3, the evaluator's features, segmenting samples)
OPS = (EVAL, GRAD, TRAIN, FEATURES)

# Work that is not a network's, timed by the calibration as if it were one (repro.plan.calibrate):
LOOP = "train_loop"            # the training loop's own per-step cost (time_loop_step)
SIGMA_PAIRS = "sigma_max_pairs"   # thesis Sec. 5.4.3's sigma_max estimate: random image-pair distances
SIGMA_CHUNK = 4096   # repro.diffusion.schedules.estimate_sigma_max's pairs per chunk


@dataclass(frozen=True)
class NetRef:
    """A network the calibration can build: a model config by name (at a profile, with the run's
    settings) or a fixed extractor (`inception`)."""

    name: str                    # model name, or "inception"
    profile: str | None = None   # None for fixed extractors
    hash: str | None = None      # the resolved model config's hash (settings change the network)
    overrides: tuple = ()        # the run's --set settings of the model, as sorted (key, value) pairs
    resolution: tuple[int, int] | None = None   # H, W of the images it sees

    @property
    def key(self) -> str:
        if self.profile is None:
            res = "x".join(map(str, self.resolution)) if self.resolution else "native"
            return f"{self.name}@{res}"
        return f"{self.name}/{self.profile}-{self.hash}"


@dataclass(frozen=True)
class Work:
    net: NetRef
    op: str
    images: int        # image-evaluations (calls x images per call)
    batch: int         # images per call
    what: str          # in words, e.g. "PC sampling: 2000 steps x 2 evaluations x 800 images"

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"unknown op {self.op!r}")

    @property
    def calls(self) -> int:
        return math.ceil(self.images / self.batch) if self.images else 0


@dataclass
class CellWork:
    """The work of one cell (or one model training); `unknown` names what cannot be counted."""

    items: list[Work] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, net: NetRef, op: str, images: int, batch: int, what: str) -> None:
        if images > 0:
            self.items.append(Work(net, op, int(images), max(1, int(min(batch, images))), what))

    def extend(self, other: "CellWork") -> None:
        self.items += other.items
        self.unknown += other.unknown
        self.notes += other.notes

    def evaluations(self) -> dict[str, int]:
        """Image-evaluations per op."""
        out: dict[str, int] = {}
        for w in self.items:
            out[w.op] = out.get(w.op, 0) + w.images
        return out


# ----------------------------------------------------------------------------- counting rules

def pc_nfe(steps: int, n_corrector_steps: int = 1, predictor: bool = True, corrector: bool = True) -> int:
    """Score evaluations of predictor-corrector sampling per sample (thesis Alg. 3): at each of the N
    times, n_corrector Langevin steps and one predictor step, one evaluation each."""
    return steps * ((n_corrector_steps if corrector else 0) + (1 if predictor else 0))


def edm_nfe(steps: int, solver: str) -> int:
    """EDM Alg. 1/2: Euler evaluates once per step; Heun adds a correction on every step but the
    last (sigma = 0), so NFE = 2N - 1."""
    return steps if solver == "euler" else 2 * steps - 1


def training_steps(epochs: int, n_items: int, batch_size: int, max_steps: int | None = None) -> int:
    """Optimizer steps of `epochs` passes over n_items at batch b: E x ceil(D / b) (the last batch of
    an epoch is kept, repro.train.sampler), capped by max_steps."""
    steps = epochs * math.ceil(n_items / batch_size)
    return steps if max_steps is None else min(steps, max_steps)
