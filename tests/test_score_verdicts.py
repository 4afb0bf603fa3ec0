"""sampler_table's verdicts judged against the spread of repeated sampling runs (issue 17 item 6):
PC1000 vs P1000 / P2000 per predictor, run-by-run differences against 2 standard errors."""
from __future__ import annotations

import pandas as pd

from repro.experiments.score.report_sampler_comparison import _claims


def _frame(pc_runs, p1000_runs, p2000_runs, metric="fd_evalnet"):
    rows = []
    for sampler, runs in (("PC1000", pc_runs), ("P1000", p1000_runs), ("P2000", p2000_runs)):
        for pred, r in runs.items():
            rows.append({"predictor": pred, "sampler": sampler, metric: sum(r) / len(r), f"{metric}_runs": r})
    return pd.DataFrame(rows)


def test_differences_beyond_two_standard_errors_decide_inside_them_inconclusive():
    # ancestral: PC lower in every run by ~1 with tiny spread -> held
    # reverse diffusion: PC lower on average, but the paired differences (-2, +1.8, -0.1) scatter -> inconclusive
    # probability flow: PC higher in every run -> did not hold
    pc = {"ancestral": [5.0, 6.0, 7.0], "reverse_diffusion": [3.0, 6.8, 5.0], "probability_flow": [9.0, 9.5, 10.0]}
    p1 = {"ancestral": [6.0, 7.1, 7.9], "reverse_diffusion": [5.0, 5.0, 5.1], "probability_flow": [8.0, 8.4, 9.1]}
    p2 = {k: [x + 10 for x in v] for k, v in pc.items()}   # PC far better than every P2000
    out = _claims(_frame(pc, p1, p2), "fd_evalnet")
    assert out["measured"]
    assert out["pc_vs_p1000"] == [1, 3, 1, 1]   # held, compared, did not hold, inconclusive
    assert out["pc_vs_p2000"] == [3, 3, 0, 0]


def test_without_runs_the_sign_of_the_means_decides():
    pub = pd.DataFrame([{"predictor": "ancestral", "sampler": "PC1000", "fid": 3.0},
                        {"predictor": "ancestral", "sampler": "P1000", "fid": 3.1}])
    out = _claims(pub, "fid")
    assert not out["measured"] and out["pc_vs_p1000"] == [1, 1, 0, 0] and out["pc_vs_p2000"] == [0, 0, 0, 0]


def _snr_frame(runs: dict[float, list[float]]) -> pd.DataFrame:
    import statistics

    return pd.DataFrame([{"snr": s, "metric": "fd_evalnet", "fd_evalnet": statistics.mean(r),
                          "fd_evalnet_std": statistics.stdev(r), "fd_evalnet_runs": r, "n_runs": len(r)}
                         for s, r in runs.items()])


def test_snr_notes_judge_paired_runs_not_overlapping_stds():
    """Runs share their latents across snr values: run-to-run spreads of about 1 overlap, but
    snr 0.2 minus 0.05 is -0.5 / -0.4 / -0.6 run by run (mean -0.5, s.e. 0.1 / sqrt 3 = 0.0577 by
    hand: beyond 2 s.e., held), and snr 0.1 minus the best (0.2) is 0 / 0.2 / 0.1 (mean 0.1, s.e.
    0.0577: within 2 s.e.)."""
    from repro.experiments.score.report_snr_sweep import report_notes

    df = _snr_frame({0.05: [3.0, 4.5, 2.2], 0.1: [2.5, 4.3, 1.7], 0.2: [2.5, 4.1, 1.6]})
    notes = report_notes(None, df)
    claim = next(n for n in notes if "higher snr gives higher quality" in n)
    assert "paired difference -0.5 ± 0.058 (s.e., 3 runs): held" in claim
    choice = next(n for n in notes if n.startswith("At the thesis's choice"))
    assert "paired difference +0.1 ± 0.058 (s.e., 3 runs): within 2 standard errors" in choice


def test_snr_notes_say_when_no_spread_was_measured():
    from repro.experiments.score.report_snr_sweep import report_notes

    df = pd.DataFrame([{"snr": s, "metric": "fd_evalnet", "fd_evalnet": v, "n_runs": 1}
                       for s, v in ((0.05, 3.0), (0.1, 2.0), (0.2, 2.5))])
    notes = report_notes(None, df)
    assert any("difference -0.5: held (one sampling run: no spread measured)" in n for n in notes)
    assert any("At the thesis's choice snr = 0.1: 2; vs the best snr it is the best" in n for n in notes)
