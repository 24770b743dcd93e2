"""The run folder ``<results>/<config name>/<run id>/`` and its one owner, ``RunFolder``.

What the folder holds is the results contract (formats/results.py); how it is written:

- folder.py    RunFolder: open (find, lock, read back), restore, commit, end an epoch, finish
- reopen.py    rank 0's checks when a run is continued (which folder, may it, is it the store)
- attempts.py  the folder's lock, torchrun restart markers, the attempts list, new run ids
- record.py    run.json (RunRecord) and the run's compliance
- epochs.py    epochs.csv, appended and flushed per epoch; trimmed back to the checkpoint
- checkpoint.py  checkpoint.pt: weights, optimiser, generators and the resume point
- clock.py     the run clock, the heartbeat and the clock rule for resumes and restarts
- energy.py    the run's energy, read with the clock and carried across resumes like it
- system.py    system.json: the machine and code of an attempt
"""

from train.rundir.folder import RunDiverged, RunFolder

__all__ = ["RunDiverged", "RunFolder"]
