"""ADM's encoder U-Net as discriminator guidance uses it (repro.nets.adm).

The released DG checkpoints are state dicts of guided-diffusion's EncoderUNetModel built by DG's
`create_classifier`; the manifests below are written out from that construction (module names,
which blocks carry attention or a 1x1 skip, parameter shapes), so a checkpoint of that layout
loads with strict=True.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repro.nets.adm import (
    EncoderUNet,
    _attention,
    adm_classifier,
    dg_head,
    timestep_embedding,
)


def resblock(prefix: str, cin: int, cout: int, emb: int) -> dict[str, tuple]:
    out = {f"{prefix}.in_layers.0.weight": (cin,), f"{prefix}.in_layers.0.bias": (cin,),
           f"{prefix}.in_layers.2.weight": (cout, cin, 3, 3), f"{prefix}.in_layers.2.bias": (cout,),
           f"{prefix}.emb_layers.1.weight": (2 * cout, emb), f"{prefix}.emb_layers.1.bias": (2 * cout,),
           f"{prefix}.out_layers.0.weight": (cout,), f"{prefix}.out_layers.0.bias": (cout,),
           f"{prefix}.out_layers.3.weight": (cout, cout, 3, 3), f"{prefix}.out_layers.3.bias": (cout,)}
    if cin != cout:
        out |= {f"{prefix}.skip_connection.weight": (cout, cin, 1, 1), f"{prefix}.skip_connection.bias": (cout,)}
    return out


def attention(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,), f"{prefix}.qkv.weight": (3 * c, c, 1),
            f"{prefix}.qkv.bias": (3 * c,), f"{prefix}.proj_out.weight": (c, c, 1), f"{prefix}.proj_out.bias": (c,)}


def shapes(net) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_dg_head_has_the_layout_of_dgs_discriminator_checkpoints():
    # DG: create_classifier(image_size=8, in_channels=512, width 128, depth 2, attention "32,16,8"
    # -> ds {1}, channel_mult (1,), attention pool, out_channels 1)
    want = {"time_embed.0.weight": (512, 128), "time_embed.0.bias": (512,), "time_embed.2.weight": (512, 512),
            "time_embed.2.bias": (512,), "input_blocks.0.0.weight": (128, 512, 3, 3), "input_blocks.0.0.bias": (128,)}
    for k in (1, 2):
        want |= resblock(f"input_blocks.{k}.0", 128, 128, 512) | attention(f"input_blocks.{k}.1", 128)
    want |= resblock("middle_block.0", 128, 128, 512) | attention("middle_block.1", 128)
    want |= resblock("middle_block.2", 128, 128, 512)
    want |= {"out.0.weight": (128,), "out.0.bias": (128,), "out.2.positional_embedding": (128, 65),
             "out.2.qkv_proj.weight": (384, 128, 1), "out.2.qkv_proj.bias": (384,),
             "out.2.c_proj.weight": (1, 128, 1), "out.2.c_proj.bias": (1,)}
    assert shapes(dg_head()) == want


def test_32px_classifier_has_the_layout_of_dgs_feature_extractor():
    # DG: depth 4 at 32 px, channel_mult (1, 2, 4), attention at ds 1, 2, 4 (= every block),
    # resblock_updown between levels, 1000 ImageNet classes.
    want = {"time_embed.0.weight": (512, 128), "time_embed.0.bias": (512,), "time_embed.2.weight": (512, 512),
            "time_embed.2.bias": (512,), "input_blocks.0.0.weight": (128, 3, 3, 3), "input_blocks.0.0.bias": (128,)}
    k, ch = 1, 128
    for level, mult in enumerate((1, 2, 4)):
        for _ in range(4):
            want |= resblock(f"input_blocks.{k}.0", ch, 128 * mult, 512) | attention(f"input_blocks.{k}.1", 128 * mult)
            ch, k = 128 * mult, k + 1
        if level < 2:
            want |= resblock(f"input_blocks.{k}.0", ch, ch, 512)   # residual down-sampling
            k += 1
    for j, part in ((0, resblock), (1, None), (2, resblock)):
        want |= part(f"middle_block.{j}", 512, 512, 512) if part else attention("middle_block.1", 512)
    want |= {"out.0.weight": (512,), "out.0.bias": (512,), "out.2.positional_embedding": (512, 65),
             "out.2.qkv_proj.weight": (1536, 512, 1), "out.2.qkv_proj.bias": (1536,),
             "out.2.c_proj.weight": (1000, 512, 1), "out.2.c_proj.bias": (1000,)}
    assert k == 15
    assert shapes(adm_classifier(32)) == want


def test_features_and_logits_have_dgs_shapes_and_a_saved_state_dict_loads_strictly():
    torch.manual_seed(0)
    clf = EncoderUNet(16, 1, 32, 10, 1, num_head_channels=32)
    x, tau = torch.randn(3, 1, 16, 16), torch.tensor([0.01, 0.5, 1.0])
    feats = clf(x, tau, features=True)
    assert feats.shape == (3, 64, 8, 8) and clf(x, tau).shape == (3, 10)
    again = EncoderUNet(16, 1, 32, 10, 1, num_head_channels=32)
    again.load_state_dict(clf.state_dict(), strict=True)
    assert torch.equal(again(x, tau), clf(x, tau))
    head = dg_head(64, 8, width=32, depth=1, num_head_channels=32)
    assert head(feats, tau).shape == (3, 1)


def test_a_fresh_encoder_is_the_identity_after_its_input_conv():
    # ADM zero-initialises each block's last conv and the attention projection, so every residual
    # and attention block of an untrained encoder passes its input through unchanged.
    head = dg_head(32, 4, width=32, depth=1, num_head_channels=32)
    x = torch.randn(2, 32, 4, 4)
    conv = head.input_blocks[0][0](x)
    assert torch.allclose(head(x, torch.tensor([0.3, 0.3]), features=True), conv, atol=1e-6)


def test_attention_is_softmax_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 16, 9, dtype=torch.float64, generator=g) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(_attention(q, k, v), ref, atol=1e-6)   # ADM's softmax runs in float32


def test_timestep_embedding_closed_form():
    e = timestep_embedding(torch.tensor([0.0, 2.0]), 8)
    assert torch.equal(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.tensor([10000 ** (-j / 4) for j in range(4)])
    assert torch.allclose(e[1], torch.cat([torch.cos(2 * freqs), torch.sin(2 * freqs)]), atol=1e-6)
    assert timestep_embedding(torch.zeros(1), 5).shape == (1, 5)


def test_time_is_scaled_to_adms_999_steps_and_classes_are_embedded():
    net = EncoderUNet(8, 2, 32, 1, 1, channel_mult=(1,), num_head_channels=32, num_classes=10)
    tau = torch.tensor([0.25])
    want = net.time_embed(timestep_embedding(tau * 999, 32)) + net.label_emb(torch.tensor([3]))
    assert torch.allclose(net.embed(tau, torch.tensor([3])), want)
    onehot = F.one_hot(torch.tensor([3]), 10).float()
    assert torch.allclose(net.embed(tau, onehot), want)
    with pytest.raises(ValueError, match="class_labels"):
        net.embed(tau)


def test_group_norm_runs_in_float32_and_returns_the_input_dtype():
    net = EncoderUNet(8, 2, 32, 1, 1, channel_mult=(1,), num_head_channels=32).to(torch.bfloat16)
    out = net(torch.randn(2, 2, 8, 8, dtype=torch.bfloat16), torch.tensor([0.5, 0.5]))
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out.float()).all())


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="image size 24"):
        EncoderUNet(24)
    with pytest.raises(ValueError, match="multiple of 64"):
        EncoderUNet(8, 3, 96, 1, 1, channel_mult=(1,))


@pytest.mark.parametrize("res", [7, 16, 17, 32])
def test_encoders_state_their_feature_map_size(res):
    """The ADM head's attention pooling is sized from out_size(): it must match the forward pass."""
    from repro.nets.adm import ADMFeatures
    from repro.nets.discriminator import SmallEncoder

    small = SmallEncoder(1, 4)
    assert small(torch.zeros(1, 1, res, res)).shape[-1] == small.out_size(res)
    if res in (16, 32):
        feats = ADMFeatures(adm_classifier(res, 1, width=32, depth=1, num_head_channels=32))
        assert feats(torch.zeros(1, 1, res, res), torch.ones(1)).shape[-1] == feats.out_size(res)
