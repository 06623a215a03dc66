"""Decode one curation input (a path or a file's bytes) into RGB pixels.

Every bad file becomes a :class:`BadImage` whose ``reason`` (one of :data:`REASONS`) is counted
in ``curation.json``; nothing here crashes on bad input. The header is read first so that an
oversized image is rejected before its pixels are decoded.

Curation decodes only what it keeps (:func:`open_lazy`): the header gives the size (pixel limit,
`min_side`) and the EXIF orientation with no pixel decoded; a JPEG is then decoded at the smallest
DCT scale (1/2, 1/4, 1/8: libjpeg's reduced decode, ``Image.draft``) that leaves its crop at least
:data:`DRAFT_MARGINS` times the output size, resized straight from the crop box (no crop copy), and
the orientation applied to the small result (no full-size copy). The output is within a stated
tolerance of the full-size decode (docs/curation-decode.md; tests/test_decode.py checks it).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

REASONS = ("missing", "empty", "not_an_image", "corrupt", "too_large")

# What PIL's decoders raise on bad data (beyond OSError/ValueError/SyntaxError).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, struct.error, zlib.error)
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")
_INT_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# EXIF orientation -> the transpose that shows the stored image upright (ImageOps.exif_transpose's table).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
_ORIENTATION = 0x0112

# A reduced JPEG decode at 1/s keeps its crop >= DRAFT_MARGINS[s] x the output size, then bicubic from
# there: at 1/2 libjpeg's scaled IDCT is a good low-pass, at 1/4 and 1/8 (2x2 and 1x1 of each block's
# coefficients) it aliases unless the bicubic step still halves it (docs/curation-decode.md).
DRAFT_MARGINS = {8: 2.0, 4: 2.0, 2: 1.25}
REDUCING_GAP = 3.0  # Image.resize's reducing_gap: a box reduce first where the bicubic step is > 3x (PNG, huge JPEGs)


class BadImage(Exception):
    """A file curation skips; ``.reason`` is the short key counted in curation.json."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@contextmanager
def _decoding():
    """PIL's errors as BadImage reasons; its decompression-bomb warning is an error here (locally)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage("too_large", str(e)) from None
    except UnidentifiedImageError as e:  # subclass of OSError: must come first
        raise BadImage("not_an_image", str(e)) from None
    except _DECODE_ERRORS as e:
        raise BadImage("corrupt", f"{type(e).__name__}: {e}") from None


def center_box(w: int, h: int, height: int, width: int | None = None) -> tuple[int, int, int, int]:
    """The centered crop of a `w` x `h` image with the aspect ratio of `height` x `width` (square by
    default): the largest such box, its size rounded and its offset floored."""
    width = width or height
    scale = min(w / width, h / height)
    cw, ch = round(width * scale), round(height * scale)
    return (w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch


def _stored_box(orientation: int, box, w: int, h: int) -> tuple:
    """A box of the upright image (after EXIF `orientation`) in the stored `w` x `h` image's coordinates."""
    x0, y0, x1, y1 = box
    return {1: (x0, y0, x1, y1), 2: (w - x1, y0, w - x0, y1), 3: (w - x1, h - y1, w - x0, h - y0),
            4: (x0, h - y1, x1, h - y0), 5: (y0, x0, y1, x1), 6: (y0, h - x1, y1, h - x0),
            7: (w - y1, h - x1, w - y0, h - x0), 8: (w - y1, x0, w - y0, x1)}[orientation]


class LazyImage:
    """An image whose header is read and whose pixels are not decoded yet (:func:`open_lazy`).

    ``stored_size`` is the header's (width, height); ``size`` is the upright one (EXIF orientation
    applied; reading it decodes nothing for a JPEG, a PNG keeps its EXIF after the pixels and is
    loaded). Decode with :meth:`crop_resize` (curation) or :meth:`load` (the full image); each
    raises :class:`BadImage`. A context manager: closing it releases the file.
    """

    def __init__(self, img: Image.Image):
        self._img = img
        self.stored_size = img.size
        self._orientation: int | None = None

    @property
    def orientation(self) -> int:
        """The EXIF orientation (1 to 8; 1 when absent or invalid)."""
        if self._orientation is None:
            with _decoding():
                value = self._img.getexif().get(_ORIENTATION, 1)
            self._orientation = value if value in _TRANSPOSE else 1
        return self._orientation

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.stored_size
        return (h, w) if self.orientation in (5, 6, 7, 8) else (w, h)

    def load(self) -> Image.Image:
        """The whole image as RGB, upright (no copy when it is stored upright in RGB)."""
        orientation = self.orientation
        with _decoding():
            self._img.load()
            img = self._img.transpose(_TRANSPOSE[orientation]) if orientation != 1 else self._img
            return to_rgb(img)

    def crop_resize(self, height: int, width: int | None = None, margins: dict = DRAFT_MARGINS) -> np.ndarray:
        """The upright image center-cropped to the aspect ratio of `height` x `width` (square by
        default, :func:`center_box`) and resized to that size (bicubic), as uint8 (height, width, 3).

        A JPEG is decoded at the smallest DCT scale 1/s that keeps the crop >= `margins[s]` x the
        output (``Image.draft``); the resize reads the crop box straight from the decoded image, in
        its stored orientation, and only the small result is transposed upright."""
        width = width or height
        orientation = self.orientation
        w, h = self.stored_size
        box = _stored_box(orientation, center_box(*self.size, height, width), w, h)
        out_size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        img = self._img
        with _decoding():
            scale = next((s for s in (8, 4, 2) if (box[2] - box[0]) / s >= margins[s] * out_size[0]
                          and (box[3] - box[1]) / s >= margins[s] * out_size[1]), 1)
            jpeg = img.format in ("JPEG", "MPO")
            drafted = img.draft(None, (w // scale, h // scale)) if scale > 1 and jpeg else None
            scale = round(w / drafted[1][2]) if drafted else 1  # the scale the decoder was given
            img.load()
            img = to_rgb(img)  # before resizing: P and 1 would resize NEAREST, alpha composites over white
            img = img.resize(out_size, Image.BICUBIC, box=tuple(v / scale for v in box), reducing_gap=REDUCING_GAP)
            if orientation != 1:
                img = img.transpose(_TRANSPOSE[orientation])
            return np.asarray(img, dtype=np.uint8)

    def close(self) -> None:
        """Release the file (the decoded pixels stay usable)."""
        self._img.__exit__()

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_lazy(source, max_pixels: int = 1 << 28) -> LazyImage:
    """Read the header of ``source`` (a str/Path, or the file's bytes): a :class:`LazyImage`, or
    :class:`BadImage` for a file that is missing, empty, not an image or over the pixel limit.
    Decode errors surface when it is decoded.

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
    with _decoding():
        img = Image.open(fp)
        if img.width * img.height > max_pixels:
            img.close()
            raise BadImage("too_large", f"{img.width}x{img.height} > {max_pixels} pixels")
    return LazyImage(img)


def open_image(source, max_pixels: int = 1 << 28) -> Image.Image:
    """Open ``source`` (a str/Path, or the file's bytes) as a fully loaded RGB image with EXIF
    orientation applied; raise :class:`BadImage` for anything curation must skip.

    PIL's own decompression-bomb warning is treated as an error here (locally), so the effective
    pixel limit is ``min(max_pixels, Image.MAX_IMAGE_PIXELS)``.
    """
    with open_lazy(source, max_pixels) as lazy:
        return lazy.load()


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
