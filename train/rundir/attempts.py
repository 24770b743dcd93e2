"""Who holds a run folder (its lock), how a torchrun restart finds it again, and its attempts.

Lock. Rank 0 holds ``<run>/.lock`` (flock) from the moment it creates or reopens the folder to
the end of the run, and writes its pid and host into it; a second process (a second
``--resume``, or a resume while the first process is still alive) gets one line naming them.
Only the holder removes the temporary files a killed process left (``*.tmp*``), so two
processes never delete each other's checkpoint being written.

Attempts. Every process launch that trains in the folder is an attempt: run.json ``attempts``
gets one entry (started, host, machine, git commit and dirtiness, torchrun restart count, the
name of its system file and the path of the store it read), appended, never rewritten. The
first attempt's system description is system.json; attempt ``k`` (0-based) after it writes
``system.<k>.json``.

Restarts. ``torchrun --max-restarts`` reruns the same command line; ``TORCHELASTIC_RUN_ID``
(the same for every attempt of one launch) and ``TORCHELASTIC_RESTART_COUNT`` tell a restart.
A run started under torchrun leaves a marker ``<out>/.torchrun/<run id>.json`` naming its
folder, where a restart finds it; a marker older than this node's torchrun was left by another
launch with the same ``--rdzv-id`` and is ignored. A restart never repeats a run that stopped on
a NaN loss (it would stop the same way); one after a user error ends at once (train/errors.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import socket
import time
from pathlib import Path

from formats.files import TMP_MARK, atomic_write
from formats.results import SYSTEM_FILE
from preprocess.lock import flock
from train import TrainError
from train.launch import launcher
from train.rundir.clock import launcher_start

RUN_LOCK_FILE = ".lock"
MARKER_DIR = ".torchrun"


# ---- the lock ------------------------------------------------------------------------------

def lock_run_dir(run_dir: Path) -> int:
    """Hold ``run_dir`` for this process (a descriptor to keep open while training), or
    raise a one-line TrainError naming the process that holds it."""
    path = Path(run_dir) / RUN_LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise TrainError(f"{run_dir}: in use by {holder}; wait for it to end (or stop it), "
                         "then resume") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def remove_partial(run_dir: Path) -> None:
    """Files a killed process was writing (checkpoint, run.json, heartbeat); only the lock's
    holder calls this."""
    for partial in Path(run_dir).glob(f"*{TMP_MARK}*"):
        partial.unlink(missing_ok=True)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def create_run_dir(out: Path, config_name: str) -> Path:
    """A new, empty run folder ``<out>/<config name>/<run id>``."""
    parent = Path(out) / config_name
    parent.mkdir(parents=True, exist_ok=True)
    while True:  # a fresh id; two runs started in the same second differ in the suffix
        run_dir = parent / new_run_id()
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


# ---- restart markers -----------------------------------------------------------------------

def _marker(out: Path, suffix: str) -> Path | None:
    run_id = launcher().run_id
    if run_id is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:100]
    return Path(out) / MARKER_DIR / f"{safe}{suffix}"


def _fresh(path: Path | None, own_start: float) -> bool:
    """True if ``path`` exists and was written during this node's torchrun launch."""
    try:
        return path is not None and path.stat().st_mtime >= launcher_start(own_start) - 1.0
    except OSError:
        return False


def remember_run(out: Path, run_dir: Path) -> None:
    """Leave the marker a torchrun restart of this launch finds the run by."""
    path = _marker(out, ".json")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"run_dir": str(Path(run_dir).resolve())}) + "\n")


def find_restarted_run(out: Path, own_start: float) -> Path | None:
    """The run folder the first attempt of this torchrun launch created, if any."""
    path = _marker(out, ".json")
    if not _fresh(path, own_start):
        return None
    try:
        run_dir = Path(json.loads(path.read_text(encoding="utf-8"))["run_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return run_dir if run_dir.is_dir() else None


# ---- attempts ------------------------------------------------------------------------------

def system_file(index: int) -> str:
    """system.json for the first attempt, system.<index>.json for later ones."""
    return SYSTEM_FILE if index == 0 else f"system.{index}.json"


def _attempt(info: dict, started: float | None, restart: int, index: int) -> dict:
    return {
        "started": None if started is None else
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "host": info.get("host"), "machine": info.get("machine"),
        "git_commit": info.get("git_commit"), "git_dirty": info.get("git_dirty"),
        "restart": restart, "system": system_file(index),
    }


def prior_attempts(run_dir: Path, recorded: list[dict], checkpointed: list[dict]) -> list[dict]:
    """The attempts so far: run.json's list (it also has attempts killed before their first
    checkpoint), else the checkpoint's; for a run from before attempts were recorded, its
    system.json as the first attempt."""
    attempts = max([list(recorded or []), list(checkpointed or [])], key=len)
    if not attempts:
        try:
            info = json.loads((Path(run_dir) / SYSTEM_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if isinstance(info, dict):
            attempts = [_attempt(info, None, 0, 0)]
    return attempts


def add_attempt(attempts: list[dict], info: dict, started: float,
                store: str | None = None) -> list[dict]:
    """``attempts`` with this process's attempt (reading the store at path ``store``)."""
    return [*attempts, {**_attempt(info, started, launcher().restart, len(attempts)),
                        "store": store}]
