"""The ``images`` example's helpers: uploads become the digits model's 64 features, digits become PNGs."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODULE_PATH = Path(__file__).parents[2] / "examples/images/imaging.py"


def _load() -> ModuleType:
    # The example is not a package on the path; load it the way its service file would be found.
    spec = importlib.util.spec_from_file_location("imaging", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


imaging = _load()


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _drawn_one(mode: str = "L", paper: int | tuple[int, ...] = 255, ink: int | tuple[int, ...] = 0) -> bytes:
    """A "1" as people draw it: one dark vertical stroke on a light, portrait page."""
    image = Image.new(mode, (200, 300), paper)
    ImageDraw.Draw(image).line([(100, 40), (100, 260)], fill=ink, width=24)
    return _encode(image)


def _header_only_png(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` but holds no pixel data at all.

    Decoding it fails ("truncated"), so being refused as too large shows the
    size was judged from the header, before any decoding was tried.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    # Pillow reads chunks up to the first IDAT before it reports a size; this one is empty.
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.data, bunch.target


# -- digit_png / pixels_to_png ---------------------------------------------------------------------


def test_digit_png_is_a_128_pixel_png_by_default():
    data = imaging.digit_png(3)
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (128, 128)
    assert imaging.PNG_MEDIA_TYPE == "image/png"


def test_digit_png_is_dark_ink_on_white_paper(digits):
    data, target = digits
    original = data[target == 0][0].reshape(8, 8)
    with Image.open(io.BytesIO(imaging.digit_png(0, scale=1))) as image:
        grey = np.asarray(image.convert("L"), dtype=float)
    assert grey.shape == (8, 8)
    # Background (0) is white, full ink (16) is black.
    assert np.all(grey[original == 0] == 255)
    assert np.all(grey[original == 16] == 0)


def test_scale_sets_the_size():
    with Image.open(io.BytesIO(imaging.digit_png(7, index=2, scale=3))) as image:
        assert image.size == (24, 24)


def test_pixels_to_png_needs_64_values():
    with pytest.raises(ValueError, match="64"):
        imaging.pixels_to_png([0.0] * 63)


@pytest.mark.parametrize("scale", [0, 65])
def test_pixels_to_png_refuses_a_scale_out_of_range(scale):
    with pytest.raises(ValueError, match="scale"):
        imaging.pixels_to_png([0.0] * 64, scale=scale)


def test_digit_png_refuses_a_digit_out_of_range():
    with pytest.raises(ValueError, match="digit"):
        imaging.digit_png(10)
    with pytest.raises(ValueError, match="digit"):
        imaging.digit_png(-1)


def test_digit_png_refuses_an_index_past_the_examples_and_says_how_many(digits):
    _, target = digits
    available = int((target == 5).sum())
    with pytest.raises(ValueError, match=f"{available} examples"):
        imaging.digit_png(5, index=available)
    imaging.digit_png(5, index=available - 1)  # the last one is there


# -- png_to_pixels --------------------------------------------------------------------------------

ROUND_TRIP = [(digit, index) for digit in range(10) for index in (0, 1)]


def test_round_trip_features_stay_close_to_the_originals(digits):
    data, target = digits
    differences = []
    for digit, index in ROUND_TRIP:
        original = data[target == digit][index]
        pixels = imaging.png_to_pixels(imaging.digit_png(digit, index=index))
        assert len(pixels) == 64
        assert all(0.0 <= v <= 16.0 for v in pixels)
        differences.append(np.abs(np.asarray(pixels) - original).mean())
    # Not exact: re-centring the ink box moves digits that sat off-centre by a
    # column (the data leave column 0 empty), and the margin shrinks them a
    # little. Measured: 1.25 on average (median 0.6), 4.1 for the worst of these 20.
    assert np.mean(differences) < 2.0


def test_round_tripped_digits_are_still_recognised(digits):
    data, target = digits
    rendered = {(digit, int(np.flatnonzero(target == digit)[index])) for digit, index in ROUND_TRIP}
    held_out = np.zeros(len(target), dtype=bool)
    held_out[[row for _, row in rendered]] = True
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(data[~held_out], target[~held_out])

    features = [imaging.png_to_pixels(imaging.digit_png(digit, index=index)) for digit, index in ROUND_TRIP]
    predicted = model.predict(np.asarray(features))
    correct = int((predicted == [digit for digit, _ in ROUND_TRIP]).sum())
    assert correct >= 17, f"{correct}/20 recognised: {predicted}"  # 19/20 when written


def _columns(pixels: list[float]) -> np.ndarray:
    return np.asarray(pixels).reshape(8, 8).sum(axis=0)


def test_a_dark_stroke_on_white_paper_becomes_ink_in_the_middle_columns():
    pixels = imaging.png_to_pixels(_drawn_one())
    columns = _columns(pixels)
    assert max(pixels) == 16.0  # inverted: the stroke is ink, the paper background
    assert columns[3:5].sum() > 0.9 * columns.sum()
    assert columns[:2].sum() == 0 and columns[6:].sum() == 0
    assert np.all(np.asarray(pixels).reshape(8, 8)[:, 3:5].sum(axis=1) > 0)  # the stroke runs top to bottom


def test_light_ink_on_a_dark_background_is_taken_as_it_is():
    assert imaging.png_to_pixels(_drawn_one(paper=0, ink=255)) == imaging.png_to_pixels(_drawn_one())


def test_a_transparent_canvas_export_reads_like_paper():
    # Drawing canvases export black strokes on transparent (0, 0, 0, 0) pixels:
    # without the alpha, stroke and background would both be black.
    exported = _drawn_one(mode="RGBA", paper=(0, 0, 0, 0), ink=(0, 0, 0, 255))
    assert imaging.png_to_pixels(exported) == imaging.png_to_pixels(_drawn_one())


def test_other_formats_pillow_reads_are_accepted():
    image = Image.open(io.BytesIO(_drawn_one())).convert("RGB")
    pixels = imaging.png_to_pixels(_encode(image, "JPEG"))
    columns = _columns(pixels)
    assert columns[3:5].sum() > 0.9 * columns.sum()


@pytest.mark.parametrize("paper", [0, 255])
def test_a_blank_image_is_refused(paper):
    blank = _encode(Image.new("L", (50, 50), paper))
    with pytest.raises(imaging.ImageError, match="blank"):
        imaging.png_to_pixels(blank)


@pytest.mark.parametrize("data", [b"", b"not an image at all", PNG_SIGNATURE + b"\x00" * 40])
def test_garbage_bytes_are_refused(data):
    with pytest.raises(imaging.ImageError, match="not an image Pillow can read"):
        imaging.png_to_pixels(data)


def test_a_truncated_image_is_refused():
    whole = _encode(Image.new("L", (100, 100), 255))
    with pytest.raises(imaging.ImageError, match="not an image Pillow can read"):
        imaging.png_to_pixels(whole[: whole.index(b"IDAT") + 4])


def test_an_image_over_max_pixels_is_refused_before_decoding():
    # 100x100 = 10,000 pixels against a limit of 9,999; decoding would fail, so the refusal came first.
    with pytest.raises(imaging.ImageError, match="too large: 100x100"):
        imaging.png_to_pixels(_header_only_png(100, 100), max_pixels=9_999)
    # At the limit the size is fine, and only then is decoding tried (and fails here).
    with pytest.raises(imaging.ImageError, match="not an image Pillow can read"):
        imaging.png_to_pixels(_header_only_png(100, 100), max_pixels=10_000)


@pytest.mark.parametrize(
    "side",
    [
        10_000,  # 100 million pixels: Pillow only warns about it, and would decode it
        40_000,  # 1.6 billion pixels: Pillow refuses it itself while opening
    ],
)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_is_refused_even_with_a_generous_limit(side):
    with pytest.raises(imaging.ImageError, match="too large"):
        imaging.png_to_pixels(_header_only_png(side, side), max_pixels=10**10)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_warning_raised_as_an_error_is_refused_too():
    with pytest.raises(imaging.ImageError, match="too large"):
        imaging.png_to_pixels(_header_only_png(10_000, 10_000), max_pixels=10**10)


def test_image_error_is_a_value_error():
    assert issubclass(imaging.ImageError, ValueError)
