"""Frame extraction on real small H.264 files: the right frames, the right pixels."""

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocess.encode import encode_mp4
from preprocess.extract import ExtractOptions, VideoError, decode_jpeg, extract_video, output_size
from preprocess.resample import kept_frame_indices
from tests.helpers.preprocess import smooth_frames

BITS = 8  # frame index written as 8 black/white stripes, 8 px wide each


def barcode_frames(count: int, height: int = 32) -> np.ndarray:
    frames = np.zeros((count, height, BITS * 8, 3), np.uint8)
    for i in range(count):
        for b in range(BITS):
            if i >> b & 1:
                frames[i, :, b * 8 : b * 8 + 8] = 255
    return frames


def read_barcode(rgb: np.ndarray) -> int:
    stripes = rgb.reshape(rgb.shape[0], BITS, 8, 3)[2:-2, :, 2:-2].mean(axis=(0, 2, 3))
    return sum(1 << b for b in range(BITS) if stripes[b] > 128)


@pytest.mark.parametrize("fps", ["30", "25", "30000/1001", "24", "15", "60"])
def test_extractor_keeps_exactly_the_torchvision_frames(tmp_path, fps):
    rate = Fraction(fps)
    n = int(17 * rate / 15) + 3  # a little more than one clip after resampling
    path = tmp_path / "v.mp4"
    encode_mp4(path, barcode_frames(n), rate, crf=10)
    video = extract_video(path, ExtractOptions())
    expected = kept_frame_indices(n, float(rate)).tolist()
    assert video.source_frames == n and video.source_fps == pytest.approx(float(rate))
    assert [read_barcode(decode_jpeg(j)) for j in video.jpegs] == expected


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


def test_stored_frames_match_opencv_decode_and_resize(tmp_path):
    path = tmp_path / "v.mp4"
    encode_mp4(path, smooth_frames(40, 192, 144), Fraction(30), crf=12)
    video = extract_video(path, ExtractOptions(short_side=72, quality=95))
    assert (video.width, video.height) == (96, 72)
    capture = cv2.VideoCapture(str(path))  # an independent decoder (OpenCV's own FFmpeg)
    reference = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        reference.append(cv2.resize(bgr[..., ::-1], (96, 72), interpolation=cv2.INTER_AREA))
    assert len(reference) == 40
    kept = kept_frame_indices(40, 30.0)
    assert len(video.jpegs) == len(kept) == 20
    for j, i in enumerate(kept):
        assert psnr(decode_jpeg(video.jpegs[j]), reference[i]) >= 35.0, (j, i)


def test_output_size_keeps_aspect_and_never_enlarges():
    assert output_size(640, 360, 320) == (568, 320)
    assert output_size(360, 640, 320) == (320, 568)
    assert output_size(340, 256, 320) == (340, 256)  # already small: kept as is
    assert output_size(1920, 1080, 320) == (568, 320)
    assert output_size(400, 400, 320) == (320, 320)


def test_odd_sizes_encode_deterministically(tmp_path):
    path = tmp_path / "v.mp4"
    encode_mp4(path, smooth_frames(34, 98, 66), Fraction(30))
    a = extract_video(path, ExtractOptions(short_side=33))
    b = extract_video(path, ExtractOptions(short_side=33))
    assert (a.width, a.height) == (50, 33) and a.jpegs == b.jpegs


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"not a video\n" * 50, "cannot open"), (None, "too short")],
)
def test_unusable_videos_raise_with_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is None:
        encode_mp4(path, barcode_frames(20), Fraction(30))  # 10 kept frames < 16
    else:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=reason):
        extract_video(Path(path), ExtractOptions())


def test_truncated_file_is_unusable(tmp_path):
    path = tmp_path / "v.mp4"
    encode_mp4(path, smooth_frames(40, 64, 48), Fraction(30))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError):
        extract_video(path, ExtractOptions())


def test_file_cut_short_after_its_header_is_unusable(tmp_path):
    """With the index at the front (faststart), the frames that remain still decode."""
    import subprocess

    import imageio_ffmpeg

    path, front = tmp_path / "v.mp4", tmp_path / "front.mp4"
    encode_mp4(path, smooth_frames(60, 64, 48), Fraction(30))
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(path),
                    "-c", "copy", "-movflags", "+faststart", str(front)], check=True)
    assert extract_video(front, ExtractOptions()).source_frames == 60
    data = front.read_bytes()
    front.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoError, match="decoding failed|truncated"):
        extract_video(front, ExtractOptions())
