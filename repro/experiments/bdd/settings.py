"""Sampling settings every BDD spec shares (001 Sec. 2.3.3, 2.4, appendix)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SamplingFixed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loop: Literal["appendix", "algorithm2"] = Field(
        "appendix", description="appendix: the listing's reversed(range(1, T)), T-1 = 999 calls; algorithm2: T calls")
    guidance_convention: Literal["lerp", "ho_salimans"] = Field(
        "lerp", description="lerp(eps_u, eps_c, s) (the authors' code) or (1 + w) eps_c - w eps_u (Ho & Salimans)")
    guidance: float = Field(3.0, description="the weight in that convention (lerp s = 3: w = 2)")
    batch_size: int = Field(64, ge=1, description="images per sampling batch (Sec. 4.3.2: 64)")
    sheet_masks: int = Field(8, ge=1, description="masks shown in the report's sample sheet")
