"""Sampler settings of one cell of a discriminator-guidance / epsilon-scaling grid (002 thesis Ch. 12).

A cell names some of (method, w_dg, eps_scale, steps, solver); the rest come from the spec's
`fixed`, then from `fixed.methods[method]`, then from the cell itself. The method then pins
what it means: `edm` has no guidance and b = 1, `edm_gpp` (EDM-G++, Kim et al.) has b = 1,
`sedm_gpp` (SEDM-G++, thesis Sec. 11.2) uses both. Without a method the label is derived.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from repro.errors import UserError

METHODS = ("edm", "edm_gpp", "sedm_gpp")
METHOD_LABELS = {"edm": "EDM", "edm_gpp": "EDM-G++", "sedm_gpp": "SEDM-G++", "sedm": "EDM + eps scaling"}
SETTING_KEYS = ("solver", "steps", "w_dg", "w_dg_2nd", "eps_scale", "eps_k", "placement")


@dataclass(frozen=True)
class CellSettings:
    method: str
    solver: str
    steps: int          # EDM steps N: Euler NFE = N, Heun NFE = 2N - 1
    w_dg: float         # w_DG_1st (Euler evaluation)
    w_dg_2nd: float     # w_DG_2nd (Heun correction); the thesis keeps 0
    eps_scale: float    # b of b_i = b + k i
    eps_k: float
    placement: str      # 'sedm' or 'ning' (repro.guidance.epsilon_scaling)

    @property
    def nfe(self) -> int:
        return self.steps if self.solver == "euler" else 2 * self.steps - 1

    @property
    def guided(self) -> bool:
        return self.w_dg != 0.0 or self.w_dg_2nd != 0.0

    @property
    def scaled(self) -> bool:
        return self.eps_scale != 1.0 or self.eps_k != 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nfe": self.nfe, "method_label": METHOD_LABELS[self.method],
                "effective_method": derive_method(self.w_dg, self.w_dg_2nd, self.eps_scale, self.eps_k)}


def _scale_for(value: Any, steps: int, where: str) -> float:
    """eps_scale may be one number or a mapping {steps: b} (one b per step count)."""
    if isinstance(value, dict):
        table = {int(k): float(v) for k, v in value.items()}
        if steps not in table:
            raise UserError(f"{where}: eps_scale has no entry for steps={steps} (has {sorted(table)})")
        return table[steps]
    return float(value)


def derive_method(w: float, w2: float, b: float, k: float) -> str:
    guided, scaled = (w != 0 or w2 != 0), (b != 1 or k != 0)
    if guided:
        return "sedm_gpp" if scaled else "edm_gpp"
    return "sedm" if scaled else "edm"


def resolve_cell(fixed: Any, cell: dict[str, Any], where: str = "cell") -> CellSettings:
    """The sampler settings of `cell`: fixed < fixed.methods[method] < cell, then the method's rules.
    `fixed`: the kind's validated Fixed (its SETTING_KEYS and `methods` as attributes)."""
    method = cell.get("method")
    if method is not None and method not in METHODS:
        raise UserError(f"{where}: unknown method {method!r}; use one of {', '.join(METHODS)}")
    s = {k: getattr(fixed, k) for k in SETTING_KEYS}
    if method is not None:
        s.update(fixed.methods.get(method, {}))
    s.update({k: v for k, v in cell.items() if k in SETTING_KEYS})
    steps = int(s["steps"])
    b = _scale_for(s["eps_scale"], steps, where)
    w, w2, k = float(s["w_dg"]), float(s["w_dg_2nd"]), float(s["eps_k"])
    if method == "edm":
        explicit = {key for key in ("w_dg", "eps_scale") if key in cell}
        if explicit:
            raise UserError(f"{where}: method 'edm' has no guidance and b = 1; do not vary "
                            f"{', '.join(sorted(explicit))} with it")
        w, w2, b, k = 0.0, 0.0, 1.0, 0.0
    elif method == "edm_gpp":
        if "eps_scale" in cell and float(cell["eps_scale"]) != 1.0:
            raise UserError(f"{where}: method 'edm_gpp' has b = 1; use sedm_gpp to scale epsilon")
        b, k = 1.0, 0.0
    if s["solver"] not in ("euler", "heun"):
        raise UserError(f"{where}: solver must be euler or heun, got {s['solver']!r}")
    if steps < 2:
        raise UserError(f"{where}: steps must be >= 2, got {steps}")
    if b <= 0:
        raise UserError(f"{where}: eps_scale must be > 0, got {b}")
    return CellSettings(method=method or derive_method(w, w2, b, k), solver=str(s["solver"]), steps=steps,
                        w_dg=w, w_dg_2nd=w2, eps_scale=b, eps_k=k, placement=str(s["placement"]))


def cell_settings(fixed, cell: dict) -> CellSettings:
    """The cell's sampler settings, at the step count fixed.steps gives its solver (`exposure_bias`:
    `steps` maps a solver to its step count; `fixed` is that kind's validated Fixed)."""
    steps = fixed.steps.get(cell.get("solver", fixed.solver))
    if steps is None:
        raise UserError(f"fixed.steps has no entry for solver {cell.get('solver')!r}")
    return resolve_cell(fixed.model_copy(update={"steps": steps}), cell)
