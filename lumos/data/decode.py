"""Decode one curation input (a path or a file's bytes) into an RGB PIL image.

Every bad file becomes a :class:`BadImage` whose ``reason`` (one of :data:`REASONS`) is counted
in ``curation.json``; nothing here crashes on bad input. The header is read first so that an
oversized image is rejected before its pixels are decoded.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

REASONS = ("missing", "empty", "not_an_image", "corrupt", "too_large")

# What PIL's decoders raise on bad data (beyond OSError/ValueError/SyntaxError).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, struct.error, zlib.error)
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")
_INT_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class BadImage(Exception):
    """A file curation skips; ``.reason`` is the short key counted in curation.json."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def open_image(source, max_pixels: int = 1 << 28) -> Image.Image:
    """Open ``source`` (a str/Path, or the file's bytes) as a fully loaded RGB image with EXIF
    orientation applied; raise :class:`BadImage` for anything curation must skip.

    PIL's own decompression-bomb warning is treated as an error here (locally), so the effective
    pixel limit is ``min(max_pixels, Image.MAX_IMAGE_PIXELS)``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise BadImage("empty")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        try:
            st = path.stat()  # follows symlinks: a broken one is "missing"
        except (FileNotFoundError, NotADirectoryError):
            raise BadImage("missing", str(path)) from None
        except OSError as e:  # e.g. permission denied on a parent folder
            raise BadImage("corrupt", f"{path}: {e}") from None
        if not path.is_file():
            raise BadImage("not_an_image", f"{path}: not a regular file")
        if st.st_size == 0:
            raise BadImage("empty", str(path))
        fp = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                if img.width * img.height > max_pixels:
                    raise BadImage("too_large", f"{img.width}x{img.height} > {max_pixels} pixels")
                img.load()
                return to_rgb(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage("too_large", str(e)) from None
    except UnidentifiedImageError as e:  # subclass of OSError: must come first
        raise BadImage("not_an_image", str(e)) from None
    except _DECODE_ERRORS as e:
        raise BadImage("corrupt", f"{type(e).__name__}: {e}") from None


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    """A float array already scaled to 0..255 -> rounded, clipped 8-bit grey replicated to RGB."""
    grey = np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Integer grey (I;16*, I) is rescaled from 0..65535 (not clipped at 255 as ``convert('L')``
    does; an ``I`` image whose values exceed 65535 is scaled by its maximum). Float grey (F) is
    taken as 0..1 if its max is <= 1, else 0..255. Alpha modes and palette images with a
    transparent index are composited over white. Everything else uses ``convert('RGB')``.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _INT_GREY_MODES:
        a = np.asarray(img, dtype=np.float64).clip(min=0)
        return _grey_to_rgb(a * 255.0 / max(65535.0, float(a.max(initial=0))))
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        return _grey_to_rgb(a * 255.0 if a.max(initial=0) <= 1 else a)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
