"""The frame store: the one format that preprocessing writes and every later stage reads.

Layout of a store folder ``<store>``::

    store.json                 settings (format, short side, JPEG quality, fps, classes, ...)
    <split>_index.csv          one row per complete video (see VideoRecord)
    failures.csv               videos skipped by the last run, with the reason
    .lock                      held by ``preprocess frames`` while it writes (flock)
    .writer.lock               held by a build (exclusive) or by training runs (shared)
    jpg format:
      <split>/<class>/<stem>/image_00001.jpg ... + meta.json
    hdf5 format:
      <split>.h5               dataset ``videos/<class>/<stem>``: 1-D uint8, the video's JPEG
                               files concatenated; attributes ``offsets`` (kept_frames + 1
                               int64) and ``meta`` (the video's meta.json)
      .parts/<split>/<class>/<stem>/   per-video JPEG folders while the store is being built
    raw format (decoded frames, made from a jpg or hdf5 store: datasets/decoded_store.py):
      <split>/<class>/<stem>.rgb   a header, then kept_frames x height x width x 3 uint8 (RGB,
                               C order), memory-mapped by the loader (formats/raw.py)

``short_side`` is a maximum: a source whose short side is smaller keeps its size (the index
gives every video's width and height).

The jpg and hdf5 formats hold byte-identical JPEG files, so they give identical pixels; a
raw store holds the pixels the loader decodes from its JPEG store, the same again. Every per-video
folder is written under a temporary name and renamed when complete, so a killed run never
leaves a partial video that looks finished. Later stages read only the index and never list
or probe frames; preprocess/frame_bytes.py reads the frames back.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from formats.files import atomic_write, sync_folder

STORE_VERSION = 1
SETTINGS_FILE = "store.json"
META_FILE = "meta.json"
JPEG_FORMATS = ("jpg", "hdf5")  # what make frames writes from videos
FORMATS = (*JPEG_FORMATS, "raw")  # raw: decoded from a JPEG store (datasets/decoded_store.py)


class StoreError(Exception):
    """A frame store is missing, incomplete or was built with unexpected settings."""


@dataclass(frozen=True)
class StoreSettings:
    format: str
    short_side: int
    jpeg_quality: int
    fps: int = 15
    classes: tuple[str, ...] = ()
    version: int = STORE_VERSION
    source: str = ""
    extra: dict = field(default_factory=dict)
    # Written when a build completes (preprocess.identity): fingerprint, counts, dataset check.
    # Not a setting: absent in older stores and while a build is under way.
    identity: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VideoRecord:
    """One complete video of the store. ``location`` says where its frames are:
    jpg: a folder relative to the store; hdf5: ``<file>.h5:<dataset path>``; raw: a file
    ``<split>/<class>/<stem>.rgb`` relative to the store."""

    video_id: str  # "<class>/<stem>", unique within a split
    class_name: str
    label: int
    kept_frames: int
    source_fps: float
    source_frames: int
    width: int
    height: int
    location: str


INDEX_COLUMNS = [f.name for f in fields(VideoRecord)]


def index_path(store: Path, split: str) -> Path:
    return Path(store) / f"{split}_index.csv"


def frame_name(i: int) -> str:
    """File name of kept frame ``i`` (0-based) in a jpg video folder (1-based on disk)."""
    return f"image_{i + 1:05d}.jpg"


def write_settings(store: Path, settings: StoreSettings) -> None:
    d = asdict(settings)
    d["classes"] = list(settings.classes)
    atomic_write(Path(store) / SETTINGS_FILE, json.dumps(d, indent=2) + "\n")


def read_settings(store: Path) -> StoreSettings:
    path = Path(store) / SETTINGS_FILE
    if not path.is_file():
        raise StoreError(f"{path}: no frame store here; build one with `make frames`")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        d["classes"] = tuple(d.get("classes", ()))
        settings = StoreSettings(**d)
    except (ValueError, TypeError) as e:
        raise StoreError(
            f"{path}: unreadable store settings ({e}); rebuild with `make frames`"
        ) from None
    if settings.version != STORE_VERSION:
        raise StoreError(
            f"{path}: store version {settings.version}, this code reads version "
            f"{STORE_VERSION}; rebuild it with `make frames`"
        )
    return settings


def check_settings(store: Path, **expected) -> StoreSettings:
    """Read the settings and fail with one line if any of ``expected`` differs."""
    settings = read_settings(store)
    wrong = [
        f"{k}={getattr(settings, k)!r} (expected {v!r})"
        for k, v in expected.items()
        if getattr(settings, k) != v
    ]
    if wrong:
        raise StoreError(
            f"{Path(store) / SETTINGS_FILE}: store built with unexpected settings: "
            + ", ".join(wrong)
            + "; rebuild it with `make frames` and matching options"
        )
    return settings


def write_index(store: Path, split: str, records: list[VideoRecord]) -> None:
    """Write the split's index atomically (synced before the rename), sorted by video id."""
    buffer = io.StringIO()
    w = csv.DictWriter(buffer, fieldnames=INDEX_COLUMNS)
    w.writeheader()
    for r in sorted(records, key=lambda r: r.video_id):
        w.writerow(asdict(r))
    atomic_write(index_path(store, split), buffer.getvalue())


def read_index(store: Path, split: str) -> list[VideoRecord]:
    path = index_path(store, split)
    if not path.is_file():
        raise StoreError(
            f"{path}: no index for split '{split}'; build the store with `make frames`"
        )
    types = {f.name: f.type for f in fields(VideoRecord)}
    casts = {"int": int, "float": float, "str": str}
    records = []
    seen: set[str] = set()
    with open(path, encoding="utf-8", newline="") as f:
        try:
            reader = csv.DictReader(f)
            if reader.fieldnames != INDEX_COLUMNS:
                raise StoreError(
                    f"{path}: unexpected columns {reader.fieldnames}; rebuild the store")
            for line, row in enumerate(reader, start=2):
                try:
                    record = VideoRecord(**{k: casts[types[k]](v) for k, v in row.items()})
                except (TypeError, ValueError) as e:
                    raise StoreError(
                        f"{path}:{line}: malformed index row ({e}); rebuild the store"
                    ) from None
                if record.video_id in seen:  # its clips would be counted twice
                    raise StoreError(f"{path}:{line}: video {record.video_id} listed twice; "
                                     "rebuild the store")
                seen.add(record.video_id)
                records.append(record)
        except (UnicodeDecodeError, csv.Error) as e:
            raise StoreError(f"{path}: not a readable index ({e}); rebuild the store") from None
    return records


# ---- per-video folders (the unit of work and of resumption) ----------------------------

def video_dir(store: Path, settings_format: str, split: str, video_id: str) -> Path:
    """Final folder of one video's JPEG files (for hdf5, the staging part before packing)."""
    base = Path(store) if settings_format == "jpg" else Path(store) / ".parts"
    return base / split / video_id


def partial_dir(final: Path) -> Path:
    """The temporary folder a video is written to: a short name of its own, so that a source
    name as long as the file system allows still fits, and one per video (fixed, so that a
    leftover is found and replaced)."""
    final = Path(final)
    digest = hashlib.sha1(os.fsencode(final.name)).hexdigest()[:16]
    return final.with_name(f".{digest}.partial")


def write_video_dir(final: Path, jpegs: list[bytes], meta: dict) -> None:
    """Write a video's JPEG files and meta.json into ``final`` atomically.

    The files go to a temporary sibling folder, are flushed to disk and the folder renamed
    when complete, so ``final`` exists only if the video is whole, also after a power cut.
    A leftover temporary folder is removed first; on any error (a full disk) nothing of this
    video is left."""
    final = Path(final)
    tmp = partial_dir(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        names = [frame_name(i) for i in range(len(jpegs))] + [META_FILE]
        for name, data in zip(names, [*jpegs, json.dumps(meta).encode("utf-8")], strict=True):
            _write(tmp / name, data)
        # Flushed after all are written: the first flush then writes them out together (one
        # journal commit), the others find them clean; a flush per file as it is written
        # costs a commit each (docs/perf/preprocess.md).
        for name in names:
            _sync(tmp / name)
        sync_folder(tmp)
        if final.exists():  # an older complete copy: replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sync_folder(final.parent)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_video_meta(final: Path) -> dict | None:
    """meta.json of a complete video folder, or None if the folder is absent or incomplete."""
    path = Path(final) / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


# ---- reading frames ---------------------------------------------------------------------
