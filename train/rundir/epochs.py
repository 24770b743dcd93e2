"""epochs.csv: one row per finished epoch (formats.results.EpochRow), appended and flushed to
disk as each epoch ends, so a killed run keeps every row it finished."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from formats.files import atomic_write
from formats.results import EPOCH_COLUMNS, EPOCHS_FILE, EpochRow


def append_epoch(run_dir: Path, row: EpochRow) -> None:
    """Append one epoch's row (header first if the file is new), flushed to disk. A write that
    fails (a full disk) leaves the file as it was, with no half row."""
    path = Path(run_dir) / EPOCHS_FILE
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS, lineterminator="\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            writer.writeheader()
        writer.writerow(row.cells())
        data = buffer.getvalue().encode("utf-8")
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def read_epochs(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / EPOCHS_FILE
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def keep_epochs_through(run_dir: Path, last_epoch: int) -> int:
    """Drop rows of epochs after ``last_epoch`` (finished after the checkpoint a resumed run
    starts from, so they will be run again) and any partial last line. Returns rows kept."""
    path = Path(run_dir) / EPOCHS_FILE
    if not path.exists():
        return 0
    keep = []
    for row in read_epochs(run_dir):
        try:
            complete = None not in row.values() and int(row["epoch"]) <= last_epoch
        except (TypeError, ValueError):
            complete = False
        if complete:
            keep.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: r[c] for c in EPOCH_COLUMNS} for r in keep)
    atomic_write(path, buffer.getvalue())
    return len(keep)
