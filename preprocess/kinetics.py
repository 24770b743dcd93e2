"""The Kinetics dataset layout and its CSV files.

Layout (the folders are the truth; the CSVs may list videos that are missing on disk)::

    <data>/train/<class_folder>/<youtube_id>_<start:06d>_<end:06d>.mp4
    <data>/val/<class_folder>/...
    <data>/train.csv, <data>/val.csv   (optional here)

CSV header ``,label,youtube_id,time_start,time_end,split,is_cc,video_name``; labels use spaces
where class folders use underscores.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from formats.files import atomic_path

SPLITS = ("train", "val")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
CSV_HEADER = ["", "label", "youtube_id", "time_start", "time_end", "split", "is_cc", "video_name"]
EXPECTED_LAYOUT = "expected <data>/train/<class>/<video>.mp4 and <data>/val/<class>/<video>.mp4"


class LayoutError(Exception):
    """The input folder is missing or not laid out like Kinetics."""


@dataclass(frozen=True)
class SourceVideo:
    split: str
    class_name: str  # the class folder name
    path: Path

    @property
    def video_id(self) -> str:
        return f"{self.class_name}/{self.path.stem}"


@dataclass(frozen=True)
class CsvRow:
    row_id: str
    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str
    is_cc: bool
    video_name: str

    @property
    def class_folder(self) -> str:
        return self.label.replace(" ", "_")


def video_name(youtube_id: str, start: int, end: int) -> str:
    return f"{youtube_id}_{start:06d}_{end:06d}"


def parse_video_name(stem: str) -> tuple[str, int, int]:
    """``<youtube_id>_<start>_<end>`` -> parts; YouTube ids may contain underscores."""
    youtube_id, start, end = stem.rsplit("_", 2)
    return youtube_id, int(start), int(end)


def _visible_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def find_videos(data: Path) -> tuple[list[str], dict[str, list[SourceVideo]]]:
    """The sorted class folder names of train/ (label = position) and every video of each split.

    Raises LayoutError with one line showing the expected layout."""
    data = Path(data)
    if not data.is_dir():
        raise LayoutError(f"{data}: no such folder; {EXPECTED_LAYOUT}")
    for split in SPLITS:
        if not (data / split).is_dir():
            raise LayoutError(f"{data / split}: missing; {EXPECTED_LAYOUT}")
    classes = _visible_dirs(data / "train")
    if not classes:
        raise LayoutError(f"{data / 'train'}: no class folders; {EXPECTED_LAYOUT}")
    val_classes = _visible_dirs(data / "val")
    if val_classes != classes:
        missing = sorted(set(classes) - set(val_classes))
        extra = sorted(set(val_classes) - set(classes))
        raise LayoutError(
            f"{data / 'val'}: class folders differ from train/ (missing: {missing or 'none'}, "
            f"not in train/: {extra or 'none'}); both splits must have the same classes"
        )
    videos: dict[str, list[SourceVideo]] = {}
    for split in SPLITS:
        found = []
        for name in classes:
            try:
                entries = sorted(os.scandir(data / split / name), key=lambda e: e.name)
            except OSError as e:
                raise LayoutError(f"{data / split / name}: cannot list ({e.strerror}); "
                                  "check its permissions") from None
            for entry in entries:
                # Whatever is named like a video counts as one: a broken link, a FIFO or a
                # folder named *.mp4 is then reported with its reason, not silently left out.
                if entry.name.lower().endswith(VIDEO_EXTENSIONS):
                    if not entry.name.startswith("."):
                        found.append(SourceVideo(split, name, Path(entry.path)))
        if not found:
            raise LayoutError(
                f"{data / split}: no video files ({', '.join(VIDEO_EXTENSIONS)}); {EXPECTED_LAYOUT}"
            )
        videos[split] = found
    return classes, videos


def shared_ids(videos: list[SourceVideo]) -> dict[str, list[SourceVideo]]:
    """Video ids that more than one source file maps to (``a.mp4`` and ``a.webm``, ``a.MP4``),
    with their files. Such ids are not built: which file is meant is the user's call."""
    by_id: dict[str, list[SourceVideo]] = {}
    for v in videos:
        by_id.setdefault(v.video_id, []).append(v)
    return {k: sorted(vs, key=lambda v: v.path.name) for k, vs in by_id.items() if len(vs) > 1}


def read_kinetics_csv(path: Path) -> list[CsvRow]:
    """Rows of a Kinetics CSV (train.csv / val.csv).

    Raises LayoutError naming the file and row for anything unreadable: a bad header or row,
    text that is not UTF-8 (a spreadsheet's cp1252), a cell over the csv module's limit."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LayoutError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        row = raw.count(b"\n", 0, e.start) + 1
        raise LayoutError(f"{path}:{row}: not UTF-8 text (byte {raw[e.start]:#04x}); save the "
                          "file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = next(reader, None)
        if header != CSV_HEADER:
            raise LayoutError(f"{path}:1: header {header}, expected {','.join(CSV_HEADER)}")
        for fields in reader:
            if fields:
                rows.append(_csv_row(path, reader.line_num, fields))
    except csv.Error as e:
        raise LayoutError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def _csv_row(path: Path, line: int, fields: list[str]) -> CsvRow:
    try:
        row_id, label, yid, start, end, split, is_cc, name = fields
        if is_cc not in ("True", "False", "0", "1"):
            raise ValueError(f"is_cc={is_cc!r}")
        return CsvRow(row_id, label, yid, int(start), int(end), split, is_cc in ("True", "1"),
                      name)
    except ValueError as e:
        raise LayoutError(f"{path}:{line}: malformed row ({e})") from None


def write_kinetics_csv(path: Path, rows: list[CsvRow]) -> None:
    """Write rows in the Kinetics CSV format, via a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_HEADER)
        for r in rows:
            w.writerow([r.row_id, r.label, r.youtube_id, r.time_start, r.time_end, r.split,
                        r.is_cc, r.video_name])


def missing_on_disk(data: Path, split: str, videos: list[SourceVideo]) -> list[str] | None:
    """Video names the split's CSV lists but the folders lack (None if there is no CSV)."""
    path = Path(data) / f"{split}.csv"
    if not path.is_file():
        return None
    on_disk = {(v.class_name, v.path.stem) for v in videos}
    return [r.video_name for r in read_kinetics_csv(path)
            if (r.class_folder, r.video_name) not in on_disk]
