"""Tiny frame stores for the dataset tests, written through formats.store exactly as the
store format describes (JPEG folders, or one HDF5 file per split with the concatenated JPEG
files and their offsets); and torchvision's clip enumeration, the reference for ours.

This module holds helpers only (no tests); the test_datasets_* modules import it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import simplejpeg
import torch
from torchvision.datasets.video_utils import VideoClips

from formats.store import (
    StoreSettings,
    VideoRecord,
    read_settings,
    video_dir,
    write_index,
    write_settings,
    write_video_dir,
)
from preprocess.identity import store_fingerprint

CLASSES = ("bending_back", "drinking", "hurdling")


def textured_frames(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """Frames with sharp edges and smooth areas (so scaling errors would show), drifting."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8)
    big = np.kron(blocks, np.ones((4, 4, 1), np.uint8)).astype(np.int16)
    ramp = np.linspace(-40, 40, width, dtype=np.float32)[None, :, None].astype(np.int16)
    frames = []
    for k in range(n):
        window = big[k % 4 : k % 4 + height, (k // 2) % 4 : (k // 2) % 4 + width]
        frames.append(np.clip(window + ramp, 0, 255).astype(np.uint8))
    return frames


def flat_frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """Frame k is a flat grey of level 10 + 6 * k, so a decoded frame says which it is."""
    return [np.full((height, width, 3), 10 + 6 * k, np.uint8) for k in range(n)]


def flat_frame_number(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - 10) / 6))


def encode(frames: list[np.ndarray], quality: int = 95, subsampling: str = "444") -> list[bytes]:
    return [simplejpeg.encode_jpeg(np.ascontiguousarray(f), quality=quality,
                                   colorsubsampling=subsampling) for f in frames]


def make_store(
    root: Path,
    fmt: str,
    videos: dict[str, list[tuple[str, str, list[np.ndarray]]]],
    classes: tuple[str, ...] = CLASSES,
    fps: int = 15,
    subsampling: str = "444",
) -> Path:
    """A store at ``root`` in format ``fmt`` ("jpg" or "hdf5"). ``videos`` maps a split to
    (class_name, stem, frames) tuples; ``subsampling``: the JPEGs' chroma ("420": the
    builder's)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, items in videos.items():
        records = []
        h5 = h5py.File(root / f"{split}.h5", "w") if fmt == "hdf5" else None
        for class_name, stem, frames in items:
            video_id = f"{class_name}/{stem}"
            jpegs = encode(frames, subsampling=subsampling)
            if h5 is not None:
                offsets = np.cumsum([0] + [len(j) for j in jpegs]).astype(np.int64)
                data = np.frombuffer(b"".join(jpegs), np.uint8)
                ds = h5.create_dataset(f"videos/{video_id}", data=data)
                ds.attrs["offsets"] = offsets
                location = f"{split}.h5:videos/{video_id}"
            else:
                write_video_dir(video_dir(root, fmt, split, video_id), jpegs, {})
                location = f"{split}/{video_id}"
            height, width = frames[0].shape[:2]
            records.append(
                VideoRecord(
                    video_id=video_id,
                    class_name=class_name,
                    label=classes.index(class_name),
                    kept_frames=len(frames),
                    source_fps=30.0,
                    source_frames=2 * len(frames),
                    width=width,
                    height=height,
                    location=location,
                )
            )
        if h5 is not None:
            h5.close()
        write_index(root, split, records)
    settings = StoreSettings(
        format=fmt, short_side=96, jpeg_quality=95, fps=fps, classes=tuple(classes)
    )
    write_settings(root, settings)
    return root


def mark_built(store: Path) -> Path:
    """Give a test store the identity record of a complete build from the benchmark's
    dataset, as make frames records it (what ``datasets.decoded_store`` asks of a JPEG store)."""
    identity = {"version": 1, "fingerprint": store_fingerprint(store), "failed_videos": 0,
                "dataset_check": {"matches_kinetics20": True, "missing": 0, "extra": 0}}
    write_settings(store, replace(read_settings(store), identity=identity))
    return store


def video_id(i: int) -> str:
    """Id of the i-th video of make_index_only_store."""
    return f"{CLASSES[i % 3]}/v{i:03d}"


def make_index_only_store(root: Path, kept_frames: list[int], fps: int = 15) -> Path:
    """A store whose train index lists videos with the given kept-frame counts and no frame
    files (building the dataset reads only the index). Video ``i`` is ``video_id(i)``."""
    root.mkdir(parents=True, exist_ok=True)
    records = [
        VideoRecord(
            video_id=video_id(i),
            class_name=CLASSES[i % 3],
            label=i % 3,
            kept_frames=k,
            source_fps=30.0,
            source_frames=2 * k,
            width=56,
            height=40,
            location=f"train/{video_id(i)}",
        )
        for i, k in enumerate(kept_frames)
    ]
    write_index(root, "train", records)
    write_settings(root, StoreSettings(format="jpg", short_side=40, jpeg_quality=95, fps=fps,
                                       classes=CLASSES))
    return root


def torchvision_clips(n: int, fps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(source frame indices kept at 15 fps, clips as rows of source frame indices), from
    VideoClips with clip_length 16, step 16, frame_rate 15 and pts = frame numbers."""
    pts = torch.arange(n)
    kept = pts[VideoClips._resample_video_idx(int(math.floor(n * 15 / fps)), fps, 15)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision warns about videos with no clip
        clips, _ = VideoClips.compute_clips_for_video(pts, 16, 16, fps, 15)
    return kept, clips
