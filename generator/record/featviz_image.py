"""The image a feature visualization optimises: a decorrelated Fourier parametrization
(Lucid; see ``featviz``) in the model input's channels, how it is stored (uint8 RGB
sheets) and read back for a warm start, and the random views the model sees.

Kept apart from the optimisation so each module stays one idea; ``featviz`` re-exports
these names.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

DECAY_POWER = 1.0  # spectrum scale 1 / frequency ** DECAY_POWER
INIT_SD = 0.01  # the first spectrum's noise: a near-grey start
MAGIC = 4.0  # Lucid's divisor of the spatial image before the sigmoid
PAD = 1 / 8  # grey border added before the transforms, as a share of the side
JITTER = 1 / 16  # random shift each way, as a share of the side
SCALE = 0.1  # random scale in [1 - SCALE, 1 + SCALE]
ROTATION = 10.0  # random rotation in degrees, each way
# sqrt of the ImageNet colour covariance (Lucid): maps decorrelated colour to RGB
COLOR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64
)
COLOR = COLOR_SQRT / np.linalg.norm(COLOR_SQRT, axis=0).max()


# -- the image parametrization --------------------------------------------------------------
def spectrum_scale(size: int) -> torch.Tensor:
    """(size, size // 2 + 1) weights 1 / max(frequency, 1 / size) ** DECAY_POWER."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    frequency = np.sqrt(fx * fx + fy * fy)
    return torch.from_numpy(1.0 / np.maximum(frequency, 1.0 / size) ** DECAY_POWER).float()


def spectrum_to_image(spectrum: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S // 2 + 1, 2) real/imaginary spectrum -> (B, C, S, S) in (0, 1); for
    C = 3 through the decorrelated colour space, else each channel on its own."""
    size = scale.shape[0]
    complex_spectrum = torch.view_as_complex(spectrum) * scale
    spatial = torch.fft.irfft2(complex_spectrum, s=(size, size), norm="ortho") / MAGIC
    if spatial.shape[1] != 3:
        return torch.sigmoid(spatial)
    color = torch.as_tensor(COLOR, dtype=spatial.dtype, device=spatial.device)
    return torch.sigmoid(torch.einsum("ij,bjhw->bihw", color, spatial))


def image_to_spectrum(image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The exact inverse of ``spectrum_to_image`` for images in (0, 1): a warm start."""
    logits = torch.logit(image.double())
    decorrelated = logits
    if logits.shape[1] == 3:
        inverse = torch.from_numpy(np.linalg.inv(COLOR))
        decorrelated = torch.einsum("ij,bjhw->bihw", inverse, logits)
    complex_spectrum = torch.fft.rfft2(decorrelated * MAGIC, norm="ortho") / scale.double()
    return torch.view_as_real(complex_spectrum).float().contiguous()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(B, C, S, S) in [0, 1] -> (B, S, S, 3) uint8, as stored: RGB as is, one channel
    grey, two with a grey third, more as their first three."""
    pixels = (image.detach() * 255).round().clamp(0, 255).to(torch.uint8)
    channels = pixels.shape[1]
    if channels == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    elif channels == 2:
        pixels = torch.cat([pixels, torch.full_like(pixels[:, :1], 128)], dim=1)
    return pixels[:, :3].permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(images: np.ndarray, channels: int = 3) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, channels, S, S) pixel centres in (0, 1) (never 0 or 1:
    logit); the inverse of ``to_uint8`` (channels beyond the third start grey)."""
    shown = (torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).double() + 0.5) / 256
    if channels <= 3:
        return shown[:, :channels]
    grey = torch.full((shown.shape[0], channels - 3, *shown.shape[2:]), 0.5, dtype=shown.dtype)
    return torch.cat([shown, grey], dim=1)


# -- robustness transforms ------------------------------------------------------------------
def random_views(
    image: torch.Tensor, generator: torch.Generator, out: tuple[int, int] | None = None
) -> torch.Tensor:
    """Each image padded with grey, then shifted, scaled and rotated at random (its own
    draw), resampled bilinearly in one ``grid_sample`` to ``out`` (height, width; default:
    the padded size). A non-square ``out`` shows the middle of the square image."""
    batch = image.shape[0]
    pad = round(image.shape[-1] * PAD)
    padded = nn.functional.pad(image, (pad,) * 4, value=0.5)
    side = padded.shape[-1]
    jitter = image.shape[-1] * JITTER
    draws = torch.rand(batch, 4, generator=generator).to(image.device)
    angle = (draws[:, 0] * 2 - 1) * math.radians(ROTATION)
    zoom = 1 + (draws[:, 1] * 2 - 1) * SCALE
    shift = (draws[:, 2:] * 2 - 1) * (2 * jitter / side)  # grid units: 2 = the whole side
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    height, width = out or (side, side)
    if width > height:  # keep the aspect: the output's shorter side spans less of the image
        theta[:, :, 1] *= height / width
    elif height > width:
        theta[:, :, 0] *= width / height
    size = [batch, padded.shape[1], height, width]
    grid = nn.functional.affine_grid(theta, size, align_corners=False)
    return nn.functional.grid_sample(padded, grid, padding_mode="border", align_corners=False)
