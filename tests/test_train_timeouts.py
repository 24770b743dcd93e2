"""Bounded hangs: a process of a run that stops (SIGSTOP) ends the run after ``timeout_s``
with one line saying which wait timed out, whether the stopped one is another training
process (the collective timeout) or a loader worker (the DataLoader's timeout)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.faults import children
from tests.helpers.train import ONE_THREAD_ENV, REPO, TINY, agent_store
from train.data import Bounded, LoaderTimeout

TIMEOUT_S = 5
# Start-up of the process that times out is not in the bound; its exit after the timeout is.
SLACK_S = 25


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def _train(store: Path, out: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "train", "--config", str(TINY), "--data", str(store), "--out",
         str(out), "--timeout", str(TIMEOUT_S), "--set", "epochs=60", *args], cwd=REPO,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(jobs: list[subprocess.Popen], out: Path) -> None:
    deadline = time.monotonic() + 240
    while not list(out.glob("test_tiny/*/checkpoint.pt")):
        assert all(j.poll() is None for j in jobs), "a process ended before the checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.1)
    time.sleep(0.3)  # somewhere in the next epoch


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_stopped_rank_ends_the_run_after_the_collective_timeout(store, tmp_path):
    # Two training processes as torchrun would start them, their group's store served by
    # this process as by torchrun's agent (which would then stop the stopped one: SIGTERM,
    # and SIGKILL 30 s later).
    with agent_store() as rendezvous:
        jobs = [_train(store, tmp_path, {**ONE_THREAD_ENV, **rendezvous, "RANK": str(r),
                                         "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                         "LOCAL_WORLD_SIZE": "2"})
                for r in (0, 1)]
        try:
            _wait_for_checkpoint(jobs, tmp_path)
            os.kill(jobs[1].pid, signal.SIGSTOP)
            stopped = time.monotonic()
            _, stderr = jobs[0].communicate(timeout=TIMEOUT_S + SLACK_S + 30)
            took = time.monotonic() - stopped
        finally:
            _kill_all([j.pid for j in jobs])
            for j in jobs:
                j.wait()
    print(f"rank 0 ended {took:.1f} s after rank 1 stopped (timeout {TIMEOUT_S} s)")
    assert jobs[0].returncode == 1 and took < TIMEOUT_S + SLACK_S, (took, stderr[-3000:])
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    assert re.fullmatch(rf"error: \[rank 0 on .+\] timeout_s: waited {TIMEOUT_S} s for another "
                        r"process at (the loss check at epoch \d+, step \d+|the end of epoch \d+"
                        r"|the stop check after the checkpoint|.+) \(one stopped, hung or fell "
                        r"far behind\); .*raise --timeout.*", lines[0]), lines[0]
    assert "Traceback" not in stderr


def test_a_stopped_loader_worker_ends_the_run_after_the_loader_timeout(store, tmp_path):
    job = _train(store, tmp_path, ONE_THREAD_ENV, "--workers", "1")
    workers: list[int] = []
    try:
        _wait_for_checkpoint([job], tmp_path)
        workers = children(job.pid)  # the train and val loaders' workers
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        _, stderr = job.communicate(timeout=TIMEOUT_S + SLACK_S + 30)
        took = time.monotonic() - stopped
    finally:
        _kill_all([job.pid, *workers])
        job.wait()
    print(f"the run ended {took:.1f} s after its loader workers stopped (timeout {TIMEOUT_S} s)")
    assert job.returncode == 1 and took < TIMEOUT_S + SLACK_S, (took, stderr[-3000:])
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: timeout_s: no batch from the loader within {TIMEOUT_S} s (a "
                     "worker hung: stalled storage or a stopped process); the results so far "
                     "are kept: resume the run (make resume RUN=<run dir>), and raise --timeout "
                     "if the store is just slow"], stderr
    assert "Traceback" not in stderr


class _Numbers(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return i


@pytest.mark.parametrize("stop_after", ["epoch", "first batch"])
def test_a_loader_whose_worker_stops_times_out_at_any_wait(stop_after):
    """Between epochs too: persistent workers must each acknowledge a new epoch, and that
    wait is bounded like a batch's; the stopped worker is killed, so the exit is not held."""
    loader = torch.utils.data.DataLoader(_Numbers(), batch_size=2, num_workers=1,
                                         persistent_workers=True, timeout=2)
    bounded = Bounded(loader, 2)
    assert [b.tolist() for b in bounded] == [[0, 1], [2, 3]]
    [worker] = loader._iterator._workers
    batches = iter(bounded)
    if stop_after == "first batch":
        assert next(batches).tolist() == [0, 1]
    os.kill(worker.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(LoaderTimeout, match="no batch from the loader within 2 s"):
        next(batches)
    assert time.monotonic() - started < 2 + SLACK_S
    worker.join(timeout=10)
    assert not worker.is_alive()
