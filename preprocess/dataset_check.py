"""Is a dataset folder the benchmark's Kinetics-20? (``python -m preprocess check``)

The reference is ``kinetics20_manifest.csv`` beside this file (``split,class,file``, sorted):
the 1376 files of the original benchmark's ``data/kinetics20`` folder (1276 train, 100 val).
A folder is the benchmark's Kinetics-20 only if its ``train/<class>/`` and ``val/<class>/``
folders hold exactly these files: none missing, none extra. Any other dataset (a synthetic
one, another subset) simply does not match; it still builds and trains, and its runs are
labelled non-compliant.

What counts as a file of the dataset is what the frame store reads (preprocess.kinetics):
every entry of a class folder named like a video, hidden names excepted. Other files (notes,
the CSVs beside the split folders) are not videos of the dataset. The check goes by names
only; a listed file that does not decode shows up as a failed video of the store.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from formats.files import atomic_write
from preprocess.kinetics import SPLITS, VIDEO_EXTENSIONS, LayoutError

MANIFEST = Path(__file__).resolve().with_name("kinetics20_manifest.csv")
MANIFEST_HEADER = ["split", "class", "file"]
CHECK_FILE = "dataset_check.csv"  # the differences, in a store folder
DIFF_HEADER = ["split", "class", "file", "difference"]

Entry = tuple[str, str, str]  # split, class folder, file name


@dataclass
class DatasetCheck:
    data: str
    expected: int  # files in the manifest
    found: int  # files in the folder
    missing: list[Entry] = field(default_factory=list)  # in the manifest, not in the folder
    extra: list[Entry] = field(default_factory=list)  # in the folder, not in the manifest
    manifest_sha256: str = ""

    @property
    def matches(self) -> bool:
        return not self.missing and not self.extra

    def record(self) -> dict:
        """The result as store.json keeps it."""
        return {"matches_kinetics20": self.matches, "missing": len(self.missing),
                "extra": len(self.extra), "expected": self.expected, "found": self.found,
                "manifest_sha256": self.manifest_sha256, "differences": CHECK_FILE}


def read_manifest(path: Path | None = None) -> tuple[list[Entry], str]:
    """The manifest's entries and the sha256 of its bytes. Raises LayoutError in one line."""
    path = Path(path or MANIFEST)
    try:
        raw = path.read_bytes()
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LayoutError(f"{path}: unreadable manifest ({e}); restore it from git") from None
    if not rows or rows[0] != MANIFEST_HEADER or any(len(r) != 3 for r in rows[1:]):
        raise LayoutError(f"{path}: not a manifest (expected the columns "
                          f"{','.join(MANIFEST_HEADER)}); restore it from git")
    return [tuple(r) for r in rows[1:]], hashlib.sha256(raw).hexdigest()


def scan_dataset(data: Path) -> list[Entry]:
    """Every video file of the folder's train/ and val/ class folders (names only)."""
    data = Path(data)
    if not data.is_dir():
        raise LayoutError(f"{data}: no such folder; get the dataset with `make data`")
    found: list[Entry] = []
    for split in SPLITS:
        if not (data / split).is_dir():
            continue  # every file of this split is then missing
        for cls in sorted(os.scandir(data / split), key=lambda e: e.name):
            if not cls.is_dir() or cls.name.startswith("."):
                continue
            for entry in os.scandir(cls.path):
                if entry.name.lower().endswith(VIDEO_EXTENSIONS) and \
                        not entry.name.startswith("."):
                    found.append((split, cls.name, entry.name))
    return sorted(found)


def check_dataset(data: Path, manifest: Path | None = None) -> DatasetCheck:
    """Compare the folder ``data`` with the manifest."""
    expected, digest = read_manifest(manifest)
    found = scan_dataset(data)
    want, have = set(expected), set(found)
    return DatasetCheck(str(data), len(expected), len(found),
                        missing=sorted(want - have), extra=sorted(have - want),
                        manifest_sha256=digest)


def write_differences(check: DatasetCheck, path: Path) -> None:
    """The differences as CSV (``split,class,file,difference``; header only if none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(DIFF_HEADER)
    rows = [(*e, "missing") for e in check.missing] + [(*e, "extra") for e in check.extra]
    for row in sorted(rows):
        writer.writerow([os.fsencode(v).decode("utf-8", "backslashreplace") for v in row])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), buffer.getvalue())


def verdict(record: dict) -> str:
    """One line from a check's record: what store.json, the trainer and the scorer say."""
    if record["matches_kinetics20"]:
        return f"matches the benchmark's Kinetics-20 ({record['expected']} videos)"
    return (f"differs from Kinetics-20: {record['missing']} missing, {record['extra']} extra "
            f"(of {record['expected']} expected, {record['found']} found)")


def summary_lines(check: DatasetCheck, csv_path: Path | None = None,
                  max_lines: int = 12) -> list[str]:
    """The terminal summary: the verdict, then per split and class what differs."""
    lines = [f"{check.data}: {verdict(check.record())}"]
    if check.matches:
        return lines
    if check.found and len(check.extra) == check.found:  # nothing in common: say so, briefly
        lines.append(f"  none of its {check.found} videos is a file of the benchmark's "
                     "Kinetics-20 (another dataset)")
        if csv_path is not None:
            lines.append(f"  every difference is listed in {csv_path}")
        return lines
    per: dict[tuple[str, str], Counter] = {}
    for kind, entries in (("missing", check.missing), ("extra", check.extra)):
        for split, cls, _ in entries:
            per.setdefault((split, cls), Counter())[kind] += 1
    for n, ((split, cls), counts) in enumerate(sorted(per.items())):
        if n == max_lines:
            lines.append(f"  ... and {len(per) - max_lines} more class folders")
            break
        parts = [f"{counts[k]} {k}" for k in ("missing", "extra") if counts[k]]
        lines.append(f"  {split}/{cls}: {', '.join(parts)}")
    if csv_path is not None:
        lines.append(f"  every difference is listed in {csv_path}")
    return lines


def run_check(data: Path, csv_path: Path, manifest: Path | None = None,
              quiet: bool = False) -> DatasetCheck:
    """Check ``data``, write the differences to ``csv_path`` and print the summary."""
    check = check_dataset(data, manifest)
    write_differences(check, csv_path)
    if not quiet:
        print("\n".join(summary_lines(check, csv_path)), flush=True)
    return check
