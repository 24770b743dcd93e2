"""``python -m train.torchrun ...``: torchrun as the Makefile launches it, minus its traceback
when a signal (Ctrl-C, SIGTERM from Slurm or ``kill``) stops the launch.

torchrun passes the signal on to the workers, which stop together at an agreed point and say
in one line how to resume (train/signals.py); torchrun itself then raises SignalException and
prints a traceback of its own internals, which says nothing more. Here it ends with the exit
status of a process stopped by that signal instead. Everything else is torchrun unchanged.
"""

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main

if __name__ == "__main__":
    try:
        main()
    except SignalException as e:
        sys.exit(128 + int(e.sigval))
