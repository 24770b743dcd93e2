"""A decoded-frame store (raw) gives the same clips, bit for bit, as the JPEG store it was
decoded from; a damaged or truncated decoded file is a one-line StoreError naming it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import ClipDataset, StoreError, TrainTransform, ValTransform
from datasets.decoded_store import build_decoded_store
from formats.raw import HEADER_SIZE
from formats.store import read_index, read_settings
from preprocess.identity import (
    RECORD_OK,
    read_store_identity,
    store_compliance_issues,
)
from tests.helpers import datasets as helpers

# (height, width) per video: landscape and portrait, odd widths and heights, sizes that are
# not multiples of a JPEG block (8 or 16 pixels).
SIZES = [(64, 97), (97, 64), (75, 121), (48, 64), (120, 161), (66, 87)]
CLIP_LEN = 4
TRAIN = [TrainTransform((48, 72), 40), TrainTransform((64, 80), 56, flip_p=0.3)]
VAL = [ValTransform(48, 40), ValTransform(64, 64)]


def _jpeg_store(root: Path, fmt: str) -> Path:
    """A JPEG store as make frames writes it (4:2:0 JPEGs, as the builder's), with the
    identity record of a complete build."""
    videos: dict[str, list] = {"train": [], "val": []}
    for i, (h, w) in enumerate(SIZES * 2):
        split = "val" if i % 4 == 3 else "train"
        frames = helpers.textured_frames(CLIP_LEN * 3 + i % 3, h, w, seed=i)
        videos[split].append((helpers.CLASSES[i % 3], f"v{i:02d}", frames))
    return helpers.mark_built(helpers.make_store(root, fmt, videos, subsampling="420"))


@pytest.fixture(scope="module", params=["jpg", "hdf5"])
def stores(request, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp(f"decoded-{request.param}")
    jpeg = _jpeg_store(base / "jpeg", request.param)
    raw = base / "raw"
    build_decoded_store(jpeg, raw, jobs=1, quiet=True)
    return jpeg, raw


def _same(a: ClipDataset, b: ClipDataset, key) -> None:
    x, y = a[key], b[key]
    assert torch.equal(x[0], y[0]), key
    assert x[1:] == y[1:], key


def test_every_val_clip_is_bit_identical(stores):
    jpeg, raw = stores
    for transform in VAL:
        a = ClipDataset(jpeg, "val", transform, clip_len=CLIP_LEN)
        b = ClipDataset(raw, "val", transform, clip_len=CLIP_LEN)
        assert len(a) == len(b) > 0
        for index in range(len(a)):
            _same(a, b, index)


def test_random_train_keys_are_bit_identical(stores):
    jpeg, raw = stores
    rng = np.random.default_rng(25)
    checked = 0
    for seed, transform in enumerate(TRAIN):
        a = ClipDataset(jpeg, "train", transform, clip_len=CLIP_LEN, seed=seed)
        b = ClipDataset(raw, "train", transform, clip_len=CLIP_LEN, seed=seed)
        assert len(a) == len(b)
        for _ in range(300):
            key = (int(rng.integers(0, 1000)), int(rng.integers(0, len(a))))
            _same(a, b, key)
            checked += 1
    assert checked >= 500


def test_identity_is_the_jpeg_stores(stores):
    jpeg, raw = stores
    ours, theirs = read_store_identity(raw), read_store_identity(jpeg)
    assert ours["format"] == "raw" and theirs["format"] != "raw"
    assert ours["fingerprint"] == theirs["fingerprint"]
    assert ours["dataset_check"]["record"] == RECORD_OK
    assert store_compliance_issues(ours) == store_compliance_issues(theirs)
    source = read_settings(raw).identity["decoded_from"]
    assert source == {"path": str(jpeg.resolve()), "format": theirs["format"],
                      "fingerprint": theirs["fingerprint"]}


def _damaged_copy(raw: Path, tmp_path: Path, damage) -> tuple[ClipDataset, Path]:
    copy = tmp_path / "copy"
    shutil.copytree(raw, copy)
    record = read_index(copy, "val")[0]
    path = copy / record.location
    damage(path)
    return ClipDataset(copy, "val", VAL[0], clip_len=CLIP_LEN), path


@pytest.mark.parametrize("damage", ["truncated", "extended", "header", "missing"])
def test_a_damaged_file_is_one_line_naming_it(stores, tmp_path, damage):
    _, raw = stores

    def spoil(path: Path) -> None:
        data = path.read_bytes()
        if damage == "truncated":
            path.write_bytes(data[: len(data) - 1000])
        elif damage == "extended":
            path.write_bytes(data + bytes(10))
        elif damage == "header":
            path.write_bytes(b"\0" * 64 + data[64:])
        else:
            path.unlink()

    ds, path = _damaged_copy(raw, tmp_path, spoil)
    with pytest.raises(StoreError) as e:
        ds[0]
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    assert "make frames FORMAT=raw" in message


def test_a_frame_is_read_from_the_map_without_a_copy(stores):
    """The clip's frames are views of the file's memory map (no whole frame is copied)."""
    from formats.raw import video_frames

    _, raw = stores
    record = read_index(raw, "train")[0]
    frames = video_frames(raw, record)
    assert isinstance(frames.base, np.memmap) or isinstance(frames.base.base, np.memmap)
    assert frames.shape == (record.kept_frames, record.height, record.width, 3)
    assert not frames.flags.writeable
    assert frames[1, 2:5, 3:7].base is not None  # a window is a view
    assert (raw / record.location).stat().st_size == HEADER_SIZE + frames.nbytes
