"""Image helpers for the ``images`` example: uploaded pictures in, digit pictures out.

The digits model (see ``examples/digits``) is trained on scikit-learn's bundled
digits data: 8x8 grey levels 0..16, ink bright (16) on a dark (0) background,
the digit filling the height of the box. People send something else entirely:
a photo or a canvas export of dark ink on white paper, any size, the digit
anywhere in it. ``png_to_pixels`` turns such an upload into the 64 features the
model expects, and ``pixels_to_png`` / ``digit_png`` go the other way so the
service can show what it was given or what a digit looks like.

Uploads are untrusted, so the pixel count is checked from the header before
any pixel data is decoded: a few kilobytes of PNG can otherwise expand into
gigabytes of memory (a decompression bomb).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["PNG_MEDIA_TYPE", "ImageError", "digit_png", "png_to_pixels", "pixels_to_png"]

PNG_MEDIA_TYPE: Final = "image/png"

SIDE: Final = 8  # the digits data are 8x8
MAX_LEVEL: Final = 16.0  # and grey levels 0..16
_INK_THRESHOLD: Final = 32  # out of 255 (2 of 16); below it is paper, JPEG noise or a shadow, not ink
# Room around the ink, as a fraction of its larger side, so strokes do not end in the outermost
# cells' edges; small, because every training digit touches the top and bottom of its box.
_MARGIN: Final = 0.02
_PAPER: Final = 255  # white, what an uploaded transparent background stands for


class ImageError(ValueError):
    """The upload is not an image this service can use; the message is meant for the user."""


def png_to_pixels(data: bytes, *, max_pixels: int = 4096 * 4096) -> list[float]:
    """Turn an uploaded picture of one digit into the 64 features the digits model expects.

    Any format Pillow reads is accepted (the name says PNG because that is what
    a drawing canvas exports). Raises ``ImageError`` for bytes that are not an
    image, images over ``max_pixels`` and images with no ink.
    """
    image = _decode(data, max_pixels)
    grey = np.asarray(image, dtype=np.float64)
    # The model knows bright ink on black; people draw dark ink on white.
    if grey.mean() > 127:
        grey = 255.0 - grey
    # Faint noise would otherwise widen the bounding box and add grey specks.
    grey[grey < _INK_THRESHOLD] = 0.0
    rows = np.flatnonzero(grey.any(axis=1))
    cols = np.flatnonzero(grey.any(axis=0))
    if rows.size == 0:
        raise ImageError("the image is blank: no digit found in it")
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    ink = grey[top:bottom, left:right]

    # The training digits were scaled to fill the height of their box, so where
    # and how big the digit was drawn must not matter: a square around the ink,
    # with the digit in its middle, is what gets shrunk to 8x8.
    height, width = ink.shape
    margin = round(max(height, width) * _MARGIN)
    square = max(height, width) + 2 * margin
    canvas = np.zeros((square, square), dtype=np.float64)
    y, x = (square - height) // 2, (square - width) // 2
    canvas[y : y + height, x : x + width] = ink

    # BOX averages whole areas, which is how the 8x8 features were made (counts
    # of set pixels in 4x4 blocks of a 32x32 bitmap); LANCZOS would ring.
    small = np.asarray(
        Image.fromarray(canvas.astype(np.float32)).resize((SIDE, SIDE), Image.Resampling.BOX),
        dtype=np.float64,
    )
    # Training digits almost all reach 16 somewhere, but a thin pen on a big
    # image covers little of each cell; stretching to full range makes up for it.
    peak = float(small.max())
    if peak <= 0.0:
        raise ImageError("the image is blank: no digit found in it")
    features = np.clip(small * (MAX_LEVEL / peak), 0.0, MAX_LEVEL)
    return [round(float(v), 2) for v in features.ravel()]


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode the first frame of ``data`` as greyscale, refusing oversized images unread."""
    # Pillow only warns between its bomb limit and twice that, and decodes anyway;
    # holding our limit to Pillow's refuses those too. (Turning the warning into
    # an error with warnings.catch_warnings would do the same, but it swaps
    # process-wide state, which is not safe with requests served on threads.)
    if Image.MAX_IMAGE_PIXELS is not None:
        max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS)
    try:
        # Image.open reads only the header, so the size is known before any pixel data is decoded.
        opened = Image.open(io.BytesIO(data))
        width, height = opened.size
        if width * height > max_pixels:
            raise ImageError(f"the image is too large: {width}x{height} pixels, at most {max_pixels} allowed")
        opened.load()
        image: Image.Image = ImageOps.exif_transpose(opened)  # phone photos are often stored sideways
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            # Canvas exports draw ink on transparent pixels, which are black
            # underneath; on paper-white they read as the drawing they look like.
            paper = Image.new("RGBA", image.size, (_PAPER, _PAPER, _PAPER, 255))
            image = Image.alpha_composite(paper, image.convert("RGBA"))
        return image.convert("L")
    except ImageError:
        raise
    # The warning arrives as an exception only where warnings are set to be errors (python -W error).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        # Its own message names a BytesIO object, which means nothing to the user.
        raise ImageError("not an image Pillow can read: unknown format or damaged data") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports broken files through all of these, depending on the format.
        raise ImageError(f"not an image Pillow can read: {exc}") from exc


def pixels_to_png(pixels: Sequence[float], *, scale: int = 16) -> bytes:
    """Render 64 grey levels (0..16, row by row) as a PNG of dark ink on white paper.

    Each feature becomes a ``scale`` x ``scale`` block (NEAREST), so the default
    is 128x128: blocky, but it shows exactly what the model sees.
    """
    if len(pixels) != SIDE * SIDE:
        raise ValueError(f"expected {SIDE * SIDE} pixel values, got {len(pixels)}")
    if not 1 <= scale <= 64:
        raise ValueError(f"scale must be between 1 and 64, got {scale}")
    levels = np.clip(np.asarray(pixels, dtype=np.float64).reshape(SIDE, SIDE), 0.0, MAX_LEVEL)
    # Inverted, because a digit reads as a drawing when it is dark on white.
    grey = np.rint(255.0 - levels * (255.0 / MAX_LEVEL)).astype(np.uint8)
    image = Image.fromarray(grey)  # uint8 -> mode L
    if scale != 1:
        image = image.resize((SIDE * scale, SIDE * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def digit_png(digit: int, *, index: int = 0, scale: int = 16) -> bytes:
    """The ``index``-th example of ``digit`` in scikit-learn's digits data, as a PNG."""
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be between 0 and 9, got {digit}")
    examples = _examples_of(digit)
    if not 0 <= index < len(examples):
        raise ValueError(
            f"index must be between 0 and {len(examples) - 1}: "
            f"there are {len(examples)} examples of {digit}, got {index}"
        )
    return pixels_to_png(examples[index].tolist(), scale=scale)


def _examples_of(digit: int) -> NDArray[np.float64]:
    data, target = _digits()
    return np.asarray(data[target == digit], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """scikit-learn's digits data: (n, 64) features and their labels.

    Loaded on first use rather than at import: importing scikit-learn and
    reading the data takes a noticeable part of a second, which a service
    that only decodes uploads need not pay.
    """
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]  # no type hints shipped

    bunch = load_digits()
    data = np.asarray(bunch.data, dtype=np.float64)
    target = np.asarray(bunch.target, dtype=np.int64)
    data.setflags(write=False)  # shared through the cache, so nobody may change it
    target.setflags(write=False)
    return data, target
