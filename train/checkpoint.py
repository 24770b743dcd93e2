"""Checkpoints, the heartbeat and the run clock, so a killed run loses nothing.

The run clock starts when the run is launched (torchrun's start, or the process's start for a
plain ``python -m train``) and every epoch row records its reading at the end of evaluation.

Clock rule for a resumed run. While a run trains, rank 0 writes the clock's current reading to
``heartbeat`` about once a second: the last sign of life of the run. A checkpoint, written after
every epoch, holds the clock reading at the moment it was taken. When ``--resume`` continues
from that checkpoint, the clock restarts from

    elapsed at resume = max(checkpoint clock, last heartbeat clock) + time of the new process

so the work the killed run did after its checkpoint (which is thrown away and done again) is
counted, while the time between the kill and the restart is not. That extra amount is the
run's lost time: ``lost_s`` in run.json is the sum over all kills of
``heartbeat clock - checkpoint clock``. Since the heartbeat stores run-clock readings (not wall
times), a run killed again before its next checkpoint is still counted right. At most the
heartbeat interval (1 s) per kill goes uncounted.

Checkpoints hold only tensors and plain Python values, are written to a temporary file and
renamed, and are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from train import TrainError

CHECKPOINT_FILE = "checkpoint.pt"
HEARTBEAT_FILE = "heartbeat"
FORMAT = 1


class Clock:
    """Run clock: seconds since launch plus the time carried over from before a resume."""

    def __init__(self, launch_time: float, carried_s: float = 0.0) -> None:
        self.carried_s = carried_s
        # Anchor the wall-clock launch time to a monotonic counter (immune to clock steps).
        self._base = time.time() - launch_time
        self._anchor = time.perf_counter()

    def elapsed(self) -> float:
        return self.carried_s + self._base + (time.perf_counter() - self._anchor)


class Heartbeat:
    """Writes the run clock to ``<run_dir>/heartbeat`` at most once per ``every`` seconds."""

    def __init__(self, run_dir: Path | None, clock: Clock, every: float = 1.0) -> None:
        self.path = Path(run_dir) / HEARTBEAT_FILE if run_dir is not None else None
        self.clock = clock
        self.every = every
        self._last = -float("inf")

    def beat(self, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.every:
            return
        self._last = now
        tmp = self.path.with_name(f"{HEARTBEAT_FILE}.tmp")
        tmp.write_text(f"{self.clock.elapsed():.3f}\n", encoding="ascii")
        os.replace(tmp, self.path)


def read_heartbeat(run_dir: Path) -> float | None:
    """The last run-clock reading the run wrote, or None if there is none."""
    try:
        return float((Path(run_dir) / HEARTBEAT_FILE).read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None


def resume_clock(checkpoint: dict, heartbeat_s: float | None) -> tuple[float, float]:
    """(clock reading to continue from, total lost seconds) for a resume (see module doc)."""
    lost_now = max(0.0, (heartbeat_s or 0.0) - checkpoint["elapsed_s"])
    return checkpoint["elapsed_s"] + lost_now, checkpoint["lost_s"] + lost_now


# ---- random number generator states (plain values only, for weights_only loading) ---------

def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "python": [version, list(internal), gauss],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- saving and loading --------------------------------------------------------------------

def save(run_dir: Path, state: dict) -> None:
    """Write ``state`` to checkpoint.pt via a temporary file and a rename."""
    path = Path(run_dir) / CHECKPOINT_FILE
    tmp = path.with_name(f"{CHECKPOINT_FILE}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(run_dir: Path) -> dict:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainError(
            f"{path}: no checkpoint (the run stopped before its first epoch ended); "
            "start a new run instead of resuming"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file: say which and what to do, not a traceback
        raise TrainError(f"{path}: unreadable checkpoint ({type(e).__name__}); "
                         "start a new run") from None
    if state.get("format") != FORMAT:
        raise TrainError(f"{path}: checkpoint format {state.get('format')}, expected {FORMAT}")
    return state
