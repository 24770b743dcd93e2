"""JPEG bytes of a clip -> decoded RGB frames, naming the file and video of any bad frame.

The decoder is simplejpeg (libjpeg-turbo, full-size, accurate DCT and fancy upsampling). It
gives the same pixels as cv2.imdecode, PIL and torchvision.io.decode_jpeg (all libjpeg-turbo)
and was the fastest in benchmarks/loader.py; its strict mode turns libjpeg's warnings about
truncated or corrupt data into errors, so a damaged frame can never yield a silently grey clip.
DCT-domain downscaling is not used: the only scale factor that fits the workload's sizes is
7/8, and libjpeg-turbo decodes it slower than the full image (docs/perf/loader.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import simplejpeg

from preprocess.store import StoreError, VideoRecord, frame_name


def frame_source(store: Path | str, record: VideoRecord, index: int) -> str:
    """Where kept frame ``index`` of a video lives, for error messages."""
    if ":" in record.location:  # hdf5: "<file>.h5:<dataset>"
        file_name, dataset = record.location.split(":", 1)
        return f"{Path(store) / file_name}:{dataset} (frame {index})"
    return str(Path(store) / record.location / frame_name(index))


class DecodedFrames:
    """The frames of one clip, decoded one at a time as they are iterated.

    Decoding lazily lets the transform resize and crop each frame while it is still in the
    CPU cache (measurably faster than decoding all frames first). Every frame must have the
    shape of the first one."""

    def __init__(
        self, jpegs: Sequence[bytes], store: Path | str, record: VideoRecord, indices: list[int]
    ):
        self.jpegs = jpegs
        self.store = store
        self.record = record
        self.indices = indices

    def __len__(self) -> int:
        return len(self.jpegs)

    def __iter__(self) -> Iterator[np.ndarray]:
        shape = None
        for data, index in zip(self.jpegs, self.indices, strict=True):
            try:
                frame = simplejpeg.decode_jpeg(data, colorspace="RGB")
            except ValueError as e:
                raise StoreError(
                    f"{frame_source(self.store, self.record, index)}: corrupt JPEG in video "
                    f"{self.record.video_id} ({e}); rebuild the store with `make frames`"
                ) from None
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise StoreError(
                    f"{frame_source(self.store, self.record, index)}: frame is "
                    f"{frame.shape[1]}x{frame.shape[0]}, other frames of video "
                    f"{self.record.video_id} are {shape[1]}x{shape[0]}; rebuild the store"
                )
            yield frame
