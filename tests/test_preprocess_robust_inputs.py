"""Whatever a user drops into a class folder: ``make frames`` lists each unusable entry in
failures.csv, builds every good video as in a clean run, exits 0 and gives the same store,
byte for byte, when run again."""

from __future__ import annotations

import csv
import os
import struct
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av

from formats.store import read_index
from preprocess.extract import ExtractOptions, VideoError, extract_video
from preprocess.kinetics import CSV_HEADER, SourceVideo
from preprocess.task import process_video
from tests.helpers.faults import REPO, encode_video, gradient_frames, tree

CLASSES = ("abseiling", "zumba")
LONG = "x" * 251  # with ".mp4" the longest name a file system takes (255 bytes)


def _avi(path: Path, length: int | None = None, rate: tuple[int, int] | None = None) -> Path:
    """A good MJPEG AVI of 40 frames at 30 fps; ``length`` and ``rate`` (rate, scale) overwrite
    what its stream header declares, as a broken or hostile writer could."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuvj420p"
        for img in gradient_frames(40, 96, 64, 3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(path.read_bytes())
    strh = data.find(b"strh") + 8  # fccType, fccHandler, flags, priority+language, initial,
    if length is not None:  # scale, rate, start, length (AVI stream header, little-endian)
        struct.pack_into("<I", data, strh + 32, length)
        struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, length)
    if rate is not None:
        struct.pack_into("<II", data, strh + 20, rate[1], rate[0])
    path.write_bytes(bytes(data))
    return path


def _mp4(path: Path, seed: int = 0) -> Path:
    return encode_video(path, gradient_frames(40, 96, 64, seed), Fraction(30))


def _dataset(root: Path) -> tuple[set[str], dict[str, str]]:
    """(ids of the good videos, failures.csv path -> expected reason) of a mixed dataset."""
    a, z = (root / "train" / c for c in CLASSES)
    for folder in (a, z, root / "val" / CLASSES[0], root / "val" / CLASSES[1]):
        folder.mkdir(parents=True)
    plain = _mp4(a / "plain.mp4")
    _mp4(a / f"{LONG}.mp4", 1)
    _mp4(a / "new\nline.mp4", 2)
    _avi(z / "mjpeg.avi")
    _mp4(root / "val" / CLASSES[0] / "v1.mp4", 4)
    _mp4(root / "val" / CLASSES[1] / "v2.mp4", 5)
    good = {"abseiling/plain", f"abseiling/{LONG}", "abseiling/new\nline", "zumba/mjpeg",
            "abseiling/v1", "zumba/v2"}
    for name in ("dup.mp4", "dup.MP4"):  # one stem, two spellings of the extension
        (z / name).write_bytes(plain.read_bytes())
    _mp4(z / "twin.mp4", 6)
    _avi(z / "twin.avi")
    (z / "empty.mp4").touch()
    (z / "folder.mp4").mkdir()
    (z / "dangling.mp4").symlink_to(z / "nothing-here")
    (z / "zero.mp4").symlink_to("/dev/zero")
    os.mkfifo(z / "fifo.mp4")
    (z / "junk.mkv").write_bytes(os.urandom(4000))
    _avi(z / "billions.avi", length=0x7FFFFFFF)  # header: 2**31 - 1 frames
    _avi(z / "slow.avi", rate=(1, 1000))  # header: 0.001 fps
    _avi(z / "fast.avi", rate=(1_000_000, 1))  # header: a million fps
    os.symlink(plain, os.path.join(os.fsencode(z), b"caf\xe9.mp4"))  # not UTF-8
    two = "2 source files for video id zumba/{0} ({1}); keep one"
    bad = {
        "train/zumba/dup.MP4": two.format("dup", "dup.MP4, dup.mp4"),
        "train/zumba/dup.mp4": two.format("dup", "dup.MP4, dup.mp4"),
        "train/zumba/twin.avi": two.format("twin", "twin.avi, twin.mp4"),
        "train/zumba/twin.mp4": two.format("twin", "twin.avi, twin.mp4"),
        "train/zumba/empty.mp4": "empty file",
        "train/zumba/folder.mp4": "not a regular file",
        "train/zumba/dangling.mp4": "broken symbolic link",
        "train/zumba/zero.mp4": "not a regular file",
        "train/zumba/fifo.mp4": "not a regular file",
        "train/zumba/junk.mkv": "cannot open",
        "train/zumba/billions.avi": "truncated: the file holds 40 of the 2147483647 frames",
        "train/zumba/slow.avi": "implausible frame rate 0.001 fps",
        "train/zumba/fast.avi": "implausible frame rate 1e+06 fps",
        "train/zumba/caf\\xe9.mp4": "file name is not valid UTF-8",
    }
    # CSVs a spreadsheet or an editor could leave: cp1252 text, a cell over csv's limit.
    row = ["0", "abseiling", "plain", "1", "11", "train", "False", "plain"]
    lines = [",".join(CSV_HEADER), ",".join(row), ",".join(row[:1] + ["crème brûlée"] + row[2:])]
    (root / "train.csv").write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    (root / "val.csv").write_text("\n".join([",".join(CSV_HEADER), ",".join(row),
                                             "1," + "y" * 200_000 + ",a,1,11,val,False,b"]))
    return good, bad


def _frames(data: Path, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "preprocess", "frames", "--data", str(data),
                           "--out", str(store), "--jobs", "2"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_every_kind_of_entry_is_listed_and_the_store_is_identical_on_a_rerun(tmp_path):
    data, store = tmp_path / "data", tmp_path / "store"
    good, bad = _dataset(data)
    first = _frames(data, store)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    warnings = [line for line in first.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {data / 'train.csv'}:3: not UTF-8 text (byte 0xe8); save the file as UTF-8; "
        "the folders are used",
        f"warning: {data / 'val.csv'}:3: malformed CSV (field larger than field limit "
        "(131072)); the folders are used"]
    with open(store / "failures.csv", encoding="utf-8", newline="") as f:
        listed = {row["video"]: row["reason"] for row in csv.DictReader(f)}
    assert sorted(listed) == sorted(bad)
    for path, reason in bad.items():
        assert reason in listed[path], path
    assert {r.video_id for s in ("train", "val") for r in read_index(store, s)} == good
    assert not [p for p in store.rglob("*") if ".partial" in p.name or ".tmp" in p.name]

    before = tree(store)
    again = _frames(data, store)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 videos done, 6 skipped (already complete), 14 failed" in again.stdout
    assert tree(store) == before  # byte for byte, store.json, index and failures.csv included


def test_a_header_claiming_billions_of_frames_costs_only_what_is_decoded(tmp_path):
    video = _avi(tmp_path / "billions.avi", length=0x7FFFFFFF)
    tracemalloc.start()
    try:
        try:
            extract_video(video, ExtractOptions())
        except VideoError as e:
            assert "truncated" in str(e)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6  # sized from the header, the table of kept frames alone took 17 GB


def test_a_name_the_store_cannot_hold_is_that_video_failure(tmp_path):
    source = _mp4(tmp_path / "v.mp4")
    video = SourceVideo("train", "abseiling", source)
    final = tmp_path / "store" / "train" / "abseiling" / ("n" * 300)  # over the 255-byte limit
    outcome = process_video(video, final, ExtractOptions(), 1, tmp_path)
    assert outcome.meta is None and not outcome.stop
    assert outcome.reason.startswith("the store's file system cannot hold this name")
    assert not any((tmp_path / "store" / "train" / "abseiling").iterdir())
