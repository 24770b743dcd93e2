"""JPEG bytes of a clip -> the decoded windows its transform asks for, naming the file and
video of any bad frame.

Each frame is decoded only as far as the clip's crop needs (``datasets/jpeg_window.c``, on
libjpeg-turbo with its accurate DCT and fancy upsampling): the pixels are those of a full
decode by simplejpeg, cv2.imdecode, PIL or torchvision.io.decode_jpeg, all libjpeg-turbo,
in 0.85 to 0.9 of the time per training frame (docs/perf/loader.md). All of a frame's
compressed data is still read, and libjpeg's warnings about corrupt or truncated data are
errors, so a damaged frame fails as in a full decode and never yields a silently grey clip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from datasets.jpeg_window import JpegError, WrongSize, decode_window, jpeg_size
from formats.store import StoreError, VideoRecord, frame_name


def frame_source(store: Path | str, record: VideoRecord, index: int) -> str:
    """Where kept frame ``index`` of a video lives, for error messages."""
    if ":" in record.location:  # hdf5: "<file>.h5:<dataset>"
        file_name, dataset = record.location.split(":", 1)
        return f"{Path(store) / file_name}:{dataset} (frame {index})"
    return str(Path(store) / record.location / frame_name(index))


class ClipFrames:
    """The JPEG frames of one clip, decoded one window at a time as they are iterated
    (``datasets.transforms.Frames``).

    Decoding lazily lets the transform scale each window while it is still in the CPU cache
    (measurably faster than decoding all frames first). Every frame must have the size of
    the first one."""

    def __init__(
        self, jpegs: Sequence[bytes], store: Path | str, record: VideoRecord, indices: list[int]
    ):
        self.jpegs = jpegs
        self.store = store
        self.record = record
        self.indices = indices
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.jpegs)

    def _corrupt(self, index: int, error: Exception) -> StoreError:
        return StoreError(
            f"{frame_source(self.store, self.record, index)}: corrupt JPEG in video "
            f"{self.record.video_id} ({error}); rebuild the store with `make frames`"
        )

    def size(self) -> tuple[int, int]:
        """(height, width) of the first frame, from its header."""
        if self._size is None:
            try:
                self._size = jpeg_size(self.jpegs[0])
            except JpegError as e:
                raise self._corrupt(self.indices[0], e) from None
        return self._size

    def windows(self, rows: tuple[int, int], cols: tuple[int, int]) -> Iterator[np.ndarray]:
        """Rows ``[top, bottom)`` and columns ``[left, right)`` of every frame, in order."""
        size = self.size()
        for data, index in zip(self.jpegs, self.indices, strict=True):
            try:
                yield decode_window(data, size, rows, cols)
            except WrongSize as e:
                raise StoreError(
                    f"{frame_source(self.store, self.record, index)}: frame is "
                    f"{e.width}x{e.height}, other frames of video {self.record.video_id} are "
                    f"{size[1]}x{size[0]}; rebuild the store"
                ) from None
            except JpegError as e:
                raise self._corrupt(index, e) from None
