"""The exact-score check that explains reduced-step smoke runs: with Gaussian data the true reverse
process ends at the data's std, so the discretisation error must shrink as the steps grow."""
import pytest

from repro.diffusion.sde import VESDE, VPSDE
from repro.sampling.exact_gaussian import exact_score_std_ratio


@pytest.mark.parametrize("sde", [VESDE(0.01, 8.0), VPSDE()], ids=["ve", "vp"])
def test_reverse_diffusion_converges_to_the_data_std(sde):
    coarse = exact_score_std_ratio(sde, steps=20, predictor="reverse_diffusion", dim=64, n=400)
    fine = exact_score_std_ratio(sde, steps=1000, predictor="reverse_diffusion", dim=64, n=400)
    # the std of 400 x 64 N(0, 1) draws has a relative error of about 1 / sqrt(2 * 25600) = 0.4 %
    assert abs(fine - 1) < 0.02
    assert abs(coarse - 1) > 3 * abs(fine - 1)


def test_ve_ancestral_and_reverse_diffusion_err_in_opposite_directions_at_few_steps():
    """SMLD's ancestral step injects sigma_i^2 (sigma_{i+1}^2 - sigma_i^2) / sigma_{i+1}^2 of noise variance,
    reverse diffusion (sigma_{i+1}^2 - sigma_i^2): with the same mean update, the first ends narrower."""
    sde = VESDE(0.01, 8.0)
    anc = exact_score_std_ratio(sde, steps=30, predictor="ancestral", dim=64, n=400)
    rd = exact_score_std_ratio(sde, steps=30, predictor="reverse_diffusion", dim=64, n=400)
    assert anc < 1 < rd
