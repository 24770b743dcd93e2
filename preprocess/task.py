"""One video of a ``make frames`` run: decode it and write its folder (in a worker process).

Every problem that belongs to the video (its name, its content, its header, writing its
files) comes back as a reason for failures.csv; only a problem of the store itself (a full
disk, a read-only or failing file system) stops the run, with ``stop`` set.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from formats.store import StoreError, write_video_dir
from preprocess.extract import ExtractOptions, VideoError, extract_video
from preprocess.kinetics import SourceVideo
from preprocess.lock import worker_lock

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# The store's file system refuses this name (too long with its folder, bytes it cannot hold).
NAME_REFUSED = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)


@dataclass
class Outcome:
    video: SourceVideo
    meta: dict | None = None  # the video's meta.json if it was written
    reason: str = ""  # why not (failures.csv), or why the run must stop
    stop: bool = False


class Stopped(Exception):
    """A build stops: its reason is one line (a worker's outcome that ends the whole run)."""


def stopped_build(error: Exception, store: Path, progress: str) -> StoreError:
    """The one line of a store build that stopped on ``error`` (a ``Stopped`` or an OSError:
    a full disk, a write refused); what was finished is kept and a rerun resumes."""
    if isinstance(error, Stopped):
        reason = str(error)
    elif getattr(error, "errno", None) in DISK_FULL:
        reason = f"disk full while writing {shown_path(error.filename or store)}"
    else:
        reason = f"{shown_path(error.filename or store)}: {error.strerror or error}"
    fix = "free space" if reason.startswith("disk full") else "fix this"
    return StoreError(f"{reason}: {progress}; {fix} and run the same command again")


def shown_path(path: Path) -> str:
    """A path as text for failures.csv and messages: bytes that are not UTF-8 (a file named
    on another system) become backslash escapes instead of breaking the UTF-8 files."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_current(meta: dict | None, opts: ExtractOptions, video: SourceVideo) -> bool:
    """True if ``meta`` (of a complete video) was made from ``video`` as it is, with ``opts``."""
    if meta is None or meta.get("short_side") != opts.short_side or \
            meta.get("jpeg_quality") != opts.quality:
        return False
    try:
        return meta.get("source_bytes") == video.path.stat().st_size
    except OSError:  # the source is gone (e.g. now a broken link): redo, which reports it
        return False


def write_error(path: Path, e: OSError) -> tuple[str, bool]:
    """(reason, stop) for an error writing ``path``."""
    if e.errno in DISK_FULL:
        return f"disk full while writing {shown_path(path)}", True
    if e.errno in NAME_REFUSED:
        return f"the store's file system cannot hold this name ({e.strerror}); rename the file", \
            False
    return f"cannot write {shown_path(path)} ({e.strerror})", True


def process_video(video: SourceVideo, final: Path, opts: ExtractOptions, decode_threads: int,
                  store: Path, parent: int | None = None) -> Outcome:
    """Extract one video into ``final``.

    ``parent``: pid of the run's main process, for a worker process. A worker whose main
    process is gone (killed) writes nothing more: a new run may be cleaning up by then."""
    try:
        video.video_id.encode("utf-8")
    except UnicodeEncodeError:  # the index and failures.csv are UTF-8 text
        return Outcome(video, reason="file name is not valid UTF-8; rename the file")
    try:
        ex = extract_video(video.path, opts, decode_threads)
        source_bytes = video.path.stat().st_size
    except VideoError as e:
        return Outcome(video, reason=str(e))
    except MemoryError:
        return Outcome(video, reason="out of memory while decoding")
    except Exception as e:  # noqa: BLE001 - a broken file must not stop the other videos
        return Outcome(video, reason=f"{type(e).__name__}: {e}")
    meta = {
        "video_id": video.video_id, "source": video.path.name,
        "source_bytes": source_bytes, "source_fps": ex.source_fps,
        "source_frames": ex.source_frames, "source_width": ex.source_width,
        "source_height": ex.source_height, "kept_frames": len(ex.jpegs), "width": ex.width,
        "height": ex.height, "short_side": opts.short_side, "jpeg_quality": opts.quality,
        "jpeg_bytes": sum(len(j) for j in ex.jpegs),
    }
    try:
        with worker_lock(store):
            if parent is not None and os.getppid() != parent:
                return Outcome(video, reason="the run was stopped", stop=True)
            write_video_dir(final, ex.jpegs, meta)
    except OSError as e:
        reason, stop = write_error(final, e)
        return Outcome(video, reason=reason, stop=stop)
    return Outcome(video, meta)
