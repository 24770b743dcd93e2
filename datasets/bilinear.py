"""Bilinear scaling of a crop, computing only the crop's pixels: the workload's resize
(half-pixel centres, no antialiasing: ``F.interpolate(mode="bilinear",
align_corners=False)``, pytorchvideo's ``ShortSideScale``), on uint8 frames.

``axis_taps`` gives, per output row or column, the source pixel of its left (upper) tap and
the two weights, as exact integer arithmetic on the sample position
``(j + 0.5) * size / new_size - 0.5``; ``CropScaler`` applies them to each frame's window
with ``datasets/bilinear.c``. The result is the float computation rounded to uint8 but for
about 0.2% of pixels that lie within 0.07 of a rounding tie, which may go the other way:
at most 0.57 of a grey level from the float value (tests). Scaling only the crop's
pixels from the window its taps read does no work for pixels the crop drops, and a flipped
crop is the same work with the column taps reversed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.native import load

# Weights are integers out of ONE (bilinear.c's fixed point).
ONE = 2048


@dataclass(frozen=True)
class Taps:
    """One axis of a crop: output pixel k reads source pixels ``start + offsets[k]`` and the
    one after it, with ``weights[k]`` (out of ONE). Source pixels ``[start, stop)`` are all
    the crop reads on this axis."""

    start: int
    stop: int
    offsets: np.ndarray  # int32, per output pixel
    weights: np.ndarray  # int16, (pixels, 2)


def axis_taps(size: int, new_size: int, first: int, length: int, mirrored: bool = False) -> Taps:
    """The taps of pixels ``[first, first + length)`` of an axis of ``size`` source pixels
    scaled to ``new_size``; with ``mirrored``, of the mirrored scaled axis (its pixel k is
    scaled pixel ``new_size - 1 - k``).

    Scaled pixel j samples source position x = (j + 0.5) * size / new_size - 0.5 between
    pixels floor(x) and floor(x) + 1, weighted by their distance to it; positions before
    the first pixel take the first pixel and positions past the last take the last, as
    ``F.interpolate`` clamps them."""
    if size < 2 or not 0 <= first <= first + length <= new_size or length < 1:
        raise ValueError(f"no taps for pixels [{first}, {first + length}) of {size} -> "
                         f"{new_size} (axes need 2 pixels)")
    j = np.arange(first, first + length, dtype=np.int64)
    if mirrored:
        j = new_size - 1 - j
    # x = numerator / denominator exactly; its fraction rounded to 1/ONE is the right weight.
    numerator, denominator = (2 * j + 1) * size - new_size, 2 * new_size
    left = numerator // denominator
    right = (2 * (numerator - left * denominator) * ONE + denominator) // (2 * denominator)
    right[left < 0] = 0  # before the first pixel: the first pixel
    left[left < 0] = 0
    past = left >= size - 1  # the last pixel, as the right tap of the pair before it
    left[past], right[past] = size - 2, ONE
    start, stop = int(left.min()), int(left.max()) + 2
    weights = np.stack([ONE - right, right], axis=1).astype(np.int16)
    return Taps(start, stop, (left - start).astype(np.intc), weights)


class CropScaler:
    """Scales windows to one crop (``rows``, ``cols``): every frame of a clip, which share
    their taps. A window is the frame's rows ``rows.start:stop`` and columns
    ``cols.start:stop``, RGB uint8 (a view of a larger array is fine)."""

    def __init__(self, rows: Taps, cols: Taps):
        self.rows, self.cols = rows, cols
        self.shape = (rows.stop - rows.start, cols.stop - cols.start, 3)
        self.out_shape = (len(rows.offsets), len(cols.offsets), 3)
        self._lib = load()
        self._scratch = np.empty(self._lib.bilinear_scratch_bytes(len(cols.offsets)), np.uint8)
        # Addresses taken once: numpy's .ctypes costs about a microsecond per use.
        self._tables = [a.ctypes.data for a in (rows.offsets, rows.weights, cols.offsets,
                                                cols.weights, self._scratch)]

    def __call__(self, window: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Scale ``window`` into ``out`` (crop rows x crop columns x 3, uint8) and return it."""
        if window.shape != self.shape or out.shape != self.out_shape:
            raise ValueError(f"window {window.shape} / output {out.shape}, expected "
                             f"{self.shape} / {self.out_shape}")
        for array in (window, out):
            if array.dtype != np.uint8 or array.strides[1:] != (3, 1):
                raise ValueError("windows and outputs are uint8 arrays of packed RGB pixels")
        y, yw, x, xw, scratch = self._tables
        status = self._lib.bilinear_crop(
            window.ctypes.data, window.strides[0], self.shape[0], self.shape[1], y, yw,
            self.out_shape[0], x, xw, self.out_shape[1], out.ctypes.data, out.strides[0], scratch,
        )
        if status != 0:  # the taps are checked against the window in C, too
            raise ValueError("a tap outside the window")
        return out


def use_avx2(enable: bool | None = None) -> bool:
    """Whether ``bilinear.c`` uses its AVX2 code (if the CPU has it); ``enable=False``
    switches to its plain C, ``True`` back. Returns the setting before the call. Same pixels
    either way (for tests and the loader benchmark)."""
    lib = load()
    previous = bool(lib.bilinear_avx2(-1))
    if enable is not None:
        lib.bilinear_avx2(int(enable))
    return previous
