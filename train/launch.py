"""How this process was launched, read from the environment in this one place.

torchrun starts one process per GPU and describes it (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, GROUP_RANK: the node) and its launch (TORCHELASTIC_RUN_ID, the same for every
attempt of one launch; TORCHELASTIC_RESTART_COUNT; TORCHELASTIC_ERROR_FILE). A plain
``python -m train`` is a world of one. ``srun -n N python -m train`` without torchrun would be N
runs of one on the same GPU: refused with the launch to use instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from train import TrainError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise TrainError(f"environment variable {name}={value!r} is not an integer") from None


@dataclass(frozen=True)
class Launcher:
    """What torchrun tells every process of a launch beyond its rank (all None/0 without it)."""

    run_id: str | None  # TORCHELASTIC_RUN_ID: the same for every attempt of one launch
    restart: int  # TORCHELASTIC_RESTART_COUNT: 0 for the first attempt, n for the n-th restart
    error_file: str | None  # TORCHELASTIC_ERROR_FILE: where torchrun reads a worker's error

    @property
    def torchrun(self) -> bool:
        return self.run_id is not None


def launcher() -> Launcher:
    """This process's torchrun launch, read from the environment (the one place it is read)."""
    try:
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        restart = 0
    return Launcher(os.environ.get("TORCHELASTIC_RUN_ID"), restart,
                    os.environ.get("TORCHELASTIC_ERROR_FILE"))


def _check_not_a_bare_srun() -> None:
    """``srun -n 4 python -m train`` starts 4 copies that each think they are the whole run
    (on the same GPU): refuse them with the launch that makes them one run. srun sets
    SLURM_STEP_NUM_TASKS for every task of its step; a batch script's own single process has
    the job's SLURM_NTASKS but no step task count, so it is not refused."""
    tasks = _env_int("SLURM_STEP_NUM_TASKS", 1)
    if tasks > 1 and "RANK" not in os.environ:
        raise TrainError(
            f"started by srun as {tasks} separate copies (SLURM_STEP_NUM_TASKS={tasks}) without "
            "torchrun: each would be a run of its own on the same GPU; start one torchrun per "
            "node instead: srun --ntasks-per-node=1 torchrun --nnodes=$SLURM_NNODES "
            "--nproc-per-node=<GPUs per node> --rdzv-backend=c10d "
            "--rdzv-endpoint=<first node's host>:29500 -m train ...")


@dataclass(frozen=True)
class ProcessInLaunch:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int  # processes on this node
    node: int  # this node's rank among the nodes (torchrun's GROUP_RANK)


def is_first_process() -> bool:
    """Whether this process is rank 0 of its launch (or there is no launch), without raising:
    safe in a signal handler, where a damaged RANK counts as not 0."""
    return os.environ.get("RANK", "0").strip() == "0"


def process_in_launch() -> ProcessInLaunch:
    """This process as torchrun describes it (a world of one without torchrun)."""
    _check_not_a_bare_srun()
    world_size = _env_int("WORLD_SIZE", 1)
    return ProcessInLaunch(_env_int("RANK", 0), world_size, _env_int("LOCAL_RANK", 0),
                           _env_int("LOCAL_WORLD_SIZE", world_size), _env_int("GROUP_RANK", 0))
