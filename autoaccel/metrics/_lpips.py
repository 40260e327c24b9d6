"""LPIPS v0.1 with the AlexNet backbone (Zhang et al. 2018), in plain torch (no torchvision).

Same computation as the authors' ``lpips.LPIPS(net='alex', version='0.1')`` with ``normalize=True``: inputs in
[0, 1] are mapped to [-1, 1], shifted and scaled per channel, passed through AlexNet's five conv+ReLU stages; each tap
is unit-normalised over channels (``x / (||x|| + 1e-10)``), the squared difference is weighted by the 1x1 linear head,
averaged over space and summed over the five layers.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from autoaccel.metrics._inputs import per_image
from autoaccel.metrics._lpips_weights import CONVS, load_weights, resolve_weights
from autoaccel.metrics._registry import MetricInputError

MIN_SIZE = 64
"""Images whose short side is below this are upsampled (bilinear) to it before LPIPS; see `resize_for_lpips`."""

NETWORK_MIN_SIZE = 31
"""The smallest short side AlexNet's layers accept (both max-pools need at least a 3x3 input)."""

CHUNK = 16
"""Images per forward pass; bounds memory at high resolution without changing the values."""

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_LAYERS = (  # (in, out, kernel, stride, padding) of torchvision AlexNet's conv layers 0, 3, 6, 8, 10
    (3, 64, 11, 4, 2),
    (64, 192, 5, 1, 2),
    (192, 384, 3, 1, 1),
    (384, 256, 3, 1, 1),
    (256, 256, 3, 1, 1),
)
_EPS = 1e-10


class LPIPSAlex(nn.Module):
    """The LPIPS-alex network. ``forward(x, y)`` takes two N,3,H,W batches in [0, 1] and returns N distances."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in _LAYERS)
        for conv, index in zip(self.convs, CONVS, strict=True):
            conv.weight.data.copy_(state[f"features.{index}.weight"])
            conv.bias.data.copy_(state[f"features.{index}.bias"])
        for k in range(len(_LAYERS)):
            self.register_buffer(f"lin{k}", state[f"lin.{k}.weight"].clone())
        self.register_buffer("shift", torch.tensor(_SHIFT, dtype=torch.float64).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE, dtype=torch.float64).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs for inputs already in the network's normalisation."""
        out = []
        for k, conv in enumerate(self.convs):
            if k in (1, 2):  # max-pool before conv 3 and conv 6
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = ((torch.cat([x, y]) * 2 - 1) - self.shift) / self.scale
        total = torch.zeros(x.shape[0], dtype=z.dtype, device=z.device)
        for k, feat in enumerate(self.taps(z)):
            feat = feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
            a, b = feat.chunk(2)
            total = total + F.conv2d((a - b).pow(2), getattr(self, f"lin{k}")).mean(dim=(1, 2, 3))
        return total


@functools.lru_cache(maxsize=8)
def _network(path: str, mtime_ns: int, device: torch.device, dtype: torch.dtype) -> LPIPSAlex:
    del mtime_ns  # part of the cache key only: a replaced file gives a new network
    return LPIPSAlex(load_weights(path)).to(device=device, dtype=dtype)


def network(
    weights: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LPIPSAlex:
    """The LPIPS-alex network (eval mode, no grad), cached per weights file, device and dtype.

    Args:
        weights: Weights file; default: resolved as in `autoaccel.metrics.lpips`.
        device: Where to put it.
        dtype: Parameter dtype (float32, or float64 for reference computations).
    """
    path = resolve_weights(weights)
    return _network(str(path), path.stat().st_mtime_ns, torch.device(device), dtype)


def resize_for_lpips(images: torch.Tensor, min_size: int | None = MIN_SIZE) -> torch.Tensor:
    """Upsamples images whose short side is below ``min_size`` so that it equals ``min_size``.

    Bilinear interpolation (``align_corners=False``), aspect ratio kept (long side rounded). 64 px is just above
    the smallest input torchvision documents for AlexNet (63 px); below it the deepest LPIPS layers see 1x1 maps and
    scores become unstable. Larger images are scored at their own resolution, like the reference implementation.
    LPIPS values of upsampled images are consistent across runs but not comparable to values published at 256 px.

    Raises:
        MetricInputError: ``min_size`` is disabled and the image is smaller than AlexNet accepts (31 px).
    """
    h, w = images.shape[-2:]
    short = min(h, w)
    if min_size and short < min_size:
        scale = min_size / short
        size = (max(min_size, round(h * scale)), max(min_size, round(w * scale)))
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if short < NETWORK_MIN_SIZE:
        raise MetricInputError(f"lpips: images of {h}x{w} are too small for AlexNet; keep min_size (default 64)")
    return images


@per_image("lpips")
def lpips(
    images: torch.Tensor,
    reference: torch.Tensor,
    *,
    weights: str | os.PathLike[str] | None = None,
    min_size: int | None = MIN_SIZE,
) -> torch.Tensor:
    """LPIPS v0.1 (AlexNet) distance per image; 0 for identical images. Lower is better.

    Args:
        images: N,3,H,W (or N,F,3,H,W video) float in [0, 1].
        reference: Same shape.
        weights: Weights file. Default: ``$AUTOACCEL_LPIPS_WEIGHTS``, then the user cache, then the official
            sources (downloaded once, checked and converted; disabled by ``AUTOACCEL_OFFLINE=1``).
        min_size: Short side below which images are upsampled first (see `resize_for_lpips`); ``None`` disables.

    Returns:
        Shape (N,), float32 (float64 for float64 inputs), on the images' device.

    Raises:
        MetricUnavailableError: No weights found and no download possible; the message says what to set.
    """
    if images.shape[1] != 3:
        raise MetricInputError(f"lpips: needs RGB images (3 channels), got {images.shape[1]}")
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    net = network(weights, device=images.device, dtype=dtype)
    x = resize_for_lpips(images.to(dtype), min_size)
    y = resize_for_lpips(reference.to(dtype), min_size)
    with torch.no_grad():
        return torch.cat([net(a, b) for a, b in zip(x.split(CHUNK), y.split(CHUNK), strict=True)])
