"""Broken frame stores: damaged JPEG files, damaged HDF5 data, an index that disagrees with
the store. Reading clips raises a StoreError that names the video and the frame (or, for
damage the index alone cannot reveal, ``preprocess verify`` names the file); never a
silently shorter clip or a wrong label."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import simplejpeg

from datasets import ClipDataset, StoreError, ValTransform
from formats.store import SETTINGS_FILE, frame_name, index_path, read_index, write_index
from preprocess.extract import ExtractOptions
from preprocess.frames import build_store
from preprocess.synth import SynthOptions, make_dataset
from preprocess.verify import verify_store
from tests.helpers.train import TINY, one_thread
from train.__main__ import main as train_main

FRAME_REF = r"(frame \d+|frames \d+\.\.\d+|image_\d{5}\.jpg)"


@dataclass
class Expect:
    """What must be reported: ``loader`` (regex) when the clips are read or the dataset is
    built, ``None`` if the index alone cannot show it; ``verify`` (substring) in a problem
    of ``preprocess verify``, ``None`` if verify cannot even read the index."""

    video: str | None
    loader: str | None
    verify: str | None
    names_frame: bool = True


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stores")
    data = root / "data"
    make_dataset(SynthOptions(classes=2, train_per_class=2, val_per_class=1, duration=1.2,
                              width=64, height=48), data, jobs=1)
    stores = {}
    for fmt in ("jpg", "hdf5"):
        build_store(data, root / fmt, ExtractOptions(fmt), jobs=1, quiet=True)
        stores[fmt] = root / fmt
    return stores


def _rewrite_index(store: Path, change: Callable) -> str:
    records = read_index(store, "train")
    records[0] = change(records[0])
    write_index(store, "train", records)
    return records[0].video_id


def _replace(record, **kw):
    from dataclasses import replace

    return replace(record, **kw)


def _frame_file(store: Path, record, i: int) -> Path:
    return store / record.location / frame_name(i)


# ---- damage, jpg -------------------------------------------------------------------------

def deleted_jpeg(store, r):
    _frame_file(store, r, 5).unlink()
    return Expect(r.video_id, rf"image_00006\.jpg: missing frame 5 of video {r.video_id}",
                  f"{r.location}/image_00006.jpg: missing frame 5")


def truncated_jpeg(store, r):
    path = _frame_file(store, r, 7)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    return Expect(r.video_id, rf"image_00008\.jpg: corrupt JPEG in video {r.video_id}",
                  f"{r.location}/image_00008.jpg: not a decodable JPEG")


def garbage_jpeg(store, r):
    _frame_file(store, r, 0).write_bytes(np.random.default_rng(0).bytes(3000))
    return Expect(r.video_id, rf"image_00001\.jpg: corrupt JPEG in video {r.video_id}",
                  f"{r.location}/image_00001.jpg: not a decodable JPEG")


def zeroed_scan_data(store, r):
    path = _frame_file(store, r, 9)
    data = bytearray(path.read_bytes())
    data[len(data) // 3 :] = bytes(len(data) - len(data) // 3)
    path.write_bytes(bytes(data))
    return Expect(r.video_id, rf"image_00010\.jpg: corrupt JPEG in video {r.video_id}",
                  f"{r.location}/image_00010.jpg: not a decodable JPEG")


def frame_of_another_size(store, r):
    small = simplejpeg.encode_jpeg(np.zeros((30, 40, 3), np.uint8), quality=90)
    _frame_file(store, r, 1).write_bytes(small)
    return Expect(r.video_id, rf"image_00002\.jpg: frame is 40x30, other frames of video "
                              rf"{r.video_id}", f"{r.location}/image_00002.jpg: 40x30 pixels")


def missing_video_folder(store, r):
    shutil.rmtree(store / r.location)
    return Expect(r.video_id, rf"image_00001\.jpg: missing frame 0 of video {r.video_id}",
                  f"{r.location}: 0 frame files, index says {r.kept_frames}")


def index_lists_more_frames(store, r):
    more = r.kept_frames + 16
    video = _rewrite_index(store, lambda x: _replace(x, kept_frames=more))
    return Expect(video, rf"{FRAME_REF}.* of video {video}",
                  f"index says {more}")


def index_lists_fewer_frames(store, r):
    # The index is all a loader reads (by design, it never lists frames): one frame fewer
    # still gives the same clip, so only verify can see it.
    fewer = r.kept_frames - 1
    video = _rewrite_index(store, lambda x: _replace(x, kept_frames=fewer))
    return Expect(video, None, f"index says {fewer}")


# ---- damage, index and settings (both formats) ------------------------------------------

def wrong_label(store, r):
    video = _rewrite_index(store, lambda x: _replace(x, label=1 - x.label))
    return Expect(video, rf"video {video} has label", "does not match class", names_frame=False)


def class_and_label_both_changed(store, r):
    classes = read_index(store, "train")
    other = next(x for x in classes if x.class_name != r.class_name)
    video = _rewrite_index(store, lambda x: _replace(x, class_name=other.class_name,
                                                      label=other.label))
    return Expect(video, rf"video {video} has label", "is listed under class",
                  names_frame=False)


def label_out_of_range(store, r):
    video = _rewrite_index(store, lambda x: _replace(x, label=7))
    return Expect(video, rf"video {video} has label 7", "label 7 does not match",
                  names_frame=False)


def video_listed_twice(store, r):
    write_index(store, "train", read_index(store, "train") + [r])
    return Expect(r.video_id, rf"video {r.video_id} listed twice", None, names_frame=False)


def index_is_binary_junk(store, r):
    index_path(store, "train").write_bytes(np.random.default_rng(1).bytes(2000))
    return Expect(None, r"train_index\.csv: (not a readable index|unexpected columns)", None)


def index_cut_mid_row(store, r):
    path = index_path(store, "train")
    *rows, last = path.read_text().splitlines()
    path.write_text("\n".join([*rows, ",".join(last.split(",")[:3])]))  # as a kill leaves it
    return Expect(None, r"train_index\.csv:\d+: malformed index row", None)


def settings_are_junk(store, r):
    (store / SETTINGS_FILE).write_bytes(b"\x00\xff{junk")
    return Expect(None, r"store\.json: unreadable store settings", None)


# ---- damage, hdf5 --------------------------------------------------------------------------

def _dataset(r) -> str:
    return r.location.split(":", 1)[1]


def h5_dataset_deleted(store, r):
    with h5py.File(store / "train.h5", "r+") as f:
        del f[_dataset(r)]
    return Expect(r.video_id, rf"cannot read frames 0\.\.\d+ of video {r.video_id}",
                  f"train.h5:{_dataset(r)}: unreadable")


def h5_frame_bytes_overwritten(store, r):
    with h5py.File(store / "train.h5", "r") as f:
        ds = f[_dataset(r)]
        at = ds.id.get_offset() + int(ds.attrs["offsets"][3])
    with open(store / "train.h5", "r+b") as f:  # the damage a bad disk does: raw bytes
        f.seek(at)
        f.write(np.random.default_rng(2).bytes(48))
    return Expect(r.video_id, rf"train\.h5:{_dataset(r)} \(frame 3\): corrupt JPEG in video "
                              rf"{r.video_id}", f"train.h5:{_dataset(r)}/image_00004.jpg: not a "
                                                "decodable JPEG")


def h5_offsets_cut_short(store, r):
    with h5py.File(store / "train.h5", "r+") as f:
        ds = f[_dataset(r)]
        ds.attrs["offsets"] = ds.attrs["offsets"][:10]
    return Expect(r.video_id, rf"cannot read frames 0\.\.\d+ of video {r.video_id}",
                  f"train.h5:{_dataset(r)}: 9 frames")


def h5_file_truncated(store, r):
    path = store / "train.h5"
    os.truncate(path, path.stat().st_size // 2)
    return Expect(r.video_id, rf"cannot read frames 0\.\.\d+ of video {r.video_id}",
                  f"train.h5:{_dataset(r)}: unreadable")


def h5_index_lists_more_frames(store, r):
    more = r.kept_frames + 16
    video = _rewrite_index(store, lambda x: _replace(x, kept_frames=more))
    return Expect(video, rf"{FRAME_REF} of video {video}", f"index says {more} frames")


COMMON = [wrong_label, class_and_label_both_changed, label_out_of_range, video_listed_twice,
          index_is_binary_junk, index_cut_mid_row, settings_are_junk]
CASES = ([("jpg", c) for c in (deleted_jpeg, truncated_jpeg, garbage_jpeg, zeroed_scan_data,
                               frame_of_another_size, missing_video_folder,
                               index_lists_more_frames, index_lists_fewer_frames, *COMMON)]
         + [("hdf5", c) for c in (h5_dataset_deleted, h5_frame_bytes_overwritten,
                                  h5_offsets_cut_short, h5_file_truncated,
                                  h5_index_lists_more_frames, index_lists_fewer_frames,
                                  wrong_label)])


def _read_every_clip(store: Path) -> None:
    ds = ClipDataset(store, "train", ValTransform(short_side=32, crop=32))
    for i in range(len(ds)):
        ds[i]


@pytest.mark.parametrize(("fmt", "damage"), CASES, ids=[f"{f}-{c.__name__}" for f, c in CASES])
def test_damage_is_named_never_silent(clean, tmp_path, fmt, damage):
    store = tmp_path / fmt
    shutil.copytree(clean[fmt], store)
    record = read_index(store, "train")[0]
    expect = damage(store, record)

    if expect.loader is None:
        _read_every_clip(store)  # the same clips as before: nothing wrong is read
    else:
        with pytest.raises(StoreError) as caught:
            _read_every_clip(store)
        message = str(caught.value)
        assert "\n" not in message
        assert re.search(expect.loader, message), message
        if expect.video is not None and expect.names_frame:
            assert re.search(FRAME_REF, message), f"no frame named: {message}"

    if expect.verify is None:
        with pytest.raises(StoreError):
            verify_store(store, jobs=1, quiet=True)
    else:
        problems = verify_store(store, jobs=1, quiet=True)
        assert any(expect.verify in p for p in problems), problems
        assert all(str(store) in p for p in problems), problems  # each names its file


def test_training_on_a_damaged_store_stops_with_one_line_naming_the_frame(tiny_store_copy,
                                                                          tmp_path, capsys):
    store = tiny_store_copy
    record = read_index(store, "train")[3]
    _frame_file(store, record, 2).unlink()
    with one_thread():
        code = train_main(["--config", str(TINY), "--data", str(store), "--out",
                           str(tmp_path / "out"), "--workers", "0", "--set", "epochs=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    assert f"image_00003.jpg: missing frame 2 of video {record.video_id}" in err[-1]
