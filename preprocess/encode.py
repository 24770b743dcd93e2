"""Writing RGB frames as an H.264 mp4 whose bytes are the same on every run: the synthetic
dataset's videos and the tests' own videos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from formats.files import atomic_path


def x264_options(crf: int, preset: str = "veryfast") -> dict[str, str]:
    """libx264 options under which the same frames give the same bytes on every run.

    x264's output depends on its thread count, hence one thread. Its macroblock tree
    (``mbtree``) is off: on CPUs with AVX-512 that code's result depends on memory it never
    wrote, so the same frames gave different files from one call to the next, depending on
    what the heap held before (see test_encoded_bytes_do_not_depend_on_leftover_memory); with
    ``mbtree=0``, or with x264's assembly limited to AVX2, they never did. Without it x264
    shares bits out over time a little less cleverly; the frames it encodes are the same."""
    return {"crf": str(crf), "preset": preset, "threads": "1", "x264-params": "mbtree=0"}


def encode_mp4(path: Path, frames: np.ndarray, fps: Fraction, crf: int = 20) -> None:
    """Encode RGB frames as H.264 (yuv420p) in an mp4, via a hidden temporary file."""
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = x264_options(crf)
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
