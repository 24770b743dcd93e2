"""datasets/bilinear.c through datasets/bilinear.py: its AVX2 and plain C code give the same
bits, and bad arguments are errors, not wild memory accesses. (Its pixels against float
bilinear scaling: tests/test_datasets_transforms.py.)"""

import numpy as np
import pytest
import torch

from datasets.bilinear import CropScaler, axis_taps, use_avx2
from datasets.transforms import ArrayFrames, ClipParams, crop_taps, render_clip, resized_size


def test_vector_code_and_plain_c_give_the_same_bits():
    """Random frames, sizes and crops, strong shrinking included (taps too far apart for
    the vector code's loads): bilinear.c's AVX2 and plain C paths agree exactly."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(2, 300, 2))
        frame = rng.integers(0, 256, (height, width, 3), np.uint8)
        short_side = int(rng.integers(1, 2 * min(height, width) + 1))
        new_h, new_w = resized_size(height, width, short_side)
        if min(new_h, new_w) < 1:
            continue
        crop = int(rng.integers(1, min(new_h, new_w) + 1))
        params = ClipParams(short_side, bool(rng.integers(2)),
                            int(rng.integers(0, new_h - crop + 1)),
                            int(rng.integers(0, new_w - crop + 1)), crop)
        clips = []
        for avx2 in (True, False):
            previous = use_avx2(avx2)
            clips.append(render_clip(ArrayFrames([frame]), lambda h, w, p=params: p))
            use_avx2(previous)
        assert torch.equal(*clips), params


def test_taps_need_two_pixels_and_a_range_inside_the_axis():
    with pytest.raises(ValueError, match="axes need 2 pixels"):
        axis_taps(1, 4, 0, 2)
    with pytest.raises(ValueError, match=r"\[3, 6\)"):
        axis_taps(10, 5, 3, 3)
    taps = axis_taps(10, 5, 0, 5)
    assert (taps.weights.sum(axis=1) == 2048).all()


def test_scaler_checks_window_and_output():
    frame = np.zeros((40, 56, 3), np.uint8)
    rows, cols = crop_taps(40, 56, ClipParams(30, False, 2, 3, 20))
    scale = CropScaler(rows, cols)
    window = frame[rows.start : rows.stop, cols.start : cols.stop]
    out = np.empty((20, 20, 3), np.uint8)
    assert scale(window, out) is out
    with pytest.raises(ValueError, match="expected"):
        scale(window[1:], out)
    with pytest.raises(ValueError, match="expected"):
        scale(window, out[1:])
    with pytest.raises(ValueError, match="packed RGB"):
        scale(window[..., ::-1], out)  # BGR view: channels not in memory order
    with pytest.raises(ValueError, match="packed RGB"):
        scale(window.astype(np.float32), out)
