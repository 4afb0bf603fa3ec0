"""FIR up/down-sampling of StyleGAN2 as the score SDE release uses it (score_sde_pytorch
models/up_or_down_sampling.py and op/upfirdn2d.py): upfirdn = zero-insertion upsampling,
zero padding, a 2-D FIR filter, then keeping every `down`-th sample.

The default kernel [1, 3, 3, 1] is made 2-D as its outer product and normalised to sum 1
(times factor^2 when upsampling, so that a constant image stays constant away from the border).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def setup_kernel(k, dtype=torch.float32, device=None) -> torch.Tensor:
    """The 2-D FIR kernel of a separable [k] (outer product) or 2-D k, normalised to sum 1."""
    k = torch.as_tensor(k, dtype=torch.float64)
    if k.ndim == 1:
        k = torch.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"FIR kernel must be 1-D or square 2-D, got shape {tuple(k.shape)}")
    return (k / k.sum()).to(dtype=dtype, device=device)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Per channel: upsample by zero insertion, pad (pad0 before, pad1 after, both axes; negative
    crops), convolve with `kernel` (true convolution: the kernel flipped), keep every down-th pixel."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    out = x.reshape(n * c, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])  # up - 1 zeros after each pixel along W and H
    out = out.reshape(n * c, 1, h * up, w * up)
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[:, :, max(-p0, 0): out.shape[2] - max(-p1, 0), max(-p0, 0): out.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(out).reshape(1, 1, kh, kw)
    out = F.conv2d(out, weight)
    out = out[:, :, ::down, ::down]
    return out.reshape(n, c, out.shape[2], out.shape[3])


def upsample_2d(x: torch.Tensor, k=(1, 3, 3, 1), factor: int = 2, gain: float = 1.0) -> torch.Tensor:
    kernel = setup_kernel(k, x.dtype, x.device) * (gain * factor ** 2)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, k=(1, 3, 3, 1), factor: int = 2, gain: float = 1.0) -> torch.Tensor:
    kernel = setup_kernel(k, x.dtype, x.device) * gain
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: torch.Tensor, w: torch.Tensor, k=(1, 3, 3, 1), factor: int = 2,
                     gain: float = 1.0) -> torch.Tensor:
    """Fused upsample_2d then a convolution with w: one transposed convolution, then the FIR filter.
    (The release writes the kernel flip as w[..., ::-1, ::-1], which torch tensors refuse; no
    CIFAR-10 config reaches it. Here the flip is torch.flip.)"""
    out_c, in_c, kh, kw = w.shape
    kernel = setup_kernel(k, x.dtype, x.device) * (gain * factor ** 2)
    p = (kernel.shape[0] - factor) - (kw - 1)
    groups = x.shape[1] // in_c
    w = w.reshape(groups, -1, in_c, kh, kw).flip(3, 4).permute(0, 2, 1, 3, 4).reshape(groups * in_c, -1, kh, kw)
    x = F.conv_transpose2d(x, w, stride=factor, padding=0)
    return upfirdn2d(x, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: torch.Tensor, w: torch.Tensor, k=(1, 3, 3, 1), factor: int = 2,
                       gain: float = 1.0) -> torch.Tensor:
    """Fused convolution with w then downsample_2d: the FIR filter, then a strided convolution."""
    kw = w.shape[3]
    kernel = setup_kernel(k, x.dtype, x.device) * gain
    p = (kernel.shape[0] - factor) + (kw - 1)
    x = upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, w, stride=factor, padding=0)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(-1, c, h, 1, w, 1).repeat(1, 1, 1, factor, 1, factor).reshape(-1, c, h * factor, w * factor)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(-1, c, h // factor, factor, w // factor, factor).mean(dim=(3, 5))


class FIRConv2d(nn.Module):
    """Convolution with optional FIR up/down-sampling (the release's up_or_down_sampling.Conv2d;
    parameters `weight` [out, in, k, k] and `bias`)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, up: bool = False, down: bool = False,
                 resample_kernel=(1, 3, 3, 1), use_bias: bool = True, kernel_init=None):
        super().__init__()
        if up and down or kernel < 1 or kernel % 2 == 0:
            raise ValueError("FIRConv2d: up and down exclude each other; kernel must be odd")
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel, kernel))
        if kernel_init is not None:
            self.weight.data = kernel_init(self.weight.data.shape)
        if use_bias:
            self.bias = nn.Parameter(torch.zeros(out_ch))
        self.up, self.down, self.resample_kernel, self.kernel, self.use_bias = \
            up, down, tuple(resample_kernel), kernel, use_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample_conv_2d(x, self.weight, k=self.resample_kernel)
        elif self.down:
            x = conv_downsample_2d(x, self.weight, k=self.resample_kernel)
        else:
            x = F.conv2d(x, self.weight, stride=1, padding=self.kernel // 2)
        return x + self.bias.reshape(1, -1, 1, 1) if self.use_bias else x
