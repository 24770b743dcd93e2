"""The results-format contract: what a run folder holds, shared by the trainer and the scorer.

The trainer (train/rundir/) writes these files and the scorer (score/) reads them; this
module is the one place that names them, so the scorer never imports anything from train/.

A run folder ``<results>/<config name>/<run id>/`` holds:

    config.yaml    the resolved config (every key)
    system.json    the machine and code of the run's first attempt (see ``attempts`` below)
    system.<k>.json  the same for attempt k (0-based) after the first (resumes, restarts)
    epochs.csv     one row per finished epoch (EPOCH_COLUMNS), appended and flushed
    run.json       the summary (RUN_KEYS), rewritten atomically after every epoch
    heartbeat      the run clock, rewritten about once a second while the run trains
                   (then, on one node, the run's GPU and CPU joules; "-": not measured)
    checkpoint.pt  the trainer's own resume point
    .lock          held (flock) by the process training in the folder; names it
    system_description.json  the user's description of the system (if one was given)

Under torchrun, ``<results>/.torchrun/<launch id>.json`` names the run folder a launch
created, for its restarts to continue (train/rundir/attempts.py); it is not a run.

Protocol versions (run.json ``protocol``; a file without it is version 1):
  1  evaluation after every epoch, clip-weighted top-1, BatchNorm span = per-process batch,
     heads initialised as their model families do.
  2  the reference's protocol (docs/WORKLOAD.md, "Evaluation and the score"): scheduled
     evaluations only after epochs 10 and 20 can reach the target; ``val_top1`` is the
     original's unweighted mean of per-batch top-1 over global batches of 16 in dataset order;
     X3D-M's BatchNorm over 4 clips; fresh default-initialised heads.
Only runs of the current protocol can be compliant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

PROTOCOL_VERSION = 2
# run.json ``format``: the layout of the files below. 3 added the energy columns and keys
# (a folder of format 2 is read with its energy "not measured").
RESULTS_FORMAT = 3

CONFIG_FILE = "config.yaml"
SYSTEM_FILE = "system.json"
EPOCHS_FILE = "epochs.csv"
RUN_FILE = "run.json"
HEARTBEAT_FILE = "heartbeat"
CHECKPOINT_FILE = "checkpoint.pt"
SYSTEM_DESCRIPTION_FILE = "system_description.json"  # the user's description, if given
RUN_FILES = (RUN_FILE, EPOCHS_FILE, CONFIG_FILE, SYSTEM_FILE)

# system_description.json: what a user says of the system beyond what system.json reads
# (README, "Comparing machines"); every key optional, text values but ``power_cap_w``.
SYSTEM_DESCRIPTION_KEYS = ("interconnect", "storage", "network", "power_cap_w", "cooling",
                           "notes")

# epochs.csv. ``eval`` says which evaluation the row carries:
#   "scheduled"  an evaluation of the workload's schedule (the only ones that can reach the
#                target); its time is on the run clock (in ``elapsed_s``)
#   "extra"      an extra evaluation for accuracy curves (--eval-every): never reaches the
#                target; its time ``eval_s`` is left out of the run clock
#   ""           no evaluation after this epoch (the val_* columns are empty)
# ``val_top1`` is the metric compared with the target (the original's per-batch mean);
# ``val_top1_clips`` the clip-weighted top-1; ``val_video_top1`` the per-video accuracy.
# ``untimed_s`` is the run's total untimed time so far (extra evaluations), a running sum.
# ``energy_j``: the joules of all the run's GPUs (all nodes) over the epoch's timed span, as
# NVML reports them (train/energy.py; run.json ``energy_method`` says how); after a resume,
# the first epoch's includes the energy of the work lost to the stop. ``cpu_energy_j``: the
# CPU packages' (RAPL), apart. Empty: not measured (no NVML, no readable RAPL, a GPU failed).


def _column(decimals: int | None = None, **default: Any) -> Any:
    """An epochs.csv column written with ``decimals`` places (None: as it is)."""
    return field(metadata={"decimals": decimals}, **default)


@dataclass(frozen=True)
class EpochRow:
    """One row of epochs.csv: its fields are the columns, in file order (the one place they
    are named; the trainer writes these, the scorer reads them). Times are kept to the
    millisecond and the LR exactly (``repr``); an evaluation's columns are None (written
    empty) after an epoch without one."""

    epoch: int = _column()
    elapsed_s: float = _column(3)
    train_s: float = _column(3)
    eval: str = _column()
    eval_s: float | None = _column(3)
    untimed_s: float = _column(3)
    lr: float = _column()
    train_loss: float = _column(6)
    train_top1: float = _column(4)
    val_top1: float | None = _column(4)
    val_top1_clips: float | None = _column(4)
    val_top5: float | None = _column(4)
    val_video_top1: float | None = _column(4)
    clips_per_s: float = _column(3)
    data_wait_frac: float = _column(4)
    peak_mem_mb: float = _column(1)
    energy_j: float | None = _column(3, default=None)
    cpu_energy_j: float | None = _column(3, default=None)

    def cells(self) -> dict[str, str]:
        """The row as epochs.csv writes it: {column: text}."""
        out = {}
        for f in fields(self):
            value, decimals = getattr(self, f.name), f.metadata["decimals"]
            if value is None:
                out[f.name] = ""
            elif decimals is not None:
                out[f.name] = f"{value:.{decimals}f}"
            elif f.name == "lr":
                out[f.name] = repr(float(value))
            else:
                out[f.name] = str(value)
        return out


EPOCH_COLUMNS = tuple(f.name for f in fields(EpochRow))
def scheduled_epochs(epochs: int, eval_period: int) -> list[int]:
    """The 0-based epochs after which the protocol evaluates on schedule: every
    ``eval_period``-th epoch (1-based) and the last (WORKLOAD.md: epochs 10 and 20). Only these
    evaluations can reach the target; the trainer schedules them and the scorer checks them."""
    return [e for e in range(epochs) if (e + 1) % eval_period == 0 or e == epochs - 1]


EVAL_SCHEDULED = "scheduled"
EVAL_EXTRA = "extra"
EVAL_NONE = ""

# run.json ``state``: what the trainer last knew of the run.
STATE_RUNNING = "running"  # training (or killed before it could say otherwise)
STATE_FINISHED = "finished"  # ended normally: all epochs, or stopped at the target
# Diverged: ended on a NaN/infinite loss (train.run.RunDiverged); not resumable (the same
# loss would come again). Its value "stopped" is older than the name and stays, for old folders.
STATE_DIVERGED = "stopped"
# Interrupted: stopped by a signal (Ctrl-C, SIGTERM; train.signals.Interrupted); resumable.
STATE_INTERRUPTED = "interrupted"
STATES = (STATE_RUNNING, STATE_FINISHED, STATE_DIVERGED, STATE_INTERRUPTED)

# The scorer's classification of a run (score tables, score.csv ``status``).
STATUS_REACHED = "reached"  # a scheduled evaluation at or above the target
STATUS_NOT_CONVERGED = "not converged"  # finished below the target
STATUS_DIVERGED = "stopped"  # NaN/inf loss (run.json state STATE_DIVERGED)
# Not finished and not running: interrupted by a signal and not resumed, or heartbeat older
# than ABANDONED_AFTER_S (killed, crashed, machine gone).
STATUS_ABANDONED = "abandoned"
STATUS_IN_PROGRESS = "in progress"  # not finished, heartbeat recent
MISSED_STATUSES = (STATUS_NOT_CONVERGED, STATUS_DIVERGED, STATUS_ABANDONED)

# A run whose heartbeat (file modification time) is older than this and that is not
# finished is abandoned: the trainer rewrites it about once a second while it trains, and no
# single step, evaluation or checkpoint of the workload takes anywhere near this long.
ABANDONED_AFTER_S = 6 * 3600

# run.json keys (written by train/results.RunRecord.to_json):
#   format, protocol, config, model, run_id, target_top1, state, reached, t_target_s,
#   epochs_done, finished, gpus, nodes, workers, device, machine, system (the system's name:
#   SYSTEM=, else rank 0's host), campaign ({"run": k, "runs": N} or null), compliant, changed_keys,
#   compliance_issues (list of one-line reasons; empty when compliant), git_dirty, resumed,
#   restarts, lost_s, untimed_s, energy_method ("counter", "sampled", both joined by "+"
#   across attempts, or null: not measured), energy_j (the GPUs' energy over the timed spans
#   so far), energy_lost_j (its part lost to stops), energy_to_target_j (at the first
#   scheduled evaluation at the target), cpu_energy_method ("rapl" or null), cpu_energy_j,
#   cpu_energy_lost_j, cpu_energy_to_target_j, seed, eval_epochs (0-based epochs with a scheduled
#   evaluation), store (see STORE_KEYS), attempts (one entry per process launch: started,
#   host, machine, git_commit, git_dirty, restart (torchrun's restart count), system (its
#   system file), store (the path of the store it read)), spans_machines, spans_commits
STORE_KEYS = (
    "path", "format", "short_side", "jpeg_quality", "fingerprint", "videos", "clips",
    "failed_videos", "dataset_matches_kinetics20", "dataset_check",
)
