"""``make frames`` on a disk that fills up: one line, nothing half-written, and the same
command completes the store once there is room. The disk is a small tmpfs (needs root, as
the test machines run the suite)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from formats.store import read_index
from preprocess import frame_bytes as frame_bytes_module
from preprocess.extract import ExtractOptions
from preprocess.frame_bytes import read_frame_bytes
from preprocess.frames import build_store
from tests.helpers.faults import REPO, tree
from tests.helpers.train import small_tmpfs

FULL = re.compile(r"error: disk full while writing (.+): (\d+) of 10 videos done; free space "
                  r"and run the same command again")


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "400k") as mount:
        try:
            yield mount
        finally:
            for handle in frame_bytes_module._h5_files.values():  # this process's read handles
                handle.close()
            frame_bytes_module._h5_files.clear()
            frame_bytes_module._h5_videos.clear()


def _resize(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def _frames(data: Path, store: Path, fmt: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "preprocess", "frames", "--data", str(data),
                           "--out", str(store), "--format", fmt, "--jobs", "2"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _leftovers(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if ".partial" in p.name or ".tmp" in p.name]


def _same_videos(store: Path, reference: Path) -> None:
    for split in ("train", "val"):
        ours, theirs = read_index(store, split), read_index(reference, split)
        assert [r.video_id for r in ours] == [r.video_id for r in theirs]
        for a, b in zip(ours, theirs, strict=True):
            frames = list(range(a.kept_frames))
            assert read_frame_bytes(store, a, frames) == read_frame_bytes(reference, b, frames)


def test_a_full_disk_stops_in_one_line_and_the_rerun_completes(synth_videos, synth_jpg_store,
                                                               small_disk):
    reference = synth_jpg_store
    store = small_disk / "store"
    full = _frames(synth_videos, store, "jpg")
    assert full.returncode == 2, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    match = FULL.fullmatch(full.stderr.strip().splitlines()[-1])
    assert match, full.stderr[-2000:]
    done = int(match.group(2))
    assert 0 < done < 10
    assert _leftovers(store) == []  # nothing half-written
    complete = [p for p in store.glob("*/*/*") if (p / "meta.json").is_file()]
    assert len(complete) >= done  # a worker may have finished one the run had not counted
    assert {p.name for p in store.glob("*/*/*")} == {p.name for p in complete}

    _resize(small_disk, "8m")
    again = _frames(synth_videos, store, "jpg")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{10 - len(complete)} videos done, {len(complete)} skipped" in again.stdout
    _same_videos(store, reference)
    assert tree(store, ("store.json",)) == tree(reference, ("store.json",))


def test_hdf5_packing_checks_the_space_it_needs_first(synth_videos, small_disk, tmp_path):
    reference = tmp_path / "reference"
    build_store(synth_videos, reference, ExtractOptions("hdf5"), jobs=2, quiet=True)
    _resize(small_disk, "1200k")  # room for the staged videos, not for the packed file too
    store = small_disk / "store"
    short = _frames(synth_videos, store, "hdf5")
    assert short.returncode == 2, short.stderr[-3000:]
    last = short.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"error: {re.escape(str(store / 'train.h5'))}: packing needs about [\d.]+ MB free for "
        r"the new file \(the old file and the staged videos stay until it is complete\), "
        r"[\d.]+ MB are free; free space and run the same command again", last), last
    assert _leftovers(store) == [] and not (store / "train.h5").exists()

    _resize(small_disk, "8m")
    again = _frames(synth_videos, store, "hdf5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 videos done, 10 skipped" in again.stdout  # the staged videos were kept
    _same_videos(store, reference)
    assert not (store / ".parts").exists()
