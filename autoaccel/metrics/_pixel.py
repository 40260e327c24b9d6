"""PSNR, SSIM (Wang et al. 2004) and MS-SSIM (Wang et al. 2003) in plain torch, float64, data range 1.

Colour images are scored per channel and the channel values averaged, as the reference implementations do
(``pytorch_msssim``, ``skimage`` with ``channel_axis``). Small images are handled by shrinking the window (SSIM) and
dropping the coarsest scales (MS-SSIM); see `ssim_window` and `ms_ssim_scales`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autoaccel.metrics._inputs import per_image

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@per_image("psnr")
def psnr(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB with data range 1; identical images give ``inf``. Higher is better.

    Args:
        images: N,C,H,W (or N,F,C,H,W video) float in [0, 1].
        reference: Same shape.

    Returns:
        Shape (N,), float64: ``10 * log10(1 / MSE)`` over all channels and pixels of each image.
    """
    mse = (images.double() - reference.double()).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse)


def ssim_window(height: int, width: int) -> tuple[int, float]:
    """Window size and Gaussian sigma for an image of this size.

    The standard window is 11 px with sigma 1.5. When the short side is below 11 px the window shrinks to the largest
    odd size that fits (``s = short side``, or ``s - 1`` if even) with sigma scaled by the same factor
    (``1.5 * size / 11``), so the SSIM statistics still come from a valid (unpadded) filter.
    """
    short = min(height, width)
    if short >= SSIM_WINDOW:
        return SSIM_WINDOW, SSIM_SIGMA
    size = short if short % 2 else short - 1
    return size, SSIM_SIGMA * size / SSIM_WINDOW


def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales for an image of this size (1 to 5).

    Scales are the image and successive 2x2 average-poolings of it (`_halve`, each side ``s -> ceil(s / 2)``). The
    standard 5 scales need the coarsest one to be at least one SSIM window (11 px) on its short side, i.e. a short side
    of at least 161 px (the limit ``pytorch_msssim`` enforces); smaller images use the largest number of scales that
    satisfies this (32 px: 2 scales; under 21 px: 1 scale, which is SSIM), with the first weights of
    (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) renormalised to sum to 1.
    """
    window, _ = ssim_window(height, width)
    short, scales = min(height, width), 1
    while scales < len(MS_SSIM_WEIGHTS) and -(-short // 2) >= window:
        short, scales = -(-short // 2), scales + 1
    return scales


def _halve(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling; odd sides are zero-padded on both ends (as ``pytorch_msssim`` does), giving ceil(s / 2)."""
    return F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[-2:]])


def _gaussian(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' (no padding) as in Wang et al.'s reference code."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and contrast-structure terms, each of shape (N, C)."""
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    var_x = _filter(x * x, g) - mu_x**2
    var_y = _filter(y * y, g) - mu_y**2
    cov = _filter(x * y, g) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs).mean(dim=(-2, -1)), cs.mean(dim=(-2, -1))


@per_image("ssim")
def ssim(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1.

    Args:
        images: N,C,H,W (or N,F,C,H,W video) float in [0, 1].
        reference: Same shape.

    Returns:
        Shape (N,), float64, at most 1 (identical images); mean over channels of the mean SSIM map. Higher is better.
    """
    x, y = images.double(), reference.double()
    size, sigma = ssim_window(*x.shape[-2:])
    value, _ = _ssim_cs(x, y, _gaussian(size, sigma, x))
    return value.mean(dim=1)


@per_image("ms_ssim")
def ms_ssim(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) with the standard 5 weights; fewer scales for small images.

    Args:
        images: N,C,H,W (or N,F,C,H,W video) float in [0, 1].
        reference: Same shape.

    Returns:
        Shape (N,), float64 in [0, 1]; ``prod_j cs_j ** w_j * ssim_M ** w_M`` per channel (negative terms clipped to 0
        as in ``pytorch_msssim``), averaged over channels. The scale rule is `ms_ssim_scales`. Higher is better.
    """
    x, y = images.double(), reference.double()
    scales = ms_ssim_scales(*x.shape[-2:])
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    if scales < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()
    g = _gaussian(*ssim_window(*x.shape[-2:]), x)
    terms = []
    for j in range(scales):
        s, cs = _ssim_cs(x, y, g)
        terms.append((s if j == scales - 1 else cs).clamp_min(0.0))
        if j < scales - 1:
            x, y = _halve(x), _halve(y)
    stacked = torch.stack(terms)  # (scales, N, C)
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(dim=1)
