"""A decoded-frame store (raw) gives the same clips, bit for bit, as the JPEG store it was
decoded from; a damaged or truncated decoded file is a one-line StoreError naming it, before
the first clip or while mapped; a low open-file limit is raised or named."""

from __future__ import annotations

import mmap
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import ClipDataset, StoreError, TrainTransform, ValTransform
from datasets.decoded_store import build_decoded_store
from formats.raw import HEADER_SIZE, SPARE_DESCRIPTORS
from formats.store import read_index, read_settings
from preprocess.identity import (
    RECORD_OK,
    read_store_identity,
    store_compliance_issues,
)
from tests.helpers import datasets as helpers
from tests.helpers.train import REPO

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
    owner = frames
    while isinstance(owner, np.ndarray):
        owner = owner.base
    assert isinstance(owner, memoryview) and isinstance(owner.obj, mmap.mmap)  # no copy
    assert frames.shape == (record.kept_frames, record.height, record.width, 3)
    assert not frames.flags.writeable
    assert frames[1, 2:5, 3:7].base is not None  # a window is a view
    assert (raw / record.location).stat().st_size == HEADER_SIZE + frames.nbytes


def test_a_file_cut_short_while_mapped_is_one_line_not_a_crash(stores, tmp_path):
    """Reading a page past the end of a mapped file would end the process with SIGBUS: the
    size is checked again before each clip, so it is a StoreError naming the file."""
    _, raw = stores
    ds, path = _damaged_copy(raw, tmp_path, lambda path: None)
    ds[0]  # mapped now
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(StoreError) as e:
        ds[0]
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "truncated while in use" in message


_UNDER_LIMIT = """
import resource, sys
from datasets import ClipDataset, StoreError, ValTransform
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[3])))
try:
    ds = ClipDataset(sys.argv[1], "val", ValTransform(48, 40), clip_len=4)
except StoreError as e:
    print("error:", e)
    sys.exit(2)
[ds[i] for i in range(len(ds))]
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_a_low_open_file_limit_is_raised_or_named_before_any_clip(stores):
    """Each mapped video holds a descriptor (Kinetics-20's train split: 1276 of them, over
    the common soft limit of 1024): the soft limit is raised toward the hard one, and a hard
    limit too low for the store is one line before any clip is read."""
    _, raw = stores
    videos = len(read_index(raw, "val"))
    raised = subprocess.run([sys.executable, "-c", _UNDER_LIMIT, str(raw), "64", "4096"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert raised.returncode == 0, raised.stderr[-2000:]
    assert int(raised.stdout) == videos + SPARE_DESCRIPTORS
    low = subprocess.run([sys.executable, "-c", _UNDER_LIMIT, str(raw), "64", "64"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert low.returncode == 2 and low.stderr == "", low.stderr[-2000:]
    assert low.stdout.count("\n") == 1 and f"ulimit -n {videos + SPARE_DESCRIPTORS}" in low.stdout
