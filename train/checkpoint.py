"""Checkpoints and the random-number generator states, so a killed run loses nothing.

Checkpoints hold only tensors and plain Python values, are written to a temporary file and
renamed, and are read back with ``torch.load(weights_only=True)``. The run clock and the
heartbeat are in train/clock.py.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from results_format import CHECKPOINT_FILE
from train import TrainError

FORMAT = 1


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
