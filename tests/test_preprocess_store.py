"""Building, resuming and verifying frame stores, with bad input in the dataset."""

import csv
import shutil
from fractions import Fraction

import numpy as np
import pytest

from formats.store import (
    StoreError,
    check_settings,
    read_index,
    read_settings,
    video_dir,
)
from preprocess.__main__ import main
from preprocess.encode import encode_mp4
from preprocess.extract import ExtractOptions, decode_jpeg
from preprocess.frame_bytes import read_frame_bytes
from preprocess.frames import build_store
from preprocess.verify import verify_store
from tests.helpers.faults import write_audio_only
from tests.helpers.preprocess import smooth_frames

BAD = {"empty": "empty file", "text": "cannot open", "short": "too short",
       "audio": "no video stream", "truncated": "cannot open"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two classes, 2 train + 1 val videos each (36 frames at 30 fps: 18 kept), plus one
    file of every kind of bad input in train/."""
    root = tmp_path_factory.mktemp("data")
    for split, count in (("train", 2), ("val", 1)):
        for c, name in enumerate(("pushing_cart", "abseiling")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                frames = smooth_frames(36, 80, 60)[:, :, :: (1 if c else -1)]
                encode_mp4(root / split / name / f"vid{c}{i}_000001_000011.mp4",
                           np.ascontiguousarray(frames[i:] if i else frames), Fraction(30))
    bad = root / "train" / "abseiling"
    (bad / "empty_000000_000010.mp4").write_bytes(b"")
    (bad / "text_000000_000010.mp4").write_text("not a video\n" * 40)
    encode_mp4(bad / "short_000000_000010.mp4", smooth_frames(20, 32, 24), Fraction(30))
    write_audio_only(bad / "audio_000000_000010.mp4")
    good = (root / "val" / "abseiling").glob("*.mp4").__next__().read_bytes()
    (bad / "truncated_000000_000010.mp4").write_bytes(good[: len(good) // 2])
    (root / "train" / "abseiling" / "notes.txt").write_text("ignored: not a video file")
    return root


def read_failures(store):
    with open(store / "failures.csv", newline="") as f:
        return {row["video"].split("/")[-1].split("_")[0]: row["reason"]
                for row in csv.DictReader(f)}


def test_jpg_and_hdf5_stores_hold_identical_frames(dataset, tmp_path):
    stores = {}
    for fmt in ("jpg", "hdf5"):
        store = tmp_path / fmt
        summary = build_store(dataset, store, ExtractOptions(fmt, 320, 90), jobs=2, quiet=True)
        assert (summary.done, summary.skipped, summary.failed) == (6, 0, 5)
        assert summary.frames == 6 * 18
        failures = read_failures(store)
        assert set(failures) == set(BAD)
        for name, reason in BAD.items():
            assert reason in failures[name]
        assert read_settings(store).classes == ("abseiling", "pushing_cart")
        stores[fmt] = store
    for split, count in (("train", 4), ("val", 2)):
        jpg, h5 = read_index(stores["jpg"], split), read_index(stores["hdf5"], split)
        assert len(jpg) == len(h5) == count
        for a, b in zip(jpg, h5, strict=True):
            assert a.label == ["abseiling", "pushing_cart"].index(a.class_name)
            assert (a.kept_frames, a.width, a.height) == (18, 80, 60)
            assert a.source_frames in (35, 36) and a.source_fps == 30.0
            assert a.video_id == b.video_id and a.location != b.location
            frames = list(range(a.kept_frames))
            assert read_frame_bytes(stores["jpg"], a, frames) == read_frame_bytes(
                stores["hdf5"], b, frames)
            assert decode_jpeg(read_frame_bytes(stores["hdf5"], b, [17])[0]).shape == (60, 80, 3)
    for store in stores.values():
        assert verify_store(store, jobs=1, quiet=True) == []


def test_rerun_skips_complete_videos_and_redoes_partial_ones(dataset, tmp_path):
    store = tmp_path / "s"
    build_store(dataset, store, ExtractOptions(), jobs=1, quiet=True)
    records = read_index(store, "train")
    # As a killed run leaves things: one video half-written, one without its meta.json.
    half = video_dir(store, "jpg", "train", records[0].video_id)
    shutil.rmtree(half)
    partial = half.with_name(half.name + ".partial")
    partial.mkdir()
    (partial / "image_00001.jpg").write_bytes(b"\xff\xd8 cut short")
    (video_dir(store, "jpg", "train", records[1].video_id) / "meta.json").unlink()
    summary = build_store(dataset, store, ExtractOptions(), jobs=1, quiet=True)
    assert (summary.done, summary.skipped, summary.failed) == (2, 4, 5)
    assert not partial.exists()
    assert read_index(store, "train") == records
    assert verify_store(store, jobs=1, quiet=True) == []


def test_hdf5_rerun_keeps_packed_videos(dataset, tmp_path):
    store = tmp_path / "h"
    build_store(dataset, store, ExtractOptions("hdf5"), jobs=1, quiet=True)
    packed = (store / "val.h5").stat().st_mtime_ns
    summary = build_store(dataset, store, ExtractOptions("hdf5"), jobs=1, quiet=True)
    assert (summary.done, summary.skipped) == (0, 6)
    assert (store / "val.h5").stat().st_mtime_ns == packed
    assert not (store / ".parts" / "val").exists()


def test_verify_names_broken_and_missing_frames(dataset, tmp_path, capsys):
    store = tmp_path / "v"
    build_store(dataset, store, ExtractOptions(), jobs=1, quiet=True)
    a, b = read_index(store, "val")
    (store / a.location / "image_00003.jpg").write_bytes(b"garbage")
    (store / b.location / "image_00018.jpg").unlink()
    assert main(["verify", "--store", str(store), "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{a.location}/image_00003.jpg: not a decodable JPEG" in err
    assert f"{b.location}/image_00018.jpg: missing frame 17" in err
    assert "17 frame files, index says 18" in err


def test_strict_makes_failures_an_error(dataset, tmp_path, capsys):
    args = ["frames", "--data", str(dataset), "--out", str(tmp_path / "s"), "--jobs", "1"]
    assert main(args) == 0
    assert main(args + ["--strict"]) == 1
    out = capsys.readouterr().out
    assert "5 failed" in out and "already complete" in out and "failures.csv" in out


def test_other_settings_are_refused_in_one_line(dataset, tmp_path, capsys):
    store = tmp_path / "s"
    build_store(dataset, store, ExtractOptions(quality=80), jobs=1, quiet=True)
    with pytest.raises(StoreError, match="jpeg_quality=80"):
        build_store(dataset, store, ExtractOptions(quality=90), jobs=1, quiet=True)
    assert check_settings(store, short_side=320, jpeg_quality=80).jpeg_quality == 80
    with pytest.raises(StoreError, match="short_side=320 \\(expected 256\\)"):
        check_settings(store, short_side=256)
    args = ["frames", "--data", str(dataset), "--out", str(store), "--quality", "70"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_bad_layouts_give_one_line_errors(dataset, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    shutil.copytree(dataset / "train", wrong / "train")
    shutil.copytree(dataset / "val", wrong / "val")
    (wrong / "val" / "extra_class").mkdir()
    cases = [(tmp_path / "nowhere", "no such folder"), (dataset / "train", "missing"),
             (wrong, "class folders differ")]
    for data, message in cases:
        code = main(["frames", "--data", str(data), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1
        assert "<data>/train/<class>/<video>.mp4" in err or "differ" in err


def _read_all(args):
    store, record = args
    return read_frame_bytes(store, record, list(range(record.kept_frames)))


def test_hdf5_store_is_read_by_several_worker_processes(dataset, tmp_path):
    import multiprocessing

    store = tmp_path / "h"
    build_store(dataset, store, ExtractOptions("hdf5"), jobs=1, quiet=True)
    records = read_index(store, "train") + read_index(store, "val")
    expected = [_read_all((store, r)) for r in records]  # the parent holds an open handle
    with multiprocessing.get_context("fork").Pool(2) as pool:  # as DataLoader workers do
        assert pool.map(_read_all, [(store, r) for r in records]) == expected
