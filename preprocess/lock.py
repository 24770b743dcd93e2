"""The locks of a frame store: who may write it, and who is reading it.

Two lock files (flock) in the store folder:

``.lock`` (``LOCK_FILE``)
    A ``make frames`` run waits for an exclusive hold, then keeps a shared one, and each of
    its worker processes takes it shared while it writes a video. Workers of a killed run
    outlive a main process killed with SIGKILL and finish the video in hand; a new run
    starts only once they are done (and a second run on the same store waits for the first).
``.writer.lock`` (``WRITER_LOCK_FILE``)
    Held exclusively by a ``make frames`` run for its whole duration, and shared by every
    training run reading the store (``store_read_lock``). A shared hold on ``.lock`` cannot
    tell a reader from this run's workers, hence the second file: a training run refuses a
    store being written, and a build waits while a training run reads the store.

This module imports nothing of the builder, so readers (``train/``) can use it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from formats.store import StoreError

LOCK_FILE = ".lock"
WRITER_LOCK_FILE = ".writer.lock"
LOCK_FILES = (LOCK_FILE, WRITER_LOCK_FILE)


def flock(fd: int, operation: int) -> None:
    """flock, or nothing on a file system without locks (then a rerun must wait by hand).

    Raises BlockingIOError for a non-blocking request that would wait."""
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise


def _open(path: Path, create: bool) -> int | None:
    """A descriptor of the lock file, or None if it cannot be had (read-only store)."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:  # read-only file system or folder: then nobody can be writing it either
        return None


def _wait(fd: int, what: str, quiet: bool) -> None:
    """Exclusive hold of ``fd``, saying once what it waits for if it must wait."""
    try:
        flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not quiet:
            print(what, file=sys.stderr, flush=True)
        flock(fd, fcntl.LOCK_EX)


@contextmanager
def store_write_lock(store: Path, quiet: bool = False) -> Iterator[Callable[[], None]]:
    """Hold the store for one ``make frames`` run (its workers take ``worker_lock``).

    Yields a function that waits until no worker is writing a video and keeps them out from
    then on (before cleaning up after a run stopped half-way)."""
    store = Path(store)
    fd = os.open(store / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    writer = None
    try:
        _wait(fd, f"{store}: waiting for another run (or the workers of a killed one) "
                  "writing to this store ...", quiet)
        writer = os.open(store / WRITER_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        _wait(writer, f"{store}: in use by a training run; waiting for it to finish "
                      "(stop it to build now) ...", quiet)
        flock(fd, fcntl.LOCK_SH)  # this run's workers get in, another run still waits
        yield lambda: flock(fd, fcntl.LOCK_EX)
    finally:
        if writer is not None:
            os.close(writer)
        os.close(fd)


@contextmanager
def worker_lock(store: Path) -> Iterator[None]:
    """A worker's shared hold on ``.lock`` while it writes one video."""
    fd = os.open(Path(store) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextmanager
def store_read_lock(store: Path) -> Iterator[None]:
    """Hold for as long as a training run reads the store ``store``.

    Raises StoreError at once if a ``make frames`` run is writing the store; while held, a
    ``make frames`` run into the store waits (saying so). Many readers may hold it at once."""
    store = Path(store)
    fd = _open(store / WRITER_LOCK_FILE, create=store.is_dir())
    try:
        if fd is not None:
            try:
                flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{store}: a make frames run is writing this store; wait for "
                                 "it to finish, then start again") from None
        yield
    finally:
        if fd is not None:
            os.close(fd)
