"""Rank 0's checks when an attempt continues a run folder: which folder (``--resume``, or the
one a torchrun restart finds), whether it may be continued, and whether the store is the run's.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import opts
from formats.results import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EPOCH_COLUMNS,
    EPOCHS_FILE,
    RESULTS_FORMAT,
    RUN_FILE,
    STATE_DIVERGED,
)
from preprocess.identity import read_store_identity
from train import TrainError
from train.launch import launcher
from train.rundir.attempts import (
    check_writable,
    find_restarted_run,
    lock_run_dir,
    remove_partial,
)
from train.rundir.checkpoint import ResumePoint


def read_run_json(run_dir: Path) -> dict:
    """run.json of a run folder; one-line TrainError if it cannot be read."""
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainError(f"{path}: unreadable ({e}); is this a run folder?") from None


def reopen(resume: Path | None, config: dict, own_start: float
           ) -> tuple[Path | None, int | None, dict]:
    """The folder this attempt continues (None: a new run), the descriptor holding its lock
    (to close when the run ends) and its run.json so far."""
    restart = launcher().restart
    run_dir = resume if resume is not None else (
        find_restarted_run(Path(config["out"]), own_start) if restart else None)
    if run_dir is None:
        check_writable(Path(config["out"]))  # before any time is spent on a new run
        return None, None, {}
    check_writable(run_dir, run_dir)
    fd = lock_run_dir(run_dir)
    try:
        remove_partial(run_dir)
        try:
            previous = read_run_json(run_dir)
        except TrainError:
            previous = {}  # a first attempt killed before it wrote run.json
        _check_same_version(run_dir, previous)
        if restart and previous.get("state") == STATE_DIVERGED:
            raise TrainError(f"{run_dir}: not restarted: the run stopped on a NaN/infinite loss "
                             "and would stop the same way")
        if resume is None:  # found by the restart lookup: the command line is the first attempt's
            _check_same_config(run_dir, config)
    except BaseException:
        os.close(fd)
        raise
    return run_dir, fd, previous


def _check_same_version(run_dir: Path, previous: dict) -> None:
    """A folder written by an earlier version of the project (another results format, other
    epochs.csv columns) is finished by that version: this one would misread it."""
    found = previous.get("format", RESULTS_FORMAT)  # the columns below tell an older one too
    columns = None
    try:
        with open(run_dir / EPOCHS_FILE, encoding="utf-8", newline="") as f:
            columns = tuple(next(csv.reader(f), None) or ()) or None
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as e:
        raise TrainError(f"{run_dir / EPOCHS_FILE}: unreadable ({e}); start a new run") from None
    if found == RESULTS_FORMAT and columns in (None, EPOCH_COLUMNS):
        return
    commits = sorted({a.get("git_commit") for a in previous.get("attempts") or []
                      if a.get("git_commit")})
    started = f" (git commit {', '.join(c[:12] for c in commits)})" if commits else ""
    raise TrainError(
        f"{run_dir}: written by an earlier version of this project (results format {found}"
        f"{'' if columns in (None, EPOCH_COLUMNS) else ', other epochs.csv columns'}); finish it "
        f"with the version that started it{started}, or start a new run")


def _check_same_config(run_dir: Path, config: dict) -> None:
    ours = {k: v for k, v in config.items() if k not in opts.RESOURCE_KNOBS}
    theirs = {k: v for k, v in opts.read_preset(run_dir / CONFIG_FILE).items()
              if k not in opts.RESOURCE_KNOBS}
    if ours != theirs:
        changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise TrainError(f"{run_dir}: the config changed since the run started "
                         f"({', '.join(changed)}); resume it with --resume {run_dir}")


def check_store(config: dict, point: ResumePoint | None, previous: dict) -> dict:
    """The identity of the store this attempt reads; a resumed run's store must have the
    fingerprint the run recorded."""
    store = Path(config["data"])
    identity = read_store_identity(store)
    recorded = (point.store_fingerprint if point else None) or (
        (previous.get("store") or {}).get("fingerprint"))
    if recorded and identity["fingerprint"] != recorded:
        theirs = (previous.get("store") or {}).get("path", "its first store")
        raise TrainError(
            f"{store}: store fingerprint {identity['fingerprint']} is not the run's "
            f"({theirs}: {recorded}); resume on the store the run read (make resume without "
            "STORE), or on one with the same content")
    return identity


def check_checkpoint(found: Path, point: ResumePoint, previous: dict, config: dict,
                     world_size: int) -> None:
    """The checkpoint must be this run's (not copied in from another run or config) and must
    have been written by as many processes as run now."""
    path = found / CHECKPOINT_FILE
    run_id = previous.get("run_id")
    if run_id and point.run_id != run_id:
        raise TrainError(f"{path}: checkpoint of run {point.run_id}, not of this run "
                         f"({run_id}); put back the run's own checkpoint or start a new run")
    if point.config_digest and point.config_digest != opts.workload_digest(config):
        raise TrainError(f"{path}: checkpoint of another config than {found / CONFIG_FILE}; "
                         "put back the run's own checkpoint or start a new run")
    if point.world_size != world_size:
        raise TrainError(f"{found}: the run used {point.world_size} process(es); resume it "
                         f"with torchrun --standalone --nproc-per-node={point.world_size}")


def say_continued(run_dir: Path, point: ResumePoint | None, lost_s: float) -> None:
    """The line of an attempt that continues ``run_dir`` (from ``point``; None: from epoch 0)."""
    restart = launcher().restart
    how = f"torchrun restart {restart}, " if restart else ""
    if point is not None:
        print(f"resuming {run_dir} after epoch {point.epoch} ({how}lost {lost_s:.1f} s of work "
              "to stops so far, counted in the clock)", flush=True)
    else:
        print(f"starting {run_dir} over from epoch 0 ({how}no checkpoint yet; lost {lost_s:.1f} "
              "s of work, counted in the clock)", flush=True)
