"""Every rank's error: a user error on a rank other than 0 (a corrupt frame that only rank 1
reads) is printed once, as one line naming the rank, the frame and the video; torchrun's
failure summary carries it; rank 0 points at it instead of advising a resume; a torchrun
restart does not run into the same error again."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from formats.store import frame_name
from tests.helpers.train import ONE_THREAD_ENV, REPO, TINY, TORCHRUN, kill_tree

# The val ShardSampler gives rank 1 of 2 the second half of the 7 val clips (3..6); clip 6 is
# frames 4-7 of this video, read by rank 1 only.
VIDEO = "bungee_jumping/val_bungee_jumping_00"
FRAME = 5
CORRUPT = rf"{frame_name(FRAME)}: corrupt JPEG in video {VIDEO}"
# A traceback through the project's code (torchrun's own ChildFailedError traceback, printed
# above its failure summary on any failed job, is not ours).
OUR_FRAME = re.compile(r'File ".*/(train|datasets|preprocess|models|opts)\b')


@pytest.fixture(scope="module")
def store(tiny_store, tmp_path_factory) -> Path:
    """A copy of the tiny store with one corrupt val frame."""
    store = Path(shutil.copytree(tiny_store, tmp_path_factory.mktemp("corrupt") / "store"))
    path = store / "val" / VIDEO / frame_name(FRAME)
    assert path.is_file()
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    return store


def _torchrun(store: Path, out: Path, *launcher: str) -> subprocess.CompletedProcess:
    job = subprocess.Popen(
        [*TORCHRUN, "--standalone", "--nproc-per-node=2",
         *launcher, "-m", "train", "--config", str(TINY), "--data", str(store),
         "--out", str(out)], cwd=REPO, env=ONE_THREAD_ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = job.communicate(timeout=300)
    finally:
        if job.poll() is None:  # a hang: stop torchrun and its workers, then fail
            kill_tree(job.pid)
            job.wait()
    return subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)


def test_a_corrupt_frame_read_by_rank_1_is_named_once_with_its_rank(store, tmp_path):
    done = _torchrun(store, tmp_path)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert not OUR_FRAME.search(output), output[-4000:]
    # Rank 1's line, printed once by the rank itself (torchrun's summary quotes it again).
    own = [line for line in done.stderr.splitlines() if line.startswith("error: [rank 1 on ")]
    assert len(own) == 1 and re.search(CORRUPT, own[0]), done.stderr[-4000:]
    # Rank 0 points at it instead of advising a resume.
    assert "error: [rank 0 on " in done.stderr
    zero = [line for line in done.stderr.splitlines() if line.startswith("error: [rank 0 on ")]
    assert zero == [zero[0]] and zero[0].endswith("process 1 stopped: see its error above")
    assert "resume" not in zero[0]
    # torchrun's failure summary: rank 1 is the root cause, with the same line.
    summary = done.stderr[done.stderr.index("Root Cause"):]
    assert re.search(r"rank\s+: 1 ", summary) and "error_file: <N/A>" not in summary
    assert re.search(rf"traceback : {re.escape(own[0])}", summary), summary


def test_a_restart_after_a_user_error_ends_at_once(store, tmp_path):
    done = _torchrun(store, tmp_path, "--max-restarts=1")
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert not OUR_FRAME.search(done.stdout + done.stderr), done.stderr[-4000:]
    first = [line for line in lines if re.search(CORRUPT, line) and line.startswith("error:")
             and "not restarted" not in line]
    assert len(first) == 1, done.stderr[-4000:]  # the first attempt's error, once
    again = [line for line in lines if line.startswith("error: ") and "not restarted: the "
             "previous attempt stopped on a user error" in line]  # (torchrun quotes them too)
    assert len(again) == 2, done.stderr[-4000:]  # each process of the restart says why
    assert len(list((tmp_path / "test_tiny").iterdir())) == 1  # no second run started
