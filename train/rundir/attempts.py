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

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
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
MARKER_KEPT_S = 7 * 24 * 3600  # a restart comes within minutes; a week is generous


# ---- can it be written -------------------------------------------------------------------

_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_failure(path: Path, error: OSError, run_dir: Path | None) -> TrainError:
    """The one line for an output that could not be written (``run_dir``: the run folder
    to resume once it is fixed; None: a new run, nothing to resume)."""
    if TMP_MARK in path.name:  # name the file being replaced, not its temporary
        path = path.with_name(path.name.split(TMP_MARK)[0])
    if error.errno in _FULL:
        try:
            free_mb = shutil.disk_usage(path if path.is_dir() else path.parent).free / 2**20
            free = f"{free_mb:.0f} MB free"
        except OSError:
            free = "no space left"
        kept = (f"the last checkpoint and results are kept: free space, then resume with make "
                f"resume RUN={run_dir}") if run_dir is not None else "free space and start again"
        return TrainError(f"{path}: disk full ({free}); {kept}")
    reason = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied", errno.ENOTDIR: "a file stands where a folder "
              "should be", errno.EEXIST: "a file stands where the folder should be"}.get(
                  error.errno, error.strerror or type(error).__name__)
    fix = (f"make {run_dir} writable, then resume with make resume RUN={run_dir}"
           if run_dir is not None else "choose a writable results folder (RESULTS=, --out)")
    return TrainError(f"{path}: cannot write ({reason}); {fix}")


def check_writable(folder: Path, run_dir: Path | None = None) -> None:
    """Prove that ``folder`` (or, while it does not exist, the folder it would be made in) can
    be written, before any time is spent on the run; root ignores file modes, so only a real
    write tells (a temporary file, removed at once). Nothing is created."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise TrainError(f"{existing}: not a folder; the results go to a folder "
                         "(RESULTS=, --out)")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check", suffix=TMP_MARK):
            pass
    except OSError as e:
        raise write_failure(folder, e, run_dir) from None


# ---- the lock ------------------------------------------------------------------------------

def lock_run_dir(run_dir: Path) -> int:
    """Hold ``run_dir`` for this process (a descriptor to keep open while training), or
    raise a one-line TrainError naming the process that holds it."""
    path = Path(run_dir) / RUN_LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_failure(path, e, Path(run_dir)) from None
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
    """Leave the marker a torchrun restart of this launch finds the run by (and remove the
    markers of launches long gone: a restart only ever reads its own launch's)."""
    path = _marker(out, ".json")
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob("*.json"):
        try:
            if time.time() - old.stat().st_mtime > MARKER_KEPT_S:
                old.unlink()
        except OSError:
            pass  # another launch's marker, removed or held meanwhile
    atomic_write(path, json.dumps({"run_dir": str(Path(run_dir).resolve())}) + "\n")


def forget_run(out: Path) -> None:
    """Remove this launch's marker once its run has finished (nothing left to restart)."""
    path = _marker(out, ".json")
    if path is not None:
        path.unlink(missing_ok=True)


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
