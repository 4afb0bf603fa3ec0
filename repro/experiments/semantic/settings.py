"""The `fixed` settings every semantic-synthesis runner shares, and the sampling setting of a cell."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from repro.errors import UserError
from repro.experiments.semantic.synthesis import SynthesisSetting
from repro.guidance.segmentation import GuidanceSettings, ScaleSchedule


class SynthesisFixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    snr: float = Field(0.1, gt=0, description="Langevin corrector snr (thesis Sec. 5.4.4: 0.1)")
    steps: int = Field(2000, ge=1, description="predictor steps; not stated in the thesis (its code: 2000 scales)")
    predictor: Literal["reverse_diffusion", "euler_maruyama", "ancestral"] = Field(
        "reverse_diffusion", description="reverse_diffusion: the authors' code; euler_maruyama: thesis Alg. 3 "
                                         "(Sec. 4.4.5); each result records its reading (predictor_reading)")
    n_corrector_steps: int = Field(1, ge=1)
    corrector_norms: Literal["batch", "per_sample"] = "per_sample"
    eps: float | None = Field(None, gt=0, lt=1)
    s0: float = Field(0.002, ge=0, description="maximum scale of Eq. 5.5 (thesis's choice 0.002)")
    s0_scale: float = Field(1.0, gt=0, description="multiplies every s0 (1 at paper): the balance of score and "
                                                    "segmenter gradients depends on the networks and resolution")
    t_start: float = Field(0.8, ge=0, le=1, description="Eq. 5.5: no guidance above (code: 0.7)")
    t_decay: float = Field(0.45, ge=0, le=1, description="Eq. 5.5: quadratic decay below")
    objective: Literal["log_prob", "prob"] = Field("log_prob", description="log_prob: the text (Eq. 4.22); "
                                                                          "prob: the authors' code")
    chain_rule: bool = Field(True, description="differentiate through the min-max normalisation (the code: no)")
    batch_size: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _thresholds(self):
        if self.t_decay > self.t_start:
            raise ValueError(f"t_decay ({self.t_decay}) must not exceed t_start ({self.t_start})")
        return self


def synthesis_setting(fixed: SynthesisFixed | dict[str, Any], cell: dict[str, Any],
                      schedule: ScaleSchedule | None = None) -> SynthesisSetting:
    """The cell's sampling setting: grid values override the fixed ones of the same name. `fixed`:
    the runner's typed settings, or as the spec holds them (the cost estimators')."""
    fixed = fixed.model_dump() if isinstance(fixed, BaseModel) else fixed
    f = {**fixed, **{k: v for k, v in cell.items() if k in fixed}}
    if schedule is None:
        if float(f["t_decay"]) > float(f["t_start"]):
            raise UserError(f"t_decay ({f['t_decay']}) must not exceed t_start ({f['t_start']})")
        schedule = ScaleSchedule("eq5_5", s0=float(f["s0"]) * float(f["s0_scale"]), t_start=float(f["t_start"]),
                                 t_decay=float(f["t_decay"]))
    return SynthesisSetting(schedule=schedule,
                            guidance=GuidanceSettings(objective=f["objective"], chain_rule=bool(f["chain_rule"])),
                            snr=float(f["snr"]), steps=int(f["steps"]), predictor=f["predictor"],
                            n_corrector_steps=int(f["n_corrector_steps"]), corrector_norms=f["corrector_norms"],
                            eps=f["eps"])


WINDOWS = ("off_below", "on_below")


def window_schedule(cell, s0: float) -> ScaleSchedule:
    """Guidance switched off below t (`off_below`) or on only below t (`on_below`): thesis Fig. 5.3 / 5.4."""
    window = cell["window"]
    if window not in WINDOWS:
        raise UserError(f"grid window {window!r}: choose one of {', '.join(WINDOWS)}")
    t = float(cell["t"])
    return (ScaleSchedule("off_below", s0=s0, t_stop=t) if window == "off_below"
            else ScaleSchedule("on_below", s0=s0, t_start=t))
