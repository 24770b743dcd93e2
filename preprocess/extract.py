"""One video -> the JPEG files of its kept frames.

Decoding uses PyAV, as torchvision's video reader did: ``n`` is the number of frames the
decoder returns and ``fps`` the stream's average rate. Every frame is decoded (H.264 needs
them), but only kept frames are resized and encoded. Pixels come from libswscale (the
conversion behind torchvision's ``to_ndarray(format="rgb24")``), resized with area averaging,
and encoded by libjpeg-turbo (simplejpeg) at a fixed quality with 4:2:0 chroma, the usual JPEG
layout (see ``encode_frame``). Frames are never enlarged: a source whose short side is
already at most ``short_side`` keeps its size, so later resizing starts from source pixels.
The coded size is used (sample aspect ratio and rotation tags are ignored, as torchvision did).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import simplejpeg

from preprocess.resample import CLIP_FRAMES, kept_frame_indices

INTERPOLATION = "AREA"
MIN_FPS, MAX_FPS = 1, 1000  # frame rates a real video can have


class VideoError(Exception):
    """A video that cannot be used; the message is the reason recorded in failures.csv."""


@dataclass(frozen=True)
class ExtractOptions:
    format: str = "jpg"
    short_side: int = 320
    quality: int = 90


@dataclass
class ExtractedVideo:
    jpegs: list[bytes]
    source_fps: float
    source_frames: int
    source_width: int
    source_height: int
    width: int
    height: int


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size with the short side scaled down to ``short_side``, never enlarged. The long side
    keeps the aspect ratio, rounded to an even number (as ffmpeg's ``scale=-2``) so that 4:2:0
    chroma covers the picture exactly."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    long = 2 * int(max(width, height) * short_side / short / 2 + 0.5)
    return (short_side, long) if width <= height else (long, short_side)


class _KeptSet:
    """Membership test for kept frame indices while the frame count is still unknown.

    Kept indices for ``n`` frames are a prefix of those for any larger count, so a table
    computed for a larger count (doubled when exceeded) answers for every frame. It is sized
    by the frames decoded so far, never by the count a header claims (which can be anything)."""

    def __init__(self, fps: float):
        self.fps = fps
        self._grow(256)

    def _grow(self, count: int) -> None:
        self.count = count
        self.indices = set(kept_frame_indices(count, self.fps).tolist())

    def __contains__(self, i: int) -> bool:
        if i >= self.count - 1:
            self._grow(self.count * 2)
        return i in self.indices


# Colour matrices that libswscale converts with the BT.601 matrix, which is also JPEG's.
_BT601_FAMILY = {2, 4, 5, 6}  # unspecified, FCC, BT.470BG, SMPTE 170M


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return np.ascontiguousarray(rows[:, : plane.width])


def encode_frame(frame: av.VideoFrame, size: tuple[int, int], quality: int) -> bytes:
    """One decoded frame, resized to ``size``, as JPEG (4:2:0) bytes."""
    width, height = size
    if int(frame.colorspace) in _BT601_FAMILY and width % 2 == 0 and height % 2 == 0:
        # JPEG stores BT.601 full-range YCbCr: scale in YUV, stretch the range and hand the
        # planes to libjpeg-turbo. Same pixels as going through RGB, at half the cost. (Odd
        # sizes go through RGB: libjpeg-turbo's planar input then reads past the planes.)
        small = frame.reformat(width, height, format="yuvj420p", interpolation=INTERPOLATION,
                               threads=1)
        return simplejpeg.encode_jpeg_yuv_planes(
            _plane(small, 0), _plane(small, 1), _plane(small, 2), quality=quality
        )
    # Other matrices (BT.709, ...): convert to RGB with the frame's own matrix, as a decoder
    # returning RGB does. Scaling first in YUV keeps libswscale on its fast paths.
    small = frame.reformat(width, height, format="yuv420p", interpolation=INTERPOLATION,
                           threads=1)
    rgb = small.to_ndarray(format="rgb24", threads=1)
    return simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="RGB", colorsubsampling="420")


def extract_video(path: Path, opts: ExtractOptions, decode_threads: int = 1) -> ExtractedVideo:
    """Decode ``path`` and return its kept frames as JPEG bytes, in kept order.

    Raises VideoError (with the reason) for anything that makes the video unusable."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as e:
        link = " (a broken symbolic link)" if path.is_symlink() else ""
        raise VideoError(f"cannot read: {e.strerror}{link}") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the decoder forever
        raise VideoError("not a regular file (a folder, FIFO or device named like a video)")
    if info.st_size == 0:
        raise VideoError("empty file")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot open: {e.strerror or e}") from None
    with container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        if not stream.average_rate or stream.average_rate <= 0:
            raise VideoError("video stream has no frame rate")
        if not MIN_FPS <= stream.average_rate <= MAX_FPS:
            # Below 1 fps the 15-fps rule would repeat each decoded frame more than 15 times.
            raise VideoError(f"implausible frame rate {float(stream.average_rate):.6g} fps in "
                             f"the header (expected {MIN_FPS} to {MAX_FPS})")
        fps = float(stream.average_rate)
        if decode_threads != 1:  # 0 = as many as the decoder likes
            stream.thread_type = "AUTO"
        stream.thread_count = max(decode_threads, 0)
        kept = _KeptSet(fps)
        encoded: dict[int, bytes] = {}
        n = 0
        whole_packets = 0  # packets read in full (the demuxer flags one cut short as corrupt)
        size = src = None
        try:
            for packet in container.demux(stream):
                whole_packets += bool(packet.size) and not packet.is_corrupt
                for frame in packet.decode():  # the last, empty packet flushes the decoder
                    if n in kept:
                        if size is None:
                            src = (frame.width, frame.height)
                            size = output_size(frame.width, frame.height, opts.short_side)
                        encoded[n] = encode_frame(frame, size, opts.quality)
                    n += 1
        except av.error.FFmpegError as e:
            raise VideoError(f"decoding failed after {n} frames: {e.strerror or e}") from None
    if n == 0:
        raise VideoError("no decodable video frames")
    # A file cut short after its index (mp4 "faststart") can decode without an error: the
    # index lists more frames than the file still holds.
    if stream.frames > 0 and whole_packets < stream.frames:
        raise VideoError(f"truncated: the file holds {whole_packets} of the {stream.frames} "
                         "frames its index lists")
    # A file cut short whose header still lists every frame may decode without an error;
    # small shortfalls are normal (edit lists, B-frames at a cut), so only a large one counts.
    if stream.frames > 0 and n < 0.9 * stream.frames:
        raise VideoError(f"truncated: decoded {n} of {stream.frames} frames")
    indices = kept_frame_indices(n, fps)
    if len(indices) < CLIP_FRAMES:
        raise VideoError(
            f"too short: {len(indices)} kept frames at 15 fps, one clip needs {CLIP_FRAMES}"
        )
    return ExtractedVideo([encoded[i] for i in indices.tolist()], fps, n, src[0], src[1],
                          size[0], size[1])


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB pixels of one stored frame."""
    return simplejpeg.decode_jpeg(data, colorspace="RGB")
