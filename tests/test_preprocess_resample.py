"""The 15-fps resampling rule against torchvision's own VideoClips code."""

import math
from fractions import Fraction

import pytest
import torch
from torchvision.datasets.video_utils import VideoClips

from preprocess.resample import clip_count, kept_frame_indices, parse_fps

FPS = [30.0, 25.0, float(Fraction(30000, 1001)), 24.0, 15.0, 60.0]


def torchvision_kept(n: int, fps: float) -> list[int]:
    """What VideoClips.compute_clips_for_video keeps, before cutting clips."""
    num_frames = int(math.floor(n * 15 / fps))  # as compute_clips_for_video computes it
    idx = VideoClips._resample_video_idx(num_frames, fps, 15)
    return torch.arange(n)[idx].tolist() if isinstance(idx, slice) else idx.tolist()


@pytest.mark.parametrize("fps", FPS)
def test_kept_indices_match_torchvision(fps):
    for n in list(range(0, 130)) + [239, 240, 250, 299, 300, 301, 600, 601, 1800, 20000]:
        assert kept_frame_indices(n, fps).tolist() == torchvision_kept(n, fps), (fps, n)


def test_float32_arithmetic_like_torchvision_on_long_videos():
    # For long videos exact arithmetic picks a few different frames; we follow torchvision.
    fps = float(Fraction(30000, 1001))
    ours = kept_frame_indices(20000, fps)
    assert ours.tolist() == torchvision_kept(20000, fps)
    exact = [math.floor(k * fps / 15) for k in range(len(ours))]
    assert ours.tolist() != exact


def test_ten_second_clip_at_30_fps_gives_nine_clips():
    kept = kept_frame_indices(300, 30.0)
    assert len(kept) == 150 and clip_count(len(kept)) == 9
    assert kept[:3].tolist() == [0, 2, 4]


def test_parse_fps_understands_ntsc_rates():
    assert parse_fps("29.97") == Fraction(30000, 1001)
    assert parse_fps("23.976") == Fraction(24000, 1001)
    assert parse_fps("59.94") == Fraction(60000, 1001)
    assert parse_fps("30") == 30 and parse_fps("12.5") == Fraction(25, 2)
    with pytest.raises(ValueError):
        parse_fps("fast")
