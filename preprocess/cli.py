"""What every long command of the preprocessing stage does on a stop, an error or its end
(``python -m preprocess ...``, ``python -m datasets.decoded_store``)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool


def stop_workers() -> None:
    """Kill joblib's worker processes (idle by now, or stranded by a failed run).

    Asking loky to shut its executor down is not enough: a worker killed from outside (say
    by the out-of-memory killer) can die holding the lock of the queue it shares with the
    other workers, which then wait on that lock for ever, and loky's shutdown (and its exit
    handler) waits for them. Every finished video is already renamed into place, so nothing
    a worker still holds is needed."""
    for worker in multiprocessing.active_children():
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler, a container stop): handled like Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


# joblib's resource tracker (a process of its own, which outlives this one) warns about each
# lock the killed workers still had registered, then finds it already gone: two lines of
# noise after the one-line stop message. It still cleans up; only its warnings are off.
TRACKER_QUIET = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"


def guarded(work: Callable[[], int], user_errors: tuple[type[Exception], ...]) -> int:
    """Run a command of the preprocessing stage: a user error is one line (exit 2), a stop by
    SIGTERM or Ctrl-C says how to resume (everything finished so far is kept), a worker that
    died says so; joblib's workers are stopped by ``stop_workers`` at the process's end."""
    warning_filters = os.environ.get("PYTHONWARNINGS", "")
    if TRACKER_QUIET not in warning_filters:  # read by the tracker when joblib starts it
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (warning_filters, TRACKER_QUIET)))
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return work()
    except Terminated:
        print("stopped (SIGTERM); run the same command again to resume", file=sys.stderr)
        return 128 + signal.SIGTERM
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenProcessPool:  # e.g. a worker killed by the system for lack of memory
        print("error: a worker process died (killed, out of memory or crashed); the videos "
              "finished so far are kept: run the same command again to resume "
              "(with fewer --jobs if memory is short)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_main(main: Callable[[], int]) -> None:
    """Run a command's ``main`` as the process, its joblib workers stopped however it ends."""
    try:
        code = main()
    finally:
        stop_workers()
    sys.exit(code)
