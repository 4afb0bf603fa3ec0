"""Work units: what a cell or a model training costs, counted before anything runs.

A `Work` item is one kind of network call repeated: `images` image-evaluations of one network in
one mode, `batch` images per call. The units are the ones that decide the cost (issue 13):
network evaluations (NFE x samples), a guided evaluation's extra forward + backward of the guide,
training steps x batch, feature-extraction images. The counts below are pure arithmetic on the
samplers' and trainers' own rules (cited where they are defined); no network is built.
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


def reverse_times(steps: int, eps: float, T: float = 1.0) -> list[float]:
    """The PC samplers' times linspace(T, eps, N) (repro.sampling.common.reverse_time_grid)."""
    if steps == 1:
        return [T]
    return [T + (eps - T) * i / (steps - 1) for i in range(steps)]


def edm_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> list[float]:
    """EDM Eq. 5: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < N."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + (i / (steps - 1) if steps > 1 else 0.0) * (b - a)) ** rho for i in range(steps)]


def vp_time_of_sigma(sigma: float, beta_min: float = 0.1, beta_max: float = 20.0) -> float:
    """The VP time whose noise matches sigma (002 thesis Ch. 9; Kim et al.'s DG window)."""
    db = beta_max - beta_min
    return (-beta_min + math.sqrt(beta_min ** 2 + 2 * db * math.log1p(sigma ** 2))) / db


def dg_guided_evaluations(steps: int, solver: str, w_1st: float, w_2nd: float, time_min: float,
                          time_max: float, sigma_min: float = 0.002, sigma_max: float = 80.0,
                          rho: float = 7.0) -> int:
    """Discriminator forward + backward passes per sample of EDM sampling with DG (Eq. 9.3): one per
    Euler evaluation at sigma_i (w_1st != 0) and per Heun correction at sigma_{i+1} (w_2nd != 0),
    where sigma's VP time lies in [time_min, time_max]."""
    sig = edm_sigmas(steps, sigma_min, sigma_max, rho) + [0.0]
    inside = lambda s: s > 0 and time_min <= vp_time_of_sigma(s) <= time_max  # noqa: E731
    n = sum(1 for i in range(steps) if w_1st != 0 and inside(sig[i]))
    if solver == "heun":
        n += sum(1 for i in range(steps - 1) if w_2nd != 0 and inside(sig[i + 1]))
    return n


def scale_is_on(kind: str, t: float, s0: float, t_start: float = 0.8, t_decay: float = 0.45,
                t_stop: float = 0.0) -> bool:
    """Whether the guidance scale s(t) is non-zero (repro.guidance.segmentation.ScaleSchedule):
    Eq. 5.5 is 0 above t_start and s0 t^2 / t_decay^2 below t_decay; off_below is s0 above t_stop;
    on_below is s0 below t_start; constant is s0."""
    if s0 == 0:
        return False
    if kind == "eq5_5":
        return t <= t_start and (t > t_decay or (t_decay > 0 and t != 0))
    if kind == "off_below":
        return t > t_stop
    if kind == "on_below":
        return t < t_start
    return True


def guided_pc_evaluations(times: list[float], evals_per_time: int, on) -> int:
    """Guide forward + backward passes per sample of guided PC sampling: at each time where the
    scale is on, every score evaluation there (corrector and predictor) carries one (Eq. 5.6)."""
    return sum(evals_per_time for t in times if on(t))
