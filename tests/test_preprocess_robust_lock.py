"""A frame store shared by ``make frames`` and training runs, and ``make frames`` stopped with
SIGTERM. Every side is a real process: the lock is flock, held by whoever opened the file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from formats.store import StoreError, read_index
from preprocess.extract import ExtractOptions
from preprocess.frames import build_store
from preprocess.lock import store_read_lock
from tests.helpers.faults import REPO, group_members, python_module, tree, wait_gone, wait_until

READER = """
import sys
from preprocess.lock import store_read_lock
from formats.store import StoreError
try:
    with store_read_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes the pipe
except StoreError as e:
    print(f"error: {e}", flush=True)
"""


def _frames(dataset: Path, store: Path, *extra: str, **kwargs) -> subprocess.Popen:
    return python_module("preprocess", "frames", "--data", str(dataset), "--out", str(store),
                         "--jobs", "2", *extra, **kwargs)


def _reader(store: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", READER, str(store)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_frames_waits_while_a_training_run_reads_the_store(synth_videos, tmp_path):
    store = tmp_path / "store"
    build_store(synth_videos, store, ExtractOptions(), jobs=2, quiet=True)
    reader = _reader(store)
    try:
        assert reader.stdout.readline() == "held\n"
        err = tmp_path / "err.txt"
        with open(err, "w") as err_file:
            build = _frames(synth_videos, store, stdout=subprocess.DEVNULL, stderr=err_file)
        try:
            wait_until(lambda: "training run" in err.read_text(), build, 60,
                       what="the waiting message")
            time.sleep(0.5)
            assert build.poll() is None, "the build went on while the store was read"
        finally:
            reader.stdin.close()  # the training run ends
            reader.wait(timeout=30)
        assert build.wait(timeout=120) == 0
    finally:
        reader.kill()
        reader.wait()
    lines = err.read_text().splitlines()
    assert lines == [f"{store}: in use by a training run; waiting for it to finish "
                     "(stop it to build now) ..."]


def test_training_refuses_a_store_that_frames_is_writing(synth_videos, tmp_path):
    store = tmp_path / "store"
    build = _frames(synth_videos, store, "--format", "hdf5", stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    refusals = []
    try:
        while build.poll() is None and not refusals:
            try:
                with store_read_lock(store):
                    pass
            except StoreError as e:
                refusals.append(str(e))
            time.sleep(0.01)
        # Another process, too, while the build still runs (held until it ends).
        other = _reader(store)
        out = other.communicate(timeout=30)[0]
    finally:
        assert build.wait(timeout=120) == 0
    assert refusals == [f"{store}: a make frames run is writing this store; wait for it to "
                        "finish, then start again"]
    if out != "held\n":  # else the build ended in between
        assert out == f"error: {refusals[0]}\n"
    with store_read_lock(store):  # free again once the build is over
        assert read_index(store, "train")


def _workers_of(pgid: int, main_pid: int) -> list[int]:
    return [p for p in group_members(pgid) if p != main_pid]


def test_sigterm_stops_frames_and_its_workers_and_the_rerun_completes(synth_videos,
                                                                     synth_jpg_store, tmp_path):
    reference = synth_jpg_store
    store = tmp_path / "store"
    err = tmp_path / "err.txt"  # a file: a surviving worker would hold a pipe open
    with open(err, "w") as err_file:
        proc = _frames(synth_videos, store, stdout=subprocess.DEVNULL, stderr=err_file,
                       start_new_session=True)
    try:
        wait_until(lambda: len(_workers_of(proc.pid, proc.pid)) >= 2, proc, 60,
                   what="the worker processes")
        wait_until(lambda: any(store.glob("train/*/*/meta.json")), proc, 60,
                   what="a finished video")
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=60)
        wait_gone(group_members(proc.pid), timeout=10)  # no worker left behind
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert code == 128 + signal.SIGTERM
    lines = err.read_text().strip().splitlines()
    assert lines[-1] == "stopped (SIGTERM); run the same command again to resume"
    # Nothing after it either: joblib's resource tracker, which outlives the run, warned
    # about the killed workers' locks when the stop caught them holding one.
    assert "Traceback" not in err.read_text() and "Warning" not in err.read_text()
    done = subprocess.run([sys.executable, "-m", "preprocess", "frames", "--data",
                           str(synth_videos), "--out", str(store), "--jobs", "2"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert tree(store, ("store.json",)) == tree(reference, ("store.json",))
