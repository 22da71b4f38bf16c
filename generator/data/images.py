"""Pixel helpers shared by the folder loader and video ingestion: one RGB conversion, one crop.

Everything that turns a picture into what the network sees lives here, so a dataset image,
a probe file and an ingested video frame go through exactly the same steps.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

# Modes whose pixels are wider than 8 bits: PIL's own convert("RGB") clips them to 255.
WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# Modes (besides palette/key-colour transparency) that carry an alpha channel.
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Every mode to_rgb handles; anything else (LAB, HSV, ...) is reported as unusable.
SUPPORTED_MODES = WIDE_MODES | ALPHA_MODES | {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr"}
# Transparent pixels become mid-grey: about 0 after to_model_input, i.e. "no signal".
BACKGROUND = (128, 128, 128, 255)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any supported mode to 8-bit RGB, upright per EXIF, so every source looks the same."""
    img = ImageOps.exif_transpose(img)
    if img.mode in WIDE_MODES:
        return Image.fromarray(_wide_to_uint8(img), "L").convert("RGB")
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        over = Image.new("RGBA", img.size, BACKGROUND)
        return Image.alpha_composite(over, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale 16-bit (and 32-bit int/float) grey to 0-255 instead of clipping it.

    ``I;16*`` is always 16-bit. ``I`` and ``F`` carry no range, so it is guessed from the
    data: floats up to 1.0 are 0-1, values up to 255 are 8-bit, anything larger is 16-bit.
    """
    values = np.asarray(img, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    if img.mode.startswith("I;16") or peak > 255.0:
        values = values / 257.0
    elif img.mode == "F" and peak <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def fit_square(img: Image.Image, size: int, *, native_scale: bool = False) -> Image.Image:
    """The centre ``size`` x ``size`` square, after resizing the short side to ``size``.

    With ``native_scale`` the picture keeps its own pixel scale (a crop of a video frame)
    and is only resized when it is smaller than ``size`` in either dimension.
    """
    width, height = img.size
    if not native_scale or min(width, height) < size:
        scale = size / min(width, height)
        width, height = max(size, round(width * scale)), max(size, round(height * scale))
        # PIL's resize filters are antialiased; reducing_gap first box-reduces big images.
        img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (width - size) // 2, (height - size) // 2
    return img.crop((left, top, left + size, top + size))


def fit_box(img: Image.Image, height: int, width: int) -> Image.Image:
    """The centre ``height`` x ``width`` box after resizing so the box just fits inside
    (``fit_square`` for a non-square input; a square box is exactly ``fit_square``)."""
    if height == width:
        return fit_square(img, height)
    scale = max(width / img.size[0], height / img.size[1])
    new_w = max(width, round(img.size[0] * scale))
    new_h = max(height, round(img.size[1] * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return img.crop((left, top, left + width, top + height))


def to_chw(img: Image.Image) -> np.ndarray:
    """An RGB image as a writable, contiguous ``(3, H, W)`` uint8 array, torch's layout."""
    return np.ascontiguousarray(np.array(img, dtype=np.uint8).transpose(2, 0, 1))


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` (any C) to float32 in [-1, 1]: the one normalisation."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_model_input expects uint8 images, got {images.dtype}")
    return images.to(torch.float32).div(255.0).sub(0.5).div(0.5)
