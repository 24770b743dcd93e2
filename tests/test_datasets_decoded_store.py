"""``python -m datasets.decoded_store``: a JPEG store -> a decoded-frame store (raw). Rerun, verify,
failures per video, bad input, a kill at a random point and a full disk, each followed by the
same command, which must leave the store an uninterrupted run leaves."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from datasets import decoded_store as decoded
from datasets.decoded_store import build_decoded_store
from datasets.decoded_store import main as decode_main
from formats.raw import HEADER_SIZE, RAW_SUFFIX
from formats.store import frame_name, read_index, read_settings, write_settings
from preprocess.__main__ import main as preprocess_main
from preprocess.extract import ExtractOptions
from preprocess.frames import build_store
from preprocess.identity import read_store_identity, store_compliance_issues
from preprocess.lock import WRITER_LOCK_FILE
from preprocess.synth import SynthOptions, make_dataset
from preprocess.verify import verify_store
from tests.helpers.faults import fault_rng, python_module, tree, wait_gone, wait_until
from tests.helpers.train import small_tmpfs

TOTAL = 8  # videos of the dataset


@pytest.fixture(scope="module")
def jpeg_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("decode")
    make_dataset(SynthOptions(classes=2, train_per_class=3, val_per_class=1, duration=1.2,
                              width=96, height=64), root / "data", jobs=2)
    build_store(root / "data", root / "jpg", ExtractOptions(), jobs=2, quiet=True)
    return root / "jpg"


@pytest.fixture(scope="module")
def reference(jpeg_store, tmp_path_factory) -> Path:
    """The decoded store of an uninterrupted run."""
    store = tmp_path_factory.mktemp("reference") / "raw"
    build_decoded_store(jpeg_store, store, jobs=2, quiet=True)
    return store


def _decode(jpeg_store: Path, store: Path, *extra: str) -> int:
    return decode_main(["--jpeg-store", str(jpeg_store), "--out", str(store),
                            "--jobs", "2", *extra])


def _files(store: Path) -> list[Path]:
    return sorted(store.glob(f"*/*/*{RAW_SUFFIX}"))


def test_rerun_skips_and_verify_finds_a_changed_pixel(jpeg_store, reference, tmp_path, capsys):
    store = tmp_path / "raw"
    assert _decode(jpeg_store, store) == 0
    assert f"{TOTAL} videos decoded, 0 skipped" in capsys.readouterr().out
    stale = _files(store)[0].with_name(f"gone{RAW_SUFFIX}")  # a video no longer in the index
    stale.write_bytes(b"old")
    assert _decode(jpeg_store, store) == 0
    assert f"0 videos decoded, {TOTAL} skipped" in capsys.readouterr().out
    assert not stale.exists()
    assert tree(store) == tree(reference)
    assert verify_store(store, jobs=1, quiet=True) == []
    for split in ("train", "val"):
        assert [replace(r, location="") for r in read_index(store, split)] == \
            [replace(r, location="") for r in read_index(jpeg_store, split)]

    path = _files(store)[3]
    with open(path, "r+b") as f:  # one pixel value, the file's size and header unchanged
        f.seek(HEADER_SIZE + 1000)
        value = f.read(1)[0]
        f.seek(HEADER_SIZE + 1000)
        f.write(bytes([value ^ 1]))
    problems = verify_store(store, jobs=1, quiet=True)
    assert problems == [f"{path}: pixels differ from the checksum written with them (damaged); "
                        "rebuild it with make frames FORMAT=raw"]


def test_a_video_that_cannot_be_decoded_is_listed_and_the_store_not_compliant(
        jpeg_store, tmp_path, capsys):
    broken = tmp_path / "jpg"
    shutil.copytree(jpeg_store, broken)
    record = read_index(broken, "train")[2]
    frame = broken / record.location / frame_name(5)
    frame.write_bytes(frame.read_bytes()[:300])  # truncated JPEG
    store = tmp_path / "raw"
    assert _decode(broken, store) == 0
    out = capsys.readouterr().out
    assert f"{TOTAL - 1} videos decoded, 0 skipped (already complete), 1 failed" in out
    failures = (store / "failures.csv").read_text().splitlines()
    assert len(failures) == 2 and failures[1].startswith(f"train,{record.video_id},{frame}:")
    assert record.video_id not in {r.video_id for r in read_index(store, "train")}
    identity = read_store_identity(store)
    assert identity["failed_videos"] == 1
    assert any("1 videos failed" in issue for issue in store_compliance_issues(identity))
    assert _decode(broken, store, "--strict") == 1  # the failed video is retried, fails again


def test_bad_input_is_one_line(jpeg_store, reference, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(jpeg_store, unfinished)
    write_settings(unfinished, replace(read_settings(unfinished), identity={}))
    cases = {
        str(unfinished): "the JPEG store's build is not complete",
        str(reference): "a raw store; decode from a JPEG store",
    }
    for source, expected in cases.items():
        assert _decode(Path(source), tmp_path / "out") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert _decode(jpeg_store, other) == 2
    assert "not empty and not a frame store" in capsys.readouterr().err
    assert _decode(jpeg_store, jpeg_store) == 2
    assert "is the JPEG store itself" in capsys.readouterr().err
    assert preprocess_main(["frames", "--data", str(tmp_path), "--out", str(tmp_path / "x"),
                            "--format", "raw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --format raw: a decoded store is made from a JPEG store")
    assert len(err.splitlines()) == 1


def test_a_jpeg_store_being_written_is_not_decoded(jpeg_store, tmp_path, capsys):
    fd = os.open(jpeg_store / WRITER_LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a make frames run into it holds it
        assert _decode(jpeg_store, tmp_path / "raw") == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip()
    assert err == f"error: {jpeg_store}: a make frames run is writing this store; wait for it " \
                  "to finish, then start again"
    assert not (tmp_path / "raw").exists()


def _finished(store: Path) -> int:
    return len(_files(store))


def test_killed_at_random_points_then_rerun_gives_the_uninterrupted_store(
        jpeg_store, reference, tmp_path, capsys):
    rng = fault_rng("decode kill")
    for n, mode in enumerate(("main process", "process tree")):
        after = rng.randint(0, TOTAL - 2)
        store = tmp_path / f"raw{n}"
        args = ["--jpeg-store", str(jpeg_store), "--out", str(store), "--jobs", "2"]
        log = tmp_path / f"{n}.log"  # a file: orphaned workers would hold a pipe
        with open(log, "w") as err_file:
            proc = python_module("datasets.decoded_store", *args, stdout=subprocess.DEVNULL,
                                 stderr=err_file, start_new_session=True)
        try:
            wait_until(lambda s=store, k=after: _finished(s) >= k, proc, 120,
                       what=f"{after} videos ({mode})")
            if mode == "main process":
                os.kill(proc.pid, signal.SIGKILL)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, f"{mode}: ended before the kill"
            assert decode_main(args) == 0, log.read_text()[-2000:]
            capsys.readouterr()
            assert tree(store) == tree(reference), mode
            assert verify_store(store, jobs=1, quiet=True) == []
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_gone([proc.pid])


FULL = re.compile(r"disk full while writing (.+): (\d+) of 8 videos done; free space and run "
                  r"the same command again")


def test_free_space_is_checked_first_and_a_full_disk_resumes(jpeg_store, reference, tmp_path,
                                                              monkeypatch, capsys):
    with small_tmpfs(tmp_path / "disk", "400k") as disk:
        store = disk / "raw"
        assert _decode(jpeg_store, store) == 2
        err = capsys.readouterr().err.strip()
        assert re.fullmatch(
            rf"error: {re.escape(str(store))}: the decoded frames of 8 videos need about "
            r"[\d.]+ MB free, [\d.]+ MB are free; free space \(or choose another --out\) and "
            r"run the same command again", err), err
        assert _files(store) == []

        # Another writer fills the disk after the check: the run stops in one line.
        real = shutil.disk_usage
        monkeypatch.setattr(decoded.shutil, "disk_usage",
                            lambda p: real(p)._replace(free=1 << 40))
        with pytest.raises(decoded.StoreError) as e:
            build_decoded_store(jpeg_store, store, jobs=1, quiet=True)
        match = FULL.fullmatch(str(e.value))
        assert match, str(e.value)
        assert int(match.group(2)) == _finished(store) >= 1
        assert [p for p in store.rglob("*") if ".partial" in p.name or ".tmp" in p.name] == []
        monkeypatch.undo()

        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        assert _decode(jpeg_store, store) == 0
        done = _finished(reference) - int(match.group(2))
        assert f"{done} videos decoded, {int(match.group(2))} skipped" in capsys.readouterr().out
        assert tree(store) == tree(reference)
