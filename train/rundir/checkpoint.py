"""Checkpoints and the random-number generator states, so a killed run loses nothing.

Checkpoints hold only tensors and plain Python values, are written to a temporary file and
renamed, and are read back with ``torch.load(weights_only=True)``. Besides the weights,
optimiser, loss scaler and generator states, a checkpoint holds the run's resume point
(``ResumePoint``: where the run is and what its clock says), flat at the top level. The run
clock and the heartbeat are in train/rundir/clock.py.

A checkpoint says which run it belongs to (``run_id``) and of which workload (``config_digest``,
``opts.workload_digest`` of the run's config), and a resume refuses one that belongs elsewhere.

Formats: 1 (before the resume point had ``attempts`` and ``store_fingerprint``), 2 (before
``config_digest``) and 3 (before ``energy``) are still read, the missing fields taken as
unknown; 4 is written.
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from formats.files import atomic_write
from formats.results import CHECKPOINT_FILE
from opts import workload_digest
from train import TrainError

FORMAT = 4
READABLE_FORMATS = (1, 2, 3, 4)


@dataclass
class ResumePoint:
    """Where a run stands after its last complete epoch: what a resume continues from."""

    epoch: int  # the last complete epoch (0-based)
    elapsed_s: float  # run clock when the checkpoint was taken
    lost_s: float  # work thrown away by kills and crashes so far, counted in the clock
    untimed_s: float  # extra evaluations so far, off the clock
    reached: bool
    t_target_s: float | None
    world_size: int
    run_id: str
    attempts: list[dict] = field(default_factory=list)  # run.json ``attempts`` at the time
    store_fingerprint: str | None = None  # of the store the run read (None: not recorded)
    config_digest: str | None = None  # opts.workload_digest of the run's config (None: unknown)
    # The run's energy (train/rundir/energy.py: joules so far, lost, at the target); empty:
    # not recorded, i.e. not measured.
    energy: dict = field(default_factory=dict)

    @classmethod
    def of_run(cls, record, epoch: int, elapsed_s: float) -> ResumePoint:
        """The resume point after ``epoch`` of the run ``record`` (a RunRecord)."""
        return cls(epoch, elapsed_s, record.lost_s, record.untimed_s, record.reached,
                   record.t_target_s, record.gpus, record.run_id, list(record.attempts),
                   (record.store or {}).get("fingerprint"), workload_digest(record.config),
                   dict(record.energy))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> ResumePoint:
        """The resume point of a checkpoint (older formats lack the last fields)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        values.setdefault("untimed_s", 0.0)
        return cls(**values)


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

def save(run_dir: Path, point: ResumePoint, state: dict) -> None:
    """Write the resume point and ``state`` (model, optimizer, scheduler, scaler, rng) to
    checkpoint.pt via a temporary file and a rename."""
    # Serialised in memory first: torch's own file writer turns a full disk into an
    # "unexpected pos" RuntimeError; a plain write says ENOSPC.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **point.to_dict(), **state}, buffer)
    atomic_write(Path(run_dir) / CHECKPOINT_FILE, buffer.getbuffer())


def load(run_dir: Path) -> tuple[ResumePoint, dict]:
    """(resume point, the whole checkpoint) of a run folder; one-line TrainError if there is
    none or it cannot be used."""
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
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        found = state.get("format") if isinstance(state, dict) else None
        raise TrainError(f"{path}: checkpoint format {found}, this version reads "
                         f"{', '.join(map(str, READABLE_FORMATS))}; start a new run")
    try:
        return ResumePoint.from_dict(state), state
    except TypeError:  # a field missing: not a checkpoint this trainer wrote
        raise TrainError(f"{path}: checkpoint without a resume point; start a new run") from None
