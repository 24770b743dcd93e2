"""Trainer: DDP training of the benchmark's video models with time-to-accuracy results.

Run ``python -m train --config configs/X3D_M.yaml`` (one process) or through
``torchrun --standalone --nproc-per-node=N -m train ...`` (N processes, one per GPU).

run.py reads top to bottom (config, processes, run folder, data, model, restore, loop, finish);
rundir/ owns the run folder (RunFolder); loop.py trains one epoch, evaluate.py scores the val
clips, schedule.py holds the LR and evaluation schedules, model.py the model as trained,
data.py the loaders, distributed.py processes and collectives, launch.py torchrun's environment,
device.py the device decision, signals.py stopping on a signal, errors.py a process's error line.
docs/ARCHITECTURE.md draws the whole.
"""


class TrainError(Exception):
    """A run cannot start or continue because of its inputs (paths, config, run folder)."""
