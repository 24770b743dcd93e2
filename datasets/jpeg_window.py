"""Decode a window of a JPEG image: the ctypes side of ``datasets/jpeg_window.c`` (built
into ``datasets/_native.so``, ``datasets.native``).

Decoding only the window a clip's crop needs takes 0.85 to 0.9 of a full decode's time
per training frame (the entropy decoding of the whole file remains), with the same pixels
(docs/perf/loader.md).
"""

from __future__ import annotations

import numpy as np

from datasets.native import NativeMissing, load

_MESSAGE_SIZE = 200


class JpegError(ValueError):
    """Corrupt or truncated JPEG data, or a window outside the image."""


class WrongSize(JpegError):
    """The image is not the size the caller expected."""

    def __init__(self, height: int, width: int):
        super().__init__(f"image is {width}x{height}")
        self.height, self.width = height, width


def libjpeg_turbo_version() -> str | None:
    """The libjpeg-turbo version the decoder was built against ("2.1.5"), or None if the
    decoder is missing (for system.json)."""
    try:
        number = load().jpeg_window_libjpeg_turbo_version()
    except NativeMissing:
        return None
    return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}" if number else "libjpeg"


def _message(buffer: np.ndarray) -> str:
    return buffer.tobytes().split(b"\0", 1)[0].decode(errors="replace")


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) of a JPEG image, from its header."""
    dims, message = np.zeros(2, np.intc), np.zeros(_MESSAGE_SIZE, np.uint8)
    address = dims.ctypes.data
    status = load().jpeg_window_size(data, len(data), address, address + dims.itemsize,
                                     message.ctypes.data, _MESSAGE_SIZE)
    if status != 0:
        raise JpegError(_message(message))
    return int(dims[0]), int(dims[1])


# Columns the decoder may write beyond the window on either side: iMCU alignment (up to 32
# pixels) plus context, or its 32-pixel minimum width near the right edge (jpeg_window.c).
_PAD = 64


def decode_window(
    data: bytes, size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Rows ``[top, bottom)`` and columns ``[left, right)`` of a JPEG image of ``size``
    (height, width), as an RGB uint8 array (a view with a row stride of its own).

    Raises WrongSize if the image is not ``size``, JpegError on corrupt or truncated data
    anywhere in the file (all of it is entropy-decoded, as in a full decode)."""
    (top, bottom), (left, right) = rows, cols
    height, width = bottom - top, right - left
    row_pixels = width + 2 * _PAD
    # One buffer for the four ints the call reports back, the message and the pixels, so
    # that a frame costs one allocation (ctypes objects cost more than the call itself).
    head = 16 + _MESSAGE_SIZE
    pixels_size = max(0, height) * row_pixels * 3
    buffer = np.empty(head + pixels_size, np.uint8)
    dims = buffer[:16].view(np.intc)
    dims[:2] = size
    address = buffer.ctypes.data
    status = load().jpeg_window_decode(
        data, len(data), address, top, bottom, left, right, address + head, pixels_size,
        address + head + _PAD * 3, row_pixels * 3, address + 16, _MESSAGE_SIZE,
    )
    if status == 1:
        raise WrongSize(int(dims[0]), int(dims[1]))
    if status != 0:
        raise JpegError(_message(buffer[16:head]))
    return buffer[head:].reshape(height, row_pixels, 3)[:, _PAD : _PAD + width]
