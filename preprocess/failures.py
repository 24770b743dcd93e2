"""What a ``make frames`` run tells: failures.csv, the summary and the CSV cross-check."""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

from formats.files import atomic_write
from preprocess.kinetics import LayoutError, missing_on_disk

FAILURES_FILE = "failures.csv"


@dataclass
class Summary:
    total: int = 0  # source files found
    done: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0  # kept frames written by this run
    bytes: int = 0  # JPEG bytes written by this run
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # split, path, reason

    def progress(self) -> str:
        return f"{self.done + self.skipped} of {self.total} videos done"


def write_failures(store: Path, failures: list[tuple[str, str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # quotes commas, quotes and newlines
    writer.writerow(["split", "video", "reason"])
    for split, path, reason in sorted(failures):
        writer.writerow([split, path, reason.replace("\n", " ")])
    atomic_write(Path(store) / FAILURES_FILE, buffer.getvalue())


def print_failures(s: Summary, store: Path) -> None:
    """The first failures of a build, and where the others are."""
    for split, path, reason in s.failures[:20]:
        print(f"  failed: {split}: {path}: {reason}")
    if s.failures:
        print(f"  all failures are listed in {store / FAILURES_FILE}")
    sys.stdout.flush()


def print_summary(s: Summary, store: Path, data: Path, videos: dict) -> None:
    rate = s.done / s.seconds if s.seconds else 0.0
    print(f"{store}: {s.done} videos done, {s.skipped} skipped (already complete), "
          f"{s.failed} failed; {s.frames} frames, {s.bytes / 1e6:.1f} MB in {s.seconds:.1f} s "
          f"({rate:.1f} videos/s, {s.frames / max(s.seconds, 1e-9):.0f} frames/s)")
    print_failures(s, store)
    for split, split_videos in videos.items():
        try:
            missing = missing_on_disk(data, split, split_videos)
        except LayoutError as e:
            # The folders are the truth: a CSV that cannot be read changes nothing in the store.
            print(f"warning: {e}; the folders are used", file=sys.stderr)
            continue
        if missing:
            print(f"  note: {split}.csv lists {len(missing)} videos that are not on disk "
                  f"(e.g. {missing[0]}); the folders are used")
    sys.stdout.flush()
