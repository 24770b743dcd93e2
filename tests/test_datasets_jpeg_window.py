"""The window decoder (datasets/jpeg_window.c) against full decodes by PIL and simplejpeg:
the same pixels for any window, every chroma subsampling, odd sizes and progressive files;
damage anywhere in a file is an error even when the window does not reach it."""

import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from datasets.jpeg_window import JpegError, WrongSize, decode_window, jpeg_size
from tests.helpers.datasets import textured_frames

SUBSAMPLINGS = ["444", "422", "420", "440", "411", "Gray"]
SIZES = [(48, 64), (37, 53), (120, 161)]  # (height, width): aligned, odd, several iMCUs


def full_decode_pil(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def windows(height: int, width: int, rng: np.random.Generator, count: int):
    """Random windows plus the edges, corners, single pixels and iMCU-aligned ones."""
    fixed = [(0, height, 0, width), (0, 1, 0, 1), (height - 1, height, width - 1, width),
             (0, height, 16, min(width, 32)), (16, min(height, 32), 0, width),
             (15, 17, 15, 17), (height // 2, height, width // 2, width)]
    for top, bottom, left, right in fixed:
        yield (top, bottom), (left, right)
    for _ in range(count):
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        yield ((top, int(rng.integers(top + 1, height + 1))),
               (left, int(rng.integers(left + 1, width + 1))))


@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
@pytest.mark.parametrize("height, width", SIZES)
def test_window_equals_the_same_part_of_a_full_decode(subsampling, height, width):
    frame = textured_frames(1, height, width, 11)[0]
    colorspace = "GRAY" if subsampling == "Gray" else "RGB"
    image = frame[..., :1].copy() if colorspace == "GRAY" else frame
    data = simplejpeg.encode_jpeg(image, quality=90, colorspace=colorspace,
                                  colorsubsampling=subsampling)
    full = full_decode_pil(data)
    assert np.array_equal(full, simplejpeg.decode_jpeg(data, colorspace="RGB"))
    assert jpeg_size(data) == (height, width)
    rng = np.random.default_rng(hash((subsampling, height, width)) % 2**32)
    for rows, cols in windows(height, width, rng, 60):
        window = decode_window(data, (height, width), rows, cols)
        assert window.shape == (rows[1] - rows[0], cols[1] - cols[0], 3)
        expected = full[rows[0] : rows[1], cols[0] : cols[1]]
        assert np.array_equal(window, expected), (subsampling, rows, cols)


def test_progressive_and_kinetics_sized_frames():
    rng = np.random.default_rng(3)
    frame = textured_frames(1, 320, 426, 4)[0]
    for options in ({"progressive": True}, {"quality": 90, "subsampling": "4:2:0"}):
        out = io.BytesIO()
        Image.fromarray(frame).save(out, format="JPEG", **options)
        data = out.getvalue()
        full = full_decode_pil(data)
        for rows, cols in windows(320, 426, rng, 20):
            window = decode_window(data, (320, 426), rows, cols)
            assert np.array_equal(window, full[rows[0] : rows[1], cols[0] : cols[1]])


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return simplejpeg.encode_jpeg(textured_frames(1, 96, 128, 5)[0], quality=90)


def test_damage_outside_the_window_is_an_error(jpeg):
    top_left = ((0, 16), (0, 16))
    decode_window(jpeg, (96, 128), *top_left)  # intact: fine
    zeroed = jpeg[: len(jpeg) // 2] + bytes(len(jpeg) - len(jpeg) // 2)
    truncated = jpeg[: len(jpeg) * 2 // 3]
    for damaged in (zeroed, truncated):
        with pytest.raises(JpegError):
            decode_window(damaged, (96, 128), *top_left)


def test_garbage_wrong_size_and_bad_window(jpeg):
    with pytest.raises(JpegError, match="JPEG|Not a"):
        decode_window(b"\x00" * 500, (96, 128), (0, 4), (0, 4))
    with pytest.raises(JpegError):
        jpeg_size(b"not a jpeg")
    with pytest.raises(WrongSize) as caught:
        decode_window(jpeg, (96, 100), (0, 4), (0, 4))
    assert (caught.value.height, caught.value.width) == (96, 128)
    for rows, cols in [((0, 97), (0, 4)), ((5, 5), (0, 4)), ((0, 4), (-1, 4)),
                       ((0, 4), (10, 129))]:
        with pytest.raises(JpegError, match="outside the image"):
            decode_window(jpeg, (96, 128), rows, cols)


def test_a_missing_library_is_one_line_saying_how_to_build_it(monkeypatch, tmp_path):
    from datasets import jpeg_window, native
    from formats.store import StoreError

    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "LIBRARY", tmp_path / "_native.so")
    with pytest.raises(StoreError, match=r"_native\.so: cannot load .*`make native`") as e:
        native.load()
    assert "\n" not in str(e.value)
    assert jpeg_window.libjpeg_turbo_version() is None
