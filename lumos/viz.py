"""Image grids for looking at samples (the DESIGN's advice: look at the grid)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _wrap(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to lines at most ``width`` pixels wide (long words are split)."""
    lines, line = [], ""
    for word in str(text).split():
        while draw.textlength(word, font=font) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            line = candidate
        else:
            if line:
                lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def image_grid(images, ncols: int = 8, scale: int = 4, labels=None, pad: int = 2) -> Image.Image:
    """Tile uint8 images (N, H, W, 3) (or a list, or greyscale (N, H, W)) into one RGB image.

    Each tile is upscaled by ``scale`` with nearest neighbour; optional ``labels`` (one string per
    image) are written under the tiles in PIL's default font, wrapped to the tile width. Tiles
    are separated by ``pad`` pixels of white.
    """
    images = np.stack([np.asarray(im) for im in images])
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    n, h, w = images.shape[:3]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    tw, th = w * scale, h * scale

    font = ImageFont.load_default()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(t, scratch, font, tw) for t in labels] if labels is not None else None
    line_h = scratch.textbbox((0, 0), "Ag", font=font)[3] + 1
    label_h = max((len(ls) for ls in wrapped), default=0) * line_h if wrapped else 0

    grid = Image.new("RGB", (ncols * (tw + pad) + pad, nrows * (th + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        r, c = divmod(i, ncols)
        x, y = pad + c * (tw + pad), pad + r * (th + label_h + pad)
        tile = Image.fromarray(images[i].astype(np.uint8)).resize((tw, th), Image.NEAREST)
        grid.paste(tile, (x, y))
        for k, line in enumerate(wrapped[i] if wrapped else []):
            draw.text((x, y + th + k * line_h), line, fill="black", font=font)
    return grid


def shrink(images, width: int) -> np.ndarray:
    """uint8 (H, W, 3) images resized to `width` pixels wide, aspect ratio kept (PIL bicubic), as one
    array (all images must share one size): large samples in a grid of readable size."""
    out = []
    for img in images:
        h, w = img.shape[:2]
        out.append(np.asarray(Image.fromarray(img).resize((width, max(1, round(h * width / w))), Image.BICUBIC)))
    return np.stack(out)


def save_grid(path, images, **kwargs) -> Image.Image:
    """Build :func:`image_grid` of ``images`` (keyword arguments passed on) and save it to ``path``."""
    grid = image_grid(images, **kwargs)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return grid
