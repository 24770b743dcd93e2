"""A run folder's life: created or reopened, held by one process, and its attempts.

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
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from formats.results import SYSTEM_FILE
from formats.store import StoreError
from preprocess.identity import store_compliance_issues
from preprocess.lock import flock
from train import TrainError, results, system
from train.clock import launcher_start
from train.distributed import Dist, broadcast_object, gather_objects
from train.results import RunRecord

RUN_LOCK_FILE = ".lock"
MARKER_DIR = ".torchrun"

T = TypeVar("T")


# ---- torchrun's attempt --------------------------------------------------------------------

def restart_count() -> int:
    """0 for a first attempt (or no torchrun), n for torchrun's n-th restart."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def launcher_id() -> str | None:
    return os.environ.get("TORCHELASTIC_RUN_ID")


def agreed(d: Dist, fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, its value on every rank; a one-line error raised by ``fn`` is raised
    on every rank, all at the same collective (so no rank waits for a peer that stopped)."""
    outcome: tuple[str, Any] | None = None
    if d.is_main:
        try:
            outcome = ("ok", fn())
        except (TrainError, StoreError) as e:
            outcome = ("error", e)
    kind, value = broadcast_object(d, outcome)
    if kind == "error":
        raise value
    return value


def any_error(d: Dist, fn: Callable[[], None]) -> None:
    """``fn()`` on every rank; the first rank's one-line error (in rank order) on all ranks."""
    error = None
    try:
        fn()
    except (TrainError, StoreError) as e:
        error = e
    for e in gather_objects(d, error):
        if e is not None:
            raise e


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
    for partial in Path(run_dir).glob("*.tmp*"):
        partial.unlink(missing_ok=True)


# ---- restart markers -----------------------------------------------------------------------

def _marker(out: Path, suffix: str) -> Path | None:
    launcher = launcher_id()
    if launcher is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", launcher)[:100]
    return Path(out) / MARKER_DIR / f"{safe}{suffix}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
        _write(path, json.dumps({"run_dir": str(Path(run_dir).resolve())}) + "\n")


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
    return [*attempts, {**_attempt(info, started, restart_count(), len(attempts)),
                        "store": store}]


# ---- opening the results -------------------------------------------------------------------

def open_results(config: dict, changed: list[str], opening, clips: dict[str, int], d: Dist,
                 own_start: float, held: ExitStack) -> tuple[RunRecord | None, Path | None]:
    """Rank 0 creates (or reopens: ``opening.run_dir``) the results folder, adds this attempt
    and writes config.yaml, its system file and run.json. Returns (record, folder); (None,
    None) on other ranks. ``opening`` is train.resume.Opening; ``clips`` the clips per split
    of the store as this run cuts them."""
    nodes = system.gather_nodes(d)  # every process: each node's local rank 0 describes it
    if not d.is_main:
        return None, None
    info = system.describe(d.device, nodes)
    point = opening.point
    if opening.run_dir is None:
        run_dir = results.create_run_dir(Path(config["out"]), config["name"])
        held.callback(os.close, lock_run_dir(run_dir))
        remember_run(Path(config["out"]), run_dir)
        attempts = []
    else:
        run_dir = opening.run_dir
        attempts = prior_attempts(run_dir, opening.previous.get("attempts") or [],
                                  point.attempts if point else [])
        results.keep_epochs_through(run_dir, point.epoch if point else -1)
    attempts = add_attempt(attempts, info, own_start, opening.store.get("path"))
    store = {**opening.store, "clips": clips}
    record = RunRecord(
        config, point.run_id if point else run_dir.name, changed,
        any(bool(a.get("git_dirty")) for a in attempts), attempts[0].get("machine") or "",
        info["device"], d.world_size, nodes=len(nodes), resumed=len(attempts) > 1,
        restarts=sum(1 for a in attempts if a.get("restart")), lost_s=opening.lost_s,
        untimed_s=point.untimed_s if point else 0.0, reached=point.reached if point else False,
        t_target_s=point.t_target_s if point else None,
        epochs_done=point.epoch + 1 if point else 0, store=store,
        store_issues=store_compliance_issues(opening.store), attempts=attempts)
    restart = f"torchrun restart {restart_count()}, " if restart_count() else ""
    if point is not None:
        print(f"resuming {run_dir} after epoch {point.epoch} ({restart}lost "
              f"{opening.lost_s:.1f} s of work to stops so far, counted in the clock)",
              flush=True)
    elif opening.run_dir is not None:
        print(f"starting {run_dir} over from epoch 0 ({restart}no checkpoint yet; lost "
              f"{opening.lost_s:.1f} s of work, counted in the clock)", flush=True)
    results.write_config(run_dir, config)
    results.write_json(run_dir / system_file(len(attempts) - 1), info)
    results.write_json(run_dir / results.RUN_FILE, record.to_json())
    return record, run_dir
