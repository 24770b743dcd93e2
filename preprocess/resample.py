"""Which decoded frames survive the 15-fps resampling of WORKLOAD.md ("Clips").

This is torchvision's ``VideoClips`` rule, reproduced bit for bit: with ``n`` decoded frames
and the stream's average rate ``fps``, torchvision first computes
``num_frames = floor(n * 15 / fps)`` (in double precision) and then calls
``_resample_video_idx(num_frames, fps, 15)``:

* ``fps / 15`` an integer ``s``: every ``s``-th frame from frame 0 (a slice over all ``n``
  frames, so ``ceil(n / s)`` frames);
* otherwise frame ``floor(k * step)`` for ``k < num_frames``, where torchvision multiplies a
  float32 ``arange`` by ``step = fps / 15``. We do the same arithmetic in float32, because
  exact arithmetic differs for long videos (29.97 fps: from kept frame 8509 on).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

TARGET_FPS = 15
CLIP_FRAMES = 16


def kept_frame_indices(n: int, fps: float, target_fps: int = TARGET_FPS) -> np.ndarray:
    """Source frame indices (0-based, int64) kept from a video of ``n`` decoded frames."""
    if n < 0 or not fps > 0:
        raise ValueError(f"need n >= 0 and fps > 0, got n={n}, fps={fps}")
    step = float(fps) / target_fps
    if step.is_integer():
        return np.arange(0, n, int(step), dtype=np.int64)
    num_frames = int(math.floor(n * target_fps / float(fps)))
    ks = np.arange(num_frames, dtype=np.float32)
    return np.floor(ks * np.float32(step)).astype(np.int64)


def clip_count(kept_frames: int, clip_frames: int = CLIP_FRAMES) -> int:
    """Number of consecutive, non-overlapping clips (the remainder is dropped)."""
    return kept_frames // clip_frames


_NTSC_BASES = (24, 30, 48, 60, 120)


def parse_fps(text: str | float) -> Fraction:
    """A frame rate as an exact fraction; 29.97, 23.976, 59.94 ... mean the NTSC rates
    (30000/1001 and so on), as video tools write them."""
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a frame rate: {text!r}") from None
    if value <= 0:
        raise ValueError(f"frame rate must be positive, got {text!r}")
    for base in _NTSC_BASES:
        ntsc = Fraction(base * 1000, 1001)
        if value != base and abs(value - ntsc) < Fraction(1, 100):
            return ntsc
    return value.limit_denominator(1001)
