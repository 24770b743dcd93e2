"""The decoded-frame file of the ``raw`` store format: one file per video, every kept frame's
decoded pixels, memory-mapped by the loader.

Layout of ``<store>/<split>/<class>/<stem>.rgb``::

    bytes 0 .. 4095      header: the line ``VMB-RGB 1``, then one line of JSON (video_id,
                         frames, height, width, sha256 of the pixels, source: the JPEG
                         store's index row the pixels were decoded from), padded with spaces
    bytes 4096 ..        frames x height x width x 3 uint8, C order (RGB, rows contiguous)

The pixels start on a page boundary, so ``numpy.memmap`` maps them at offset 4096 and a
crop window of a frame is a strided view: the loader reads only the rows and columns it
needs, and loader workers share the page cache. A file is written under a temporary name,
flushed and renamed (``write_raw_video``), so a file under its real name is complete. The
loader checks the size and header of each file once per process (a truncated or damaged
file is a one-line StoreError naming it), and the size again before each clip it reads from
the map (a file cut short while mapped would otherwise end the process with SIGBUS), but does
not hash the pixels on every read: ``make verify`` does, against the header's sha256.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import resource
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from formats.files import atomic_path, sync_folder
from formats.store import StoreError, VideoRecord, partial_dir

RAW_SUFFIX = ".rgb"
HEADER_SIZE = 4096
MAGIC = b"VMB-RGB 1\n"
FIX = "rebuild it with `make frames FORMAT=raw` (or python -m datasets.decoded_store)"

# (pid, path) -> (the frames over the map, the map). Each map holds a descriptor of its file
# (Python's mmap keeps one), so a process that maps all of a store's videos holds as many.
_maps: dict[tuple[int, str], tuple[np.ndarray, mmap.mmap]] = {}
_videos_to_map: dict[str, int] = {}  # index file -> its videos, of this process's datasets
SPARE_DESCRIPTORS = 512  # for everything else a training process opens


def raw_location(split: str, video_id: str) -> str:
    """``VideoRecord.location`` of a video in a raw store."""
    return f"{split}/{video_id}{RAW_SUFFIX}"


def is_raw(record: VideoRecord) -> bool:
    return record.location.endswith(RAW_SUFFIX)


def video_bytes(frames: int, height: int, width: int) -> int:
    """Size of a video's file: header and pixels."""
    return HEADER_SIZE + frames * height * width * 3


def _header_bytes(header: dict) -> bytes:
    text = MAGIC + json.dumps(header, sort_keys=True).encode("utf-8") + b"\n"
    if len(text) > HEADER_SIZE:
        raise ValueError(f"header of {len(text)} bytes does not fit in {HEADER_SIZE}")
    return text.ljust(HEADER_SIZE, b" ")


def write_raw_video(final: Path, frames: Iterable[np.ndarray], header: dict) -> dict:
    """Write a video's frames (H x W x 3 uint8 each, all of the header's size) to ``final``.

    The file is written under a temporary sibling name, the header (with the frame count and
    the pixels' sha256) last, flushed and renamed; on any error nothing is left. Returns the
    header as written."""
    final = Path(final)
    shape = (header["height"], header["width"], 3)
    digest = hashlib.sha256()
    count = 0
    # The store's temporary name (partial_dir), which a rerun of the build removes.
    with atomic_path(final, tmp=partial_dir(final)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, bytes(HEADER_SIZE))  # filled in once the pixels are written
            for frame in frames:
                if frame.shape != shape or frame.dtype != np.uint8:
                    raise ValueError(f"frame {count} is {frame.shape} {frame.dtype}, "
                                     f"expected {shape} uint8")
                data = np.ascontiguousarray(frame).data
                digest.update(data)
                _write_all(fd, data)
                count += 1
            header = {**header, "frames": count, "sha256": digest.hexdigest()}
            os.pwrite(fd, _header_bytes(header), 0)
        finally:
            os.close(fd)
    sync_folder(final.parent)
    return header


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def read_header(path: Path) -> dict:
    """The header of a decoded-frame file; StoreError (one line, naming it) if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
    except OSError as e:
        raise StoreError(f"{path}: cannot read the decoded frames ({e.strerror}); {FIX}") from None
    if len(head) < HEADER_SIZE or not head.startswith(MAGIC):
        raise StoreError(f"{path}: not a decoded-frame file (damaged header); {FIX}")
    try:
        header = json.loads(head[len(MAGIC):].split(b"\n", 1)[0])
        shape = tuple(int(header[k]) for k in ("frames", "height", "width"))
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"{path}: damaged header of a decoded-frame file; {FIX}") from None
    if min(shape) < 1:
        raise StoreError(f"{path}: damaged header of a decoded-frame file; {FIX}")
    return header


def check_file(path: Path, record: VideoRecord) -> dict:
    """The header, after checking it and the file's size against the index row."""
    header = read_header(path)
    expected = (record.kept_frames, record.height, record.width)
    found = (header["frames"], header["height"], header["width"])
    if found != expected:
        raise StoreError(f"{path}: holds {found[0]} frames of {found[2]}x{found[1]}, the index "
                         f"says {expected[0]} of {expected[2]}x{expected[1]}; {FIX}")
    size, want = os.stat(path).st_size, video_bytes(*expected)
    if size != want:
        what = "truncated" if size < want else "longer than its frames"
        raise StoreError(f"{path}: {what} ({size} bytes, {want} expected); {FIX}")
    return header


def allow_maps(videos: int, index: Path) -> None:
    """Make room for the ``videos`` of the split listed by ``index`` to stay mapped in this
    process and its loader workers, besides those of other splits already allowed: the soft
    limit on open files is raised toward the hard one (1024 is a common soft limit, and
    Kinetics-20's train split alone has 1276 videos); if the hard limit is too low, a
    one-line StoreError says what to raise, before any clip is read."""
    _videos_to_map[os.path.abspath(index)] = videos
    need = sum(_videos_to_map.values()) + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise StoreError(f"{index}: a decoded store keeps each of its videos mapped, "
                             f"{need - SPARE_DESCRIPTORS} here, which needs {need} open files; "
                             f"this process may open {hard}: raise the limit (ulimit -n {need})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def video_frames(store: Path | str, record: VideoRecord) -> np.ndarray:
    """The video's frames, frames x height x width x 3 uint8, memory-mapped read-only.

    Mapped once per process on first use (a loader worker maps its own after the fork; the
    pages are the page cache's, shared by all workers), checked then (check_file); on every
    later use the mapped file's size is checked again (one fstat: a microsecond, against a
    millisecond per clip), so a file cut short under a running loader is a StoreError naming
    it, not a SIGBUS when a missing page is read."""
    path = os.path.join(store, record.location)
    key = (os.getpid(), path)
    mapped = _maps.get(key)
    shape = (record.kept_frames, record.height, record.width, 3)
    if mapped is not None:
        frames, pixels = mapped
        size, want = pixels.size(), video_bytes(*shape[:3])
        if size < want:
            raise StoreError(f"{path}: truncated while in use ({size} bytes, {want} expected); "
                             f"{FIX}")
        return frames
    check_file(Path(path), record)
    try:
        with open(path, "rb") as f:
            pixels = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        # A plain array over the map: slicing a np.memmap costs more per frame.
        frames = np.frombuffer(pixels, np.uint8, count=int(np.prod(shape)),
                               offset=HEADER_SIZE).reshape(shape)
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: cannot map the decoded frames ({e}); {FIX}") from None
    _maps[key] = (frames, pixels)
    return frames


def forget_maps() -> None:
    """Drop this process's maps (their pages may then leave the page cache once no array
    over them is left)."""
    _maps.clear()


def pixels_sha256(path: Path, chunk: int = 8 << 20) -> str:
    """sha256 of a file's pixels (everything after the header), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(HEADER_SIZE)
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
