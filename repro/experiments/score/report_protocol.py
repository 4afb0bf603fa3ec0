"""Report lines shared by the score-SDE sampler reports (`sampler_comparison`, `snr_sweep`): how
the cells were produced, as each cell recorded it."""
from __future__ import annotations

from repro.metrics.inception import FID_INPUTS

DISCRETISATION_NOTES = {
    "grid": "the suite's grid chain (coefficients from the SDE between neighbouring sampling times)",
    "score_sde": "score_sde_pytorch's get_pc_sampler (N = steps discrete betas/sigmas indexed by "
                 "(t (N - 1)).long(), Euler-Maruyama dt = -1/N)",
}


def protocol_notes(df) -> list[str]:
    """The report lines that say how the cells were produced: the reverse chain's discretisation
    and the Frechet inputs' quantisation (as recorded in each cell)."""
    notes = []
    if "discretisation" in df and df["discretisation"].notna().any():
        used = sorted(str(v) for v in df["discretisation"].dropna().unique())
        notes.append("Discretisation: " + "; ".join(f"{u} = {DISCRETISATION_NOTES.get(u, u)}" for u in used) + ".")
    if "fid_inputs" in df and df["fid_inputs"].notna().any():
        used = sorted(str(v) for v in df["fid_inputs"].dropna().unique())
        metric = str(df["metric"].dropna().iloc[0]) if "metric" in df and df["metric"].notna().any() else "the metric"
        notes.append(f"Images into {metric}: " + "; ".join(f"{u} = {FID_INPUTS.get(u, u)}" for u in used) + ".")
    return notes
