"""Trainer: DDP training of the benchmark's video models with time-to-accuracy results.

Run ``python -m train --config configs/X3D_M.yaml`` (one process) or through
``torchrun --standalone --nproc-per-node=N -m train ...`` (N processes, one per GPU).
"""


class TrainError(Exception):
    """A run cannot start or continue because of its inputs (paths, config, run folder)."""
