"""Bad and odd input videos for ``python -m preprocess frames``.

A dataset mixes good videos of unusual shapes (odd size, portrait, rotation tag, variable
frame rate, 4K, names with spaces, quotes and non-ASCII characters) with every kind of
unusable entry. The good ones must come out byte for byte as in a run over the good videos
alone; each bad one is listed with its reason; nothing partial is left; the exit status is 0
without --strict and 1 with it.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from formats.store import read_index
from preprocess.extract import ExtractOptions, VideoError, extract_video
from preprocess.frame_bytes import read_frame_bytes
from preprocess.frames import build_store
from preprocess.resample import kept_frame_indices
from preprocess.verify import verify_store
from tests.helpers.faults import (
    FAULT_ROUNDS,
    FAULT_SEED,
    display_rotation,
    encode_video,
    faststart,
    fault_rng,
    gradient_frames,
    mp4_boxes,
    run_obeying_file_modes,
    tree,
    write_audio_only,
)

CLASSES = ("abseiling", "crème brûlée")  # a class folder with a space and non-ASCII letters
NAME = "{}_000001_000011.mp4"
# Where a file is cut decides which step notices (open, stream list, first or a later frame).
TRUNCATED = ("cannot open", "no video stream", "no decodable video frames", "decoding failed",
             "truncated")


def _good_videos(root: Path) -> dict[str, Path]:
    """Good but unusual videos, by kind."""
    a, b = (root / "train" / c for c in CLASSES)
    va, vb = (root / "val" / c for c in CLASSES)
    for folder in (a, b, va, vb):
        folder.mkdir(parents=True)
    rate = Fraction(30)
    good = {
        "plain": encode_video(a / NAME.format("plain"), gradient_frames(40, 96, 64), rate),
        "odd size 341x255": encode_video(a / NAME.format("odd"), gradient_frames(34, 341, 255, 1),
                                         rate, pix_fmt="yuv444p"),
        "portrait": encode_video(b / NAME.format("portrait"), gradient_frames(36, 64, 112, 2),
                                 rate),
        "rotation tag": encode_video(b / NAME.format("rotated"), gradient_frames(40, 96, 64),
                                     rate, rotation=90),
        "4K": encode_video(b / NAME.format("uhd"), gradient_frames(16, 3840, 2160, 3),
                           Fraction(15), preset="ultrafast"),
        "name with spaces, quotes, non-ASCII": encode_video(
            a / NAME.format('vidéo n°2, "été" 日本'), gradient_frames(33, 80, 48, 4), rate),
        "val a": encode_video(va / NAME.format("val a"), gradient_frames(32, 64, 48, 5), rate),
        "val b": encode_video(vb / NAME.format("val b"), gradient_frames(32, 64, 48, 6), rate),
    }
    # Variable frame rate: gaps of 1, 2 or 3 ticks of 1/30 s between frames.
    gaps = [1, 3, 2, 1, 1, 2, 3, 1] * 6
    pts = [sum(gaps[:i]) * 1000 for i in range(len(gaps))]
    good["variable frame rate"] = encode_video(
        a / NAME.format("vfr"), gradient_frames(len(gaps), 96, 64, 7), rate, pts=pts,
        time_base=Fraction(1, 30000))
    return good


def _bad_videos(root: Path, plain: Path) -> dict[str, tuple[Path, str | tuple[str, ...]]]:
    """Unusable entries, by kind: (path, expected reason or reasons)."""
    a = root / "train" / CLASSES[0]
    b = root / "val" / CLASSES[1]
    data = plain.read_bytes()
    boxes = mp4_boxes(data)
    fast = faststart(plain, root / "fast.tmp")
    fast_data, fast_boxes = fast.read_bytes(), mp4_boxes(fast.read_bytes())
    fast.unlink()
    bad: dict[str, tuple[Path, str | tuple[str, ...]]] = {}

    def cut(name: str, source: bytes, at: int) -> None:
        path = a / NAME.format(name)
        path.write_bytes(source[:at])
        bad[name] = (path, TRUNCATED)

    moov, mdat = boxes["moov"], boxes["mdat"]
    assert mdat[0] < moov[0], "the encoder writes the index (moov) last"
    cut("cut in mdat", data, mdat[0] + mdat[1] // 2)
    cut("cut at moov start", data, moov[0] + 4)
    cut("cut 10% into moov", data, moov[0] + moov[1] // 10)
    cut("cut 50% into moov", data, moov[0] + moov[1] // 2)
    fmoov, fmdat = fast_boxes["moov"], fast_boxes["mdat"]
    cut("faststart cut in moov", fast_data, fmoov[0] + fmoov[1] // 2)
    cut("faststart cut after moov", fast_data, fmdat[0])
    cut("faststart cut in mdat", fast_data, fmdat[0] + fmdat[1] // 2)
    cut("faststart cut 1 byte short", fast_data, len(fast_data) - 1)

    def add(name: str, path: Path, reason: str) -> None:
        bad[name] = (path, reason)

    empty = a / NAME.format("empty")
    empty.write_bytes(b"")
    add("empty", empty, "empty file")
    rand = a / NAME.format("random bytes")
    rand.write_bytes(os.urandom(5000))
    add("random bytes", rand, "cannot open")
    audio = a / NAME.format("audio only")
    write_audio_only(audio)
    add("audio only", audio, "no video stream")
    short = encode_video(b / NAME.format("short"), gradient_frames(20, 64, 48), Fraction(30))
    add("fewer frames than one clip", short, "too short: 10 kept frames")
    dangling = a / NAME.format("dangling link")
    dangling.symlink_to(root / "nowhere.mp4")
    add("dangling symlink", dangling, "No such file")
    fifo = a / NAME.format("fifo")
    os.mkfifo(fifo)
    add("FIFO", fifo, "not a regular file")
    folder = a / NAME.format("folder")
    folder.mkdir()
    add("directory named .mp4", folder, "not a regular file")
    locked = a / NAME.format("no permission")
    shutil.copyfile(plain, locked)
    locked.chmod(0)
    add("no read permission", locked, "Permission denied")
    newline = a / NAME.format("new\nline")
    newline.write_bytes(os.urandom(3000))
    add("name with a newline", newline, "cannot open")
    latin1 = Path(os.fsdecode(bytes(a) + b"/latin1_\xe9t\xe9_000001_000011.mp4"))
    shutil.copyfile(plain, latin1)
    add("name not UTF-8", latin1, "not valid UTF-8")
    return bad


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(good-only dataset, the same plus every bad entry, good videos, bad entries)."""
    root = tmp_path_factory.mktemp("videos")
    good_root = root / "good"
    good = _good_videos(good_root)
    mixed_root = root / "mixed"
    shutil.copytree(good_root, mixed_root, symlinks=True)
    good_mixed = {k: mixed_root / p.relative_to(good_root) for k, p in good.items()}
    bad = _bad_videos(mixed_root, good_mixed["plain"])
    return good_root, mixed_root, good_mixed, bad


def test_good_videos_are_odd_as_intended(datasets):
    _, _, good, _ = datasets
    assert display_rotation(good["rotation tag"]) not in (None, 0)
    vfr = extract_video(good["variable frame rate"], ExtractOptions())
    assert vfr.source_fps not in (15.0, 30.0)  # the average of irregular gaps
    assert len(vfr.jpegs) == len(kept_frame_indices(vfr.source_frames, vfr.source_fps))
    # Rotation tags are ignored (as torchvision did): the same frames as without the tag.
    plain = extract_video(good["plain"], ExtractOptions())
    rotated = extract_video(good["rotation tag"], ExtractOptions())
    assert rotated.jpegs == plain.jpegs and (rotated.width, rotated.height) == (96, 64)
    uhd = extract_video(good["4K"], ExtractOptions())
    assert (uhd.source_width, uhd.source_height, uhd.width, uhd.height) == (3840, 2160, 568, 320)


def _failures(store: Path) -> dict[str, str]:
    with open(store / "failures.csv", encoding="utf-8", newline="") as f:
        return {row["video"]: row["reason"] for row in csv.DictReader(f)}


def _shown(path: Path, data: Path) -> str:
    """How failures.csv names a video: its path below the dataset, undecodable bytes as
    backslash escapes."""
    rel = os.fsencode(path.relative_to(data))
    return rel.decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("fmt", ["jpg", "hdf5"])
def test_bad_videos_are_reported_and_good_ones_come_out_as_in_a_clean_run(datasets, tmp_path,
                                                                          fmt):
    good_root, mixed_root, good, bad = datasets
    clean = tmp_path / "clean"
    build_store(good_root, clean, ExtractOptions(fmt), jobs=2, quiet=True)
    store = tmp_path / "mixed"
    cli = [sys.executable, "-m", "preprocess", "frames", "--data", str(mixed_root), "--out",
           str(store), "--format", fmt, "--jobs", "2"]
    done = run_obeying_file_modes(cli, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = [line for line in done.stdout.splitlines() if "videos done" in line]
    assert summary and f"{len(good)} videos done, 0 skipped (already complete), " \
                      f"{len(bad)} failed" in summary[0]

    failures = _failures(store)
    assert len(failures) == len(bad)
    for kind, (path, reason) in bad.items():
        shown = _shown(path, mixed_root)
        assert shown in failures, f"{kind}: {shown!r} not in failures.csv"
        reasons = (reason,) if isinstance(reason, str) else reason
        assert any(r in failures[shown] for r in reasons), f"{kind}: {failures[shown]!r}"
        assert f"failed: {path.parts[-3]}: {shown}: " in done.stdout, kind

    # Only complete videos are indexed, and they are exactly the clean run's, byte for byte.
    for split in ("train", "val"):
        ours, theirs = read_index(store, split), read_index(clean, split)
        assert ours == theirs
        for record in ours:
            frames = list(range(record.kept_frames))
            assert read_frame_bytes(store, record, frames) == read_frame_bytes(clean, record,
                                                                                frames)
    assert {r.video_id for s in ("train", "val") for r in read_index(store, s)} == {
        f"{p.parent.name}/{p.stem}" for p in good.values()}
    assert verify_store(store, jobs=1, quiet=True) == []
    # Nothing partial: the same files as the clean store (jpg: the same bytes too).
    skip = ("store.json", "failures.csv", "dataset_check.csv", "train.h5", "val.h5")
    assert tree(store, skip) == tree(clean, skip)
    assert sorted(p.name for p in store.iterdir()) == sorted(p.name for p in clean.iterdir())

    if fmt == "hdf5":
        return  # the exit status policy does not depend on the format
    # --strict: the same failures (tried again) make the exit status 1; good videos are kept.
    strict = run_obeying_file_modes(cli + ["--strict"], timeout=300)
    assert strict.returncode == 1, strict.stderr[-3000:]
    assert f"0 videos done, {len(good)} skipped (already complete), {len(bad)} failed" \
        in strict.stdout
    assert _failures(store) == failures
    assert tree(store, skip) == tree(clean, skip)


def test_a_file_cut_anywhere_is_refused_or_loses_nothing(tmp_path):
    """Random cut points (FAULT_ROUNDS x 12, with the index at the end and at the front):
    the extractor refuses the file or, if the cut spared every frame (trailing metadata),
    returns exactly the intact file's frames; never a silently shorter video."""
    rng = fault_rng("cut anywhere")
    intact = encode_video(tmp_path / "v.mp4", gradient_frames(60, 96, 64), Fraction(30))
    for source in (intact, faststart(intact, tmp_path / "front.mp4")):
        data = source.read_bytes()
        expected = extract_video(source, ExtractOptions()).jpegs
        cuts = [len(data) - 1] + [rng.randrange(len(data)) for _ in range(12 * FAULT_ROUNDS)]
        for at in cuts:
            cut = tmp_path / "cut.mp4"
            cut.write_bytes(data[:at])
            try:
                got = extract_video(cut, ExtractOptions()).jpegs
            except VideoError:
                continue
            assert got == expected, f"{source.name} cut at {at} of {len(data)} bytes gave " \
                                    f"{len(got)} frames, not {len(expected)} (seed {FAULT_SEED})"


def test_a_source_that_turns_into_a_broken_link_is_reported_on_the_rerun(tmp_path):
    data = tmp_path / "data"
    for split, count in (("train", 2), ("val", 1)):
        (data / split / "abseiling").mkdir(parents=True)
        for i in range(count):
            encode_video(data / split / "abseiling" / NAME.format(f"v{i}"),
                         gradient_frames(32, 48, 32, i), Fraction(30))
    store = tmp_path / "store"
    build_store(data, store, ExtractOptions(), jobs=1, quiet=True)
    gone = data / "train" / "abseiling" / NAME.format("v1")
    gone.unlink()
    gone.symlink_to(tmp_path / "moved away.mp4")
    summary = build_store(data, store, ExtractOptions(), jobs=1, quiet=True)
    assert (summary.done, summary.skipped, summary.failed) == (0, 2, 1)
    assert "broken symbolic link" in _failures(store)[_shown(gone, data)]
    assert [r.video_id for r in read_index(store, "train")] == ["abseiling/v0_000001_000011"]
