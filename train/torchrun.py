"""``python -m train.torchrun ...``: torchrun as the Makefile launches it, minus the tracebacks
of its own internals.

- A signal (Ctrl-C, SIGTERM from Slurm or ``kill``): torchrun passes it on to the workers,
  which stop together at an agreed point and say in one line how to resume
  (train/signals.py); torchrun then raises SignalException. Here it ends with the exit status
  of a process stopped by that signal instead.
- A worker that failed: each worker has already printed its one-line error; torchrun raises
  ChildFailedError, whose text is its failure summary (root cause, rank, exit code, the
  worker's error line). Here that summary is printed, without the traceback above it.
Everything else is torchrun unchanged.
"""

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main

if __name__ == "__main__":
    try:
        main()
    except SignalException as e:
        sys.exit(128 + int(e.sigval))
    except ChildFailedError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
