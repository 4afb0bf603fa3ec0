"""NCSN++-style score network: shapes, non-square inputs (thesis Sec. 5.3.2), sigma scaling,
attention, the paper configuration's size."""
import math

import pytest
import torch

from repro.diffusion.losses import dsm_loss
from repro.diffusion.sde import VESDE, net_score_fn
from repro.nets.ncsnpp import (AttnBlock, NCSNpp, count_parameters, ncsnpp_paper_config,
                               ncsnpp_tiny_config)



def _tiny(**kw):
    torch.manual_seed(0)
    cfg = ncsnpp_tiny_config()
    cfg.update(kw)
    return NCSNpp(**cfg)


def _randomise_zero_inits(net):
    # zero-initialised output convs make a fresh net's output identically 0; give them weights
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.weight.abs().sum() == 0:
                m.weight.normal_(0, 0.1)
    return net


def test_tiny_forward_backward_non_square():
    net = _tiny()
    x = torch.randn(4, 3, 16, 32)
    sigma = torch.tensor([0.01, 0.5, 5.0, 50.0])
    out = net(x, sigma)
    assert out.shape == x.shape
    # a fresh net predicts score 0 (NCSN++ zero init of the last conv)
    assert torch.count_nonzero(out) == 0
    loss = dsm_loss(net_score_fn(net, VESDE()), VESDE(), x, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() == pytest.approx(1.0, rel=0.2)  # ||0 + z||^2 per dimension
    assert net.conv_out.weight.grad.abs().sum() > 0


def test_attention_levels_follow_the_smaller_side():
    net = _tiny(image_size=(16, 32), attn_resolutions=(8,))
    # level 0 is 16x32 (no attention), level 1 is 8x16 (attention: min side 8)
    assert not any(isinstance(m, AttnBlock) for m in net.down[0])
    assert any(isinstance(m, AttnBlock) for m in net.down[1])


@pytest.mark.parametrize("hw", [(16, 32), (32, 64), (32, 16)])
def test_non_square_inputs_keep_batch_and_width_structure(hw):
    net = _randomise_zero_inits(_tiny(image_size=hw)).eval()
    x = torch.randn(3, 3, *hw)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    out = net(x, sigma)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # each sample is processed on its own (no batch/space mix-up in reshapes)
    single = net(x[1:2], sigma[1:2])
    assert torch.allclose(out[1:2], single, atol=1e-5)
    # the whole width is seen: changing only the right-most columns changes the output
    x2 = x.clone()
    x2[..., -4:] += 1.0
    assert not torch.allclose(net(x2, sigma), out)


def test_output_is_scaled_by_one_over_sigma():
    net = _randomise_zero_inits(_tiny())
    net_unscaled = _tiny(scale_by_sigma=False)
    net_unscaled.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 16, 32)
    sigma = torch.tensor([0.5, 4.0])
    assert torch.allclose(net(x, sigma) * sigma[:, None, None, None], net_unscaled(x, sigma), atol=1e-5)
    # the scalar-sigma form broadcasts
    assert torch.allclose(net(x, 2.0), net(x, torch.tensor([2.0, 2.0])))


def test_attention_block_matches_reference_on_non_square_map():
    torch.manual_seed(1)
    blk = AttnBlock(8)
    with torch.no_grad():
        blk.out.weight.normal_(0, 0.3)
    x = torch.randn(2, 8, 3, 5)
    h = blk.norm(x)
    q, k, v = blk.qkv(h).chunk(3, dim=1)
    q, k, v = (a.flatten(2) for a in (q, k, v))  # [B, C, HW]
    w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(8), dim=-1)
    a = torch.einsum("bij,bcj->bci", w, v).reshape(2, 8, 3, 5)
    ref = (x + blk.out(a)) / math.sqrt(2)
    assert torch.allclose(blk(x), ref, atol=1e-5)


def test_indivisible_size_is_rejected():
    net = _tiny()
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 15, 32), torch.ones(1))


def test_paper_config_builds_with_reported_parameter_count():
    cfg = ncsnpp_paper_config()
    assert cfg["nf"] == 128 and cfg["ch_mult"] == (1, 1, 2, 2, 2, 2, 2)
    assert cfg["image_size"] == (256, 512)
    n = count_parameters(cfg)
    assert n == _ncsnpp_count_by_hand(nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, attn_levels={4},
                                      channels=3)
    assert 60e6 < n < 70e6   # the score SDE paper's ~256x256 NCSN++ is of this size (~65M without FIR/progressive)
    with torch.device("meta"):
        net = NCSNpp(**cfg)
        out = net(torch.empty(1, 3, 256, 512), torch.ones(1))
    assert out.shape == (1, 3, 256, 512)
    assert sum(isinstance(m, AttnBlock) for m in net.modules()) == 2 + 1 + 1  # 16x32 down, mid, up


def _ncsnpp_count_by_hand(nf: int, ch_mult, num_res_blocks: int, attn_levels: set, channels: int) -> int:
    """The parameter count of the architecture as the module docstring describes it, from layer formulas
    (conv k x k: cin cout k^2 + cout; GroupNorm: 2c; Linear: in out + out), independent of torch's numel."""
    conv = lambda cin, cout, k=3: cin * cout * k * k + cout
    gn = lambda c: 2 * c
    temb = 4 * nf

    def res(cin, cout, resample=False):   # norm, conv, noise projection, norm, conv, 1x1 skip when needed
        skip = conv(cin, cout, 1) if (cin != cout or resample) else 0
        return gn(cin) + conv(cin, cout) + (temb * cout + cout) + gn(cout) + conv(cout, cout) + skip

    attn = lambda c: gn(c) + conv(c, 3 * c, 1) + conv(c, c, 1)
    total = (2 * nf * temb + temb) + (temb * temb + temb) + conv(channels, nf)
    skips, ch = [nf], nf
    for i, mult in enumerate(ch_mult):
        for _ in range(num_res_blocks):
            total += res(ch, nf * mult) + (attn(nf * mult) if i in attn_levels else 0)
            ch = nf * mult
            skips.append(ch)
        if i != len(ch_mult) - 1:
            total += res(ch, ch, resample=True)
            skips.append(ch)
    total += 2 * res(ch, ch) + attn(ch)
    for i in reversed(range(len(ch_mult))):
        for _ in range(num_res_blocks + 1):
            total += res(ch + skips.pop(), nf * ch_mult[i])
            ch = nf * ch_mult[i]
        total += attn(ch) if i in attn_levels else 0
        total += res(ch, ch, resample=True) if i != 0 else 0
    return total + gn(ch) + conv(ch, channels)
