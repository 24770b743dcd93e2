"""A frame store split as a dataset of clips (WORKLOAD.md, "Clips").

Each video of ``<split>_index.csv`` holds ``kept_frames`` frames already resampled to 15 fps;
clip ``c`` of a video is kept frames ``[c * clip_len, (c + 1) * clip_len)``, the remainder is
dropped, and every clip is one sample. Clips are numbered video by video in index order.

Augmentation randomness is a pure function of (seed, epoch, clip index): the training sampler
yields ``(epoch, index)`` keys and each clip draws its parameters from a generator seeded with
exactly those numbers, so results do not depend on worker count, rank count, persistent
workers or the order in which workers pick up clips.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from datasets import native
from datasets.decode import ClipFrames
from datasets.transforms import ArrayFrames
from formats.raw import allow_maps, video_frames
from formats.store import StoreError, check_settings, index_path, read_index
from preprocess.frame_bytes import read_frame_bytes

STORE_FPS = 15


def clip_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one clip's augmentation parameters."""
    return np.random.default_rng([seed, epoch, index])


class ClipDataset(torch.utils.data.Dataset):
    """Clips of one split of a frame store (JPEG folders, HDF5, or decoded frames).

    ``ds[index]`` (evaluation, epoch 0) or ``ds[(epoch, index)]`` (training) returns
    ``(clip, label, video_index)``: ``clip`` is uint8 clip_len x crop x crop x 3, to be
    normalised (and put channels first) on the device with ``ds.transform.normalize``."""

    def __init__(
        self,
        store: Path | str,
        split: str,
        transform,
        clip_len: int = 16,
        seed: int = 0,
    ):
        if clip_len < 1:
            raise ValueError(f"clip_len must be at least 1, got {clip_len}")
        self.store = Path(store)
        self.split = split
        self.transform = transform
        self.clip_len = clip_len
        self.seed = seed
        native.load()  # a missing library is one clear error here, not one per worker
        self.settings = check_settings(self.store, fps=STORE_FPS)
        # A decoded store: each clip is a window of the video's memory map, no JPEG decoded.
        self.decoded = self.settings.format == "raw"
        # Dataset order, as the original's (torchvision's) listing: class folders by name
        # (= label order), videos by name within a class, each video's clips in time order.
        # The original sorted file names; the index holds stems, which sort alike whenever
        # no stem of a class is another's prefix followed by a character below "." (true of
        # Kinetics names, <youtube id>_<start>_<end>, all of one length; tests check it).
        self.records = sorted(read_index(self.store, split), key=lambda r: (r.label, r.video_id))
        self.classes: list[str] = list(self.settings.classes)
        self.num_classes = len(self.classes)
        self._check_labels()
        self.num_videos = len(self.records)
        if self.decoded:
            allow_maps(self.num_videos, index_path(self.store, split))  # mapped once read
        self.video_labels: list[int] = [r.label for r in self.records]

        clips_per_video = np.array([r.kept_frames // clip_len for r in self.records], np.int64)
        # Clip index -> video index and first kept frame of the clip.
        self.clip_video: np.ndarray = np.repeat(np.arange(self.num_videos), clips_per_video)
        first_clip = np.cumsum(clips_per_video) - clips_per_video
        self.clip_start: np.ndarray = (
            np.arange(len(self.clip_video)) - first_clip[self.clip_video]
        ) * clip_len
        self.videos_without_clips: list[str] = [
            r.video_id for r, n in zip(self.records, clips_per_video, strict=True) if n == 0
        ]
        if self.videos_without_clips:
            warnings.warn(
                f"{index_path(self.store, split)}: {len(self.videos_without_clips)} video(s) "
                f"have fewer than {clip_len} frames at {STORE_FPS} fps and give no clip: "
                + ", ".join(self.videos_without_clips),
                stacklevel=2,
            )

    def _check_labels(self) -> None:
        for r in self.records:
            # A video's id starts with its class folder: a row whose class and label were
            # both edited would otherwise train on a wrong label silently.
            if not (0 <= r.label < self.num_classes and self.classes[r.label] == r.class_name
                    and r.video_id.split("/", 1)[0] == r.class_name):
                raise StoreError(
                    f"{index_path(self.store, self.split)}: video {r.video_id} has label "
                    f"{r.label} ({r.class_name}), which does not match the store's class list "
                    f"({self.num_classes} classes); rebuild the store"
                )

    def __len__(self) -> int:
        return len(self.clip_video)

    def clip_frames(self, index: int) -> list[int]:
        """Kept-frame indices (0-based, within its video) of clip ``index``."""
        start = int(self.clip_start[index])
        return list(range(start, start + self.clip_len))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        return self._clip(key)

    def __getitems__(self, keys: list, allocate=None) -> ClipBatch:
        """The clips of a batch, each rendered straight into its place in one batch tensor
        (in a loader worker: in shared memory, as the default collation would put it, or in
        a reused buffer, ``datasets.batches``), so that no clip is copied again;
        ``collate_clips`` returns that tensor. Any other collation still sees a list of
        samples. ``allocate(shape)``: the batch tensor (default ``new_batch``)."""
        allocate = allocate or new_batch
        samples = ClipBatch()
        for k, key in enumerate(keys):
            out = None if samples.clips is None else samples.clips[k].numpy()
            clip, label, video = self._clip(key, out)
            if samples.clips is None:  # the first clip gives the shape
                samples.clips = allocate((len(keys), *clip.shape))
                samples.clips[0].copy_(clip)
                clip = samples.clips[0]
            samples.append((clip, label, video))
        return samples

    def _clip(self, key: int | tuple[int, int],
              out: np.ndarray | None = None) -> tuple[torch.Tensor, int, int]:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (0, int(key))
        if not 0 <= index < len(self):
            raise IndexError(f"clip {index} out of range 0..{len(self) - 1}")
        video = int(self.clip_video[index])
        record = self.records[video]
        indices = self.clip_frames(index)
        if self.decoded:
            # Consecutive frames: a view of the map; the transform reads only each frame's
            # crop window from it (rows are contiguous, columns a slice of each row).
            frames = ArrayFrames(video_frames(self.store, record)[indices[0] : indices[-1] + 1])
        else:
            jpegs = read_frame_bytes(self.store, record, indices)
            frames = ClipFrames(jpegs, self.store, record, indices)
        rng = clip_rng(self.seed, epoch, index)
        clip = self.transform(frames, rng) if out is None else self.transform(frames, rng, out=out)
        return clip, record.label, video


class ClipBatch(list):
    """A batch's samples, whose clips are views of one batch tensor, ``clips``."""

    clips: torch.Tensor | None = None


def new_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor for a batch: in shared memory in a loader worker (as
    torch's default collation allocates it there, so that it crosses to the training
    process without a copy), in ordinary memory in the training process itself."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    elem = torch.empty(0, dtype=torch.uint8)
    storage = elem._typed_storage()._new_shared(int(np.prod(shape)), device=elem.device)
    return elem.new(storage).resize_(shape)


def collate_clips(samples: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clips uint8 B x T x H x W x 3, labels int64 B, video indices int64 B), as torch's
    default collation gives them, without copying the clips of a ClipBatch."""
    if isinstance(samples, ClipBatch) and samples.clips is not None:
        clips = samples.clips
    else:
        clips = torch.utils.data.default_collate([s[0] for s in samples])
    return (clips, torch.tensor([s[1] for s in samples], dtype=torch.int64),
            torch.tensor([s[2] for s in samples], dtype=torch.int64))
