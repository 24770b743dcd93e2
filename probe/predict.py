"""The probe's arithmetic: from measured rates to a verdict and a predicted run time.

Pure functions over dataclasses, so every number the probe prints can be recomputed by hand.
Rates are clips per second. The model of a run:

- demand: what the training processes eat. On GPUs, one process's rate times the process
  count. On the CPU the processes share the cores: only as many as the cores hold
  (``cores // threads``) run at full speed at once.
- supply: what the loaders deliver, ``per_worker x min(GPUS x WORKERS, cores)`` where
  ``per_worker`` is the measured rate over the loader processes measured with.
- time per clip, with workers: the slower side (the loader works ahead of training), and on
  the CPU also the cores' share: training and loading use the same cores, so a clip takes at
  least (training core-seconds + loading core-seconds) / cores. Without workers (WORKERS=0)
  the training process loads its own batches, so the two add up.
- a run: start-up + epochs x (training + checkpoint) + the scheduled evaluations, assuming
  the target is reached at the last scheduled evaluation (the reference run did).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from formats.results import scheduled_epochs

# Kinetics-20 (WORKLOAD.md): 1276 train / 100 val videos of 10 s at 15 fps, 9 clips each.
KINETICS20_CLIPS = (1276 * 9, 100 * 9)
# Sharing the CPU's cores with the loader is called the bound once it costs training this
# much (5 % slower than compute alone); below, the run is compute-bound.
CORES_BOUND = 1.05


@dataclass(frozen=True)
class Rates:
    """What the probe measured on this machine for one model."""

    train_per_process: float  # training clips/s of one process (synthetic input on device)
    eval_per_process: float  # evaluation clips/s of one process
    loader: float | None  # clips/s the loader delivered (None: no store to measure)
    loader_procs: int  # loader processes it was measured with (0: in the main process)


@dataclass(frozen=True)
class Plan:
    """The run being predicted."""

    device: str  # "cuda" | "cpu"
    gpus: int  # processes
    workers: int  # loader workers per process
    cores: int
    threads: int  # compute threads per training process (matters on the CPU only)
    train_clips: int
    val_clips: int
    epochs: int
    eval_epochs: tuple[int, ...]  # 0-based epochs followed by a scheduled evaluation
    startup_s: float = 0.0  # a run's start: launch and imports, dataset index, model build
    checkpoint_s: float = 0.0  # one checkpoint write
    t_ref_s: float | None = None  # the reference's time for this config (None: no score)
    gpus_ref: int = 4


@dataclass(frozen=True)
class Prediction:
    demand: float  # training clips/s of the whole run, compute alone
    eval_demand: float
    supply: float | None  # clips/s the run's loaders deliver (None: not measured)
    bound: str  # "data" | "compute" | "cores" | "unknown"
    margin: float  # how many times the bounding side is slower than the other (>= 1)
    min_workers: int | None  # smallest WORKERS that keeps training fed (None: none does)
    cores_needed: int | None  # cores it would take when no WORKERS does
    clip_s: float  # seconds per training clip in the run
    epoch_train_s: float
    eval_s: float  # one scheduled evaluation
    total_s: float
    score: float | None


def eval_epochs(epochs: int, period: int) -> tuple[int, ...]:
    """0-based epochs after which a scheduled evaluation runs (the protocol's schedule,
    formats.results.scheduled_epochs)."""
    return tuple(scheduled_epochs(epochs, period))


def compute_demand(per_process: float, plan: Plan) -> float:
    if plan.device == "cuda":
        return per_process * plan.gpus
    at_once = min(plan.gpus, max(1, plan.cores // max(plan.threads, 1)))
    return per_process * at_once


def loader_supply(rates: Rates, plan: Plan) -> float | None:
    """Clips/s the run's loaders deliver: the measured rate per loader process times the
    loader processes the run starts, at most one per core."""
    if rates.loader is None:
        return None
    per_proc = rates.loader / max(rates.loader_procs, 1)
    return per_proc * min(plan.gpus * max(plan.workers, 1), plan.cores)


def clip_seconds(demand: float, supply: float | None, rates: Rates, plan: Plan) -> float:
    """Seconds per clip of the whole run when training eats ``demand`` and loading supplies
    ``supply`` clips/s."""
    if supply is None:
        return 1.0 / demand
    if plan.workers == 0:
        return 1.0 / demand + 1.0 / supply
    t = max(1.0 / demand, 1.0 / supply)
    if plan.device == "cpu":
        train_cores = min(plan.gpus * plan.threads, plan.cores)
        load_core_s = max(rates.loader_procs, 1) / rates.loader
        t = max(t, (train_cores / demand + load_core_s) / plan.cores)
    return t


def _bound(demand: float, supply: float | None, clip_s: float, plan: Plan) -> tuple[str, float]:
    """Which side sets the pace, and how many times slower it is than the other."""
    if supply is None:
        return "unknown", 1.0
    if supply < demand:
        return "data", demand / supply
    if plan.workers > 0 and clip_s * demand > CORES_BOUND:
        return "cores", clip_s * demand  # the shared CPU cores, not either side alone
    return "compute", supply / demand


def workers_needed(rates: Rates, plan: Plan, demand: float) -> tuple[int | None, int | None]:
    """(smallest WORKERS whose loaders supply ``demand``, None if no WORKERS does on this
    machine's cores; then the cores it would take: loaders plus one per training process)."""
    if rates.loader is None:
        return None, None
    per_proc = rates.loader / max(rates.loader_procs, 1)
    loaders = math.ceil(demand / per_proc - 1e-9)
    workers = max(1, math.ceil(loaders / plan.gpus))
    if plan.gpus * workers <= plan.cores:
        return workers, None
    return None, loaders + plan.gpus


def predict(rates: Rates, plan: Plan) -> Prediction:
    demand = compute_demand(rates.train_per_process, plan)
    eval_demand = compute_demand(rates.eval_per_process, plan)
    supply = loader_supply(rates, plan)
    clip_s = clip_seconds(demand, supply, rates, plan)
    bound, margin = _bound(demand, supply, clip_s, plan)
    min_workers, cores_needed = workers_needed(rates, plan, demand)
    # Every process runs ceil(clips / processes) clips (the train sampler pads; the eval
    # sampler's largest share sets the pace).
    epoch_train_s = math.ceil(plan.train_clips / plan.gpus) * plan.gpus * clip_s
    eval_s = (math.ceil(plan.val_clips / plan.gpus) * plan.gpus
              * clip_seconds(eval_demand, supply, rates, plan))
    total_s = (plan.startup_s + plan.epochs * (epoch_train_s + plan.checkpoint_s)
               + len(plan.eval_epochs) * eval_s)
    score = None
    if plan.t_ref_s is not None and total_s > 0:
        score = plan.t_ref_s / total_s * plan.gpus_ref / plan.gpus
    return Prediction(demand, eval_demand, supply, bound, margin, min_workers, cores_needed,
                      clip_s, epoch_train_s, eval_s, total_s, score)
