"""How a process of a run reports the error that ends it, so that the user reads it once.

Every process prints its own user-facing error as one line, prefixed with its rank and node in
a run of several processes (``error: [rank 1 on host-x] <message>``). Under torchrun it also
writes the line to torchrun's error file (``TORCHELASTIC_ERROR_FILE``), so torchrun's failure
summary shows it instead of ``error_file: <N/A>``, and leaves it in the process group's store,
so that the processes left waiting for it say "process 1 stopped: see its error above" rather
than advising a resume that would stop on the same error.

torchrun restarts a failed worker group (``--max-restarts``) whatever the cause; a user error
(a bad store, a config mistake) would only happen again, so a restart that follows one ends
at once (``repeated_user_error``) instead of redoing the whole start-up each time.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from train.launch import launcher

_STORE_KEY = "train/error/{rank}"


def error_line(message: str, rank_name: str | None) -> str:
    """``error: <message>``, with ``[<rank name>] `` in a run of several processes."""
    return f"error: [{rank_name}] {message}" if rank_name else f"error: {message}"


def write_error_file(line: str, consequence: bool = False) -> None:
    """Give torchrun the line for its failure summary (nothing without torchrun).

    torchrun names the earliest failure (by the file's time stamp, in whole seconds) as the
    root cause. A ``consequence`` (a process that lost a peer or stopped waiting for one) is
    dated a second later, so the process that failed first stays the root cause."""
    path = launcher().error_file
    if not path:
        return
    stamp = int(time.time()) + (1 if consequence else 0)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"message": line, "timestamp": stamp}),
                              encoding="utf-8")
    except OSError:
        pass  # the line is printed anyway


_STORE = None  # the process group's key-value store, kept past the group's destruction


def keep_store() -> None:
    """Hold on to the process group's store (called once the group exists): torchrun's agent
    serves it, so it outlives the workers, and an error can be left there and read after
    this process's group is torn down."""
    global _STORE
    import torch.distributed as dist

    try:
        _STORE = dist.distributed_c10d._get_default_store()
    except (RuntimeError, AttributeError, ValueError):
        _STORE = None


def _store():
    return _STORE


def is_user_error(error: BaseException) -> bool:
    """A mistake in the run's inputs (config, store, run folder): one line, no restart."""
    from datasets import StoreError
    from opts import ConfigError
    from train import TrainError

    return isinstance(error, (ConfigError, TrainError, StoreError))


def tell_peers(rank: int, error: BaseException) -> None:
    """Leave this process's user error where the others look when they lose it."""
    store = _store()
    if store is None or not is_user_error(error):
        return
    try:
        store.set(_STORE_KEY.format(rank=rank), str(error) or type(error).__name__)
    except Exception:  # noqa: BLE001 - the store may be gone too; the line is printed anyway
        pass


def peer_errors(rank: int, world_size: int) -> dict[int, str]:
    """The errors other processes left in the store: {rank: message}."""
    store = _store()
    found = {}
    if store is None:
        return found
    for other in range(world_size):
        key = _STORE_KEY.format(rank=other)
        try:
            if other != rank and store.check([key]):
                found[other] = store.get(key).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - a store that is gone knows nothing
            break
    return found


# ---- restarts after a user error ----------------------------------------------------------

def _marker(attempt: int) -> Path | None:
    """The file a worker group's user error leaves for torchrun's next attempt on this node:
    keyed by the torchrun agent (this process's parent), its run id and the attempt."""
    run_id = launcher().run_id
    if run_id is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return Path(tempfile.gettempdir()) / f"train-user-error-{os.getppid()}-{safe}-{attempt}"


def note_user_error(line: str) -> None:
    """Remember, for torchrun's next attempt, that this attempt stopped on a user error."""
    path = _marker(launcher().restart)
    if path is not None:
        try:
            path.write_text(line.removeprefix("error: ") + "\n", encoding="utf-8")
        except OSError:
            pass


def repeated_user_error() -> str | None:
    """The user error of torchrun's previous attempt on this node, if this is a restart after
    one (the restart then ends at once, as the same error again)."""
    attempt = launcher().restart
    path = _marker(attempt - 1) if attempt > 0 else None
    if path is None or not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or "a user error"
    except OSError:
        return "a user error"
