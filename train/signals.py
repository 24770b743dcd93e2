"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM (Slurm, ``kill``, torchrun passing one on).

Until training starts, a signal ends the process at once (``Interrupted``: nothing to keep; one
that arrives while a module is being imported ends it right there, without unwinding through the
half-done import).
Once it trains, a signal only sets a flag: the processes of a run must stop at the same
collective or the others wait for ever, so the flag is exchanged at the loss check every 10
steps (train/loop.py) and after each epoch's checkpoint (``check``), and every process stops
there together. A checkpoint being written is always finished first, so the last complete
checkpoint is kept and no temporary file is left behind.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from train.launch import is_first_process

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A signal asked the run to stop; ``run_dir`` is its results folder (None: none yet)."""

    def __init__(self, signum: int, run_dir: Path | None = None) -> None:
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")
        self.signum = signum
        self.run_dir = run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by the signal


_received = 0  # the first signal received (0: none)
_deferred = False  # training: record the signal, stop at the next agreed point


def _in_import(frame) -> bool:
    """True if ``frame`` is inside a module being imported (importlib's frames on the stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _handler(signum: int, frame) -> None:
    global _received
    if not _received:
        _received = signum
    if _deferred:
        return
    if _in_import(frame):
        # Unwinding through a half-done import (torch's, say) would leave it half registered,
        # and the next import of it fails with a traceback; before training nothing is kept,
        # so end the process here, with the same line and exit code as any stop before training.
        if is_first_process():
            print(f"{Interrupted(signum)}; before training started; nothing to resume",
                  file=sys.stderr, flush=True)
        os._exit(128 + signum)
    raise Interrupted(signum)


@contextmanager
def handled() -> Iterator[None]:
    """Handle SIGINT and SIGTERM within the block (in the main thread), then restore."""
    global _received, _deferred
    _received, _deferred = 0, False
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        _deferred = False


def defer() -> None:
    """From now on a signal stops the run at the next agreed point (training has started).
    A signal received before is honoured at that point too."""
    global _deferred
    _deferred = True


def pending() -> int:
    """The signal this process received (0: none)."""
    return _received


def check(d) -> None:
    """Every process calls this at the same point: stop all of them if any got a signal."""
    import torch

    from train.distributed import all_reduce_max

    flag = torch.tensor([pending()], dtype=torch.int64, device=d.device)
    signum = int(all_reduce_max(d, flag, "the stop check after the checkpoint"))
    if signum:
        raise Interrupted(signum)


def ignore_in_loader_worker() -> None:
    """A DataLoader worker ignores SIGINT and SIGTERM: Ctrl-C in a terminal and torchrun's
    SIGTERM (sent to each worker's process group) reach it too, and a worker dying of it
    would fail the training process at once instead of at its agreed stop. It still ends
    with the training process (its DataLoader shuts it down, or it sees its parent gone)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
