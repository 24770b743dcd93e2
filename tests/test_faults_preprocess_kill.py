"""``python -m preprocess frames`` killed with SIGKILL at random points, then run again: the
store must end up exactly as an uninterrupted run leaves it.

Three ways to die, in turn: the main process alone (its worker processes live on and finish
the video in hand, so the rerun must wait for them), the whole process tree at once (power
cut, container stop), and one worker (the kernel's out-of-memory killer picks the biggest
process). The kill point is random: after a random number of finished videos, or while the
HDF5 file is being packed, plus up to 30 ms.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from formats.store import read_index
from preprocess.__main__ import main as preprocess_main
from preprocess.extract import ExtractOptions
from preprocess.frame_bytes import read_frame_bytes
from preprocess.frames import build_store
from preprocess.synth import SynthOptions, make_dataset
from preprocess.verify import verify_store
from tests.helpers.faults import (
    FAULT_ROUNDS,
    children,
    fault_rng,
    group_members,
    kill,
    python_module,
    replay_hint,
    tree,
    wait_gone,
    wait_until,
)

MODES = ("main process", "process tree", "one worker")
FORMATS = ("jpg", "hdf5")
SKIP = ("store.json", "train.h5", "val.h5")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill") / "data"
    make_dataset(SynthOptions(classes=2, train_per_class=3, val_per_class=1, duration=1.2,
                              width=96, height=64),
                 root, jobs=2)
    return root


@pytest.fixture(scope="module")
def references(dataset, tmp_path_factory) -> dict[str, Path]:
    """The store of an uninterrupted run, per format."""
    base = tmp_path_factory.mktemp("reference")
    for fmt in FORMATS:
        build_store(dataset, base / fmt, ExtractOptions(fmt), jobs=2, quiet=True)
    return {fmt: base / fmt for fmt in FORMATS}


def _finished_videos(store: Path, fmt: str) -> int:
    base = store / ".parts" if fmt == "hdf5" else store
    return sum(1 for p in base.glob("*/*/*") if p.is_dir() and not p.name.endswith(".partial"))


def _packing(store: Path) -> bool:
    return any(store.glob("*.h5.tmp*"))


def _workers(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"LokyProcess" in f.read():
                    found.append(child)
        except OSError:
            continue
    return found


def _same_store(store: Path, reference: Path) -> None:
    for split in ("train", "val"):
        ours, theirs = read_index(store, split), read_index(reference, split)
        assert ours == theirs
        for record in ours:
            frames = list(range(record.kept_frames))
            assert read_frame_bytes(store, record, frames) == read_frame_bytes(
                reference, record, frames)
    assert tree(store, SKIP) == tree(reference, SKIP)  # no partial or temporary file left
    assert verify_store(store, jobs=1, quiet=True) == []


def _kill_at(proc: subprocess.Popen, store: Path, fmt: str, mode: str, after: int, total: int,
             extra_s: float, where: str) -> None:
    """Kill as ``mode`` says once ``after`` videos are done (``total``: once packing began),
    ``extra_s`` later; wait for the main process. The run leads its own process group."""
    try:
        if after < total:
            wait_until(lambda: _finished_videos(store, fmt) >= after, proc, 120,
                       what=f"{after} videos ({where})")
        else:
            wait_until(lambda: _packing(store), proc, 120, what=f"packing ({where})")
        time.sleep(extra_s)
        if mode == "main process":
            kill([proc.pid])
        elif mode == "process tree":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            # The run may finish before a worker shows (exit 0, which the caller accepts).
            wait_until(lambda: bool(_workers(proc.pid)) or proc.poll() is not None,
                       timeout=60, what="a worker")
            kill(_workers(proc.pid)[:1])
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop_group(pgid: int) -> None:
    """End what is left of a killed run's process group (idle orphaned workers)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_gone(group_members(pgid))


def test_frames_killed_at_random_points_then_rerun_give_the_uninterrupted_store(
        dataset, references, tmp_path, capsys):
    rng = fault_rng("preprocess kill")
    total = sum(1 for _ in dataset.glob("*/*/*.mp4"))
    kills = [(r, MODES[i], FORMATS[(3 * r + i) % 2]) for r in range(FAULT_ROUNDS)
             for i in range(len(MODES))]
    for n, (round_, mode, fmt) in enumerate(kills):
        where = f"{replay_hint(round_)}; kill of the {mode}, {fmt}"
        # The last video, or the packing, only where the run cannot end before the kill.
        last = total if fmt == "hdf5" and mode != "one worker" else total - 1
        after, extra_s = rng.randint(0, last), rng.uniform(0, 0.03)
        for attempt in range(4):
            store = tmp_path / f"{n}-{attempt}-{fmt}"
            args = ["frames", "--data", str(dataset), "--out", str(store), "--format", fmt,
                    "--jobs", "2"]
            log = tmp_path / f"{n}-{attempt}.log"  # a file: orphaned workers would hold a pipe
            with open(log, "w") as err_file:
                proc = python_module("preprocess", *args, stdout=subprocess.DEVNULL,
                                     stderr=err_file, start_new_session=True)
            try:
                _kill_at(proc, store, fmt, mode, after, total, extra_s, where)
                if proc.returncode == 0 and mode != "one worker" and attempt < 3:
                    # The last videos finished before the kill landed: try an earlier point.
                    after, extra_s = after // 2, 0.0
                    continue
                _check_killed_run(proc.returncode, log.read_text(), mode, where)
                # The same command again (it waits for workers of the killed run still writing).
                assert preprocess_main(args) == 0, where
                capsys.readouterr()
                _same_store(store, references[fmt])
                break
            finally:
                _stop_group(proc.pid)


def _check_killed_run(code: int, err: str, mode: str, where: str) -> None:
    if mode != "one worker":
        assert code == -signal.SIGKILL, f"{where}: the run ended before the kill"
        return
    # The run notices and stops with one line (unless its last video was already in).
    assert code in (0, 1), f"{where}: exit {code}"
    assert "Traceback" not in err, f"{where}: {err[-2000:]}"
    if code == 1:
        assert err.strip().splitlines()[-1].startswith("error: a worker process died"), where
