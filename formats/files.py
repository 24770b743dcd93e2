"""Writing an output so that it is either complete under its real name or not there at all.

Every file the project writes whole (settings, indexes, run.json, checkpoints, plots, score
tables) goes through ``atomic_path``: the writer writes a temporary file beside the target,
which is flushed to disk and renamed over the target only when the writer succeeded. A writer
that fails (a full disk, a killed process, an exception) leaves the previous file untouched and
no temporary file behind (a killed process can leave one; its name ends in ``.tmp<pid>``, so
the next holder of the folder can remove it).

Files that grow (epochs.csv, failures.csv) are appended and flushed instead: see their writers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp"  # temporary names are <name>.tmp<pid>


def temporary_name(path: Path) -> Path:
    """The temporary file this process writes ``path`` under."""
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


@contextmanager
def atomic_path(path: Path | str, sync: bool = True, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write (``tmp``, else ``temporary_name(path)``); on success it
    replaces ``path`` (fsync'd first unless ``sync`` is False); on any error it is removed and
    the error propagates."""
    path = Path(path)
    tmp = temporary_name(path) if tmp is None else Path(tmp)
    try:
        yield tmp
        if sync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        sync_folder(path.parent)  # the rename itself, on disk too


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: str | bytes | memoryview, sync: bool = True) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through ``atomic_path``; a full disk is an
    OSError (ENOSPC) and leaves ``path`` as it was."""
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
    with atomic_path(path, sync) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while view:  # a write can be short when the disk fills: the next one says why
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
