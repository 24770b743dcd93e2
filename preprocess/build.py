"""Build a frame store from a dataset in the Kinetics layout (``python -m preprocess frames``).

The unit of work and of resumption is one video: its JPEG files and meta.json are written to
a temporary folder that is renamed when complete (store.write_video_dir). A rerun skips
videos whose folder (or, for hdf5, packed entry) is complete and redoes everything else.
Videos that cannot be used are skipped and listed with the reason in failures.csv.
A run holds the store's locks (preprocess.lock), so a rerun after a kill starts only once
every process of the killed run has stopped writing, and a training run reading the store
makes it wait.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from preprocess import pack
from preprocess.extract import INTERPOLATION, ExtractOptions, VideoError, extract_video
from preprocess.identity import record_identity
from preprocess.kinetics import LayoutError, SourceVideo, find_videos, missing_on_disk
from preprocess.lock import LOCK_FILES, store_write_lock, worker_lock
from preprocess.resample import TARGET_FPS
from preprocess.store import (
    SETTINGS_FILE,
    StoreError,
    StoreSettings,
    VideoRecord,
    atomic_write_text,
    read_settings,
    read_video_meta,
    video_dir,
    write_index,
    write_settings,
    write_video_dir,
)

FAILURES_FILE = "failures.csv"


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0  # kept frames written by this run
    bytes: int = 0  # JPEG bytes written by this run
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # split, path, reason


def store_settings(opts: ExtractOptions, classes: list[str], data: Path) -> StoreSettings:
    return StoreSettings(
        format=opts.format, short_side=opts.short_side, jpeg_quality=opts.quality,
        fps=TARGET_FPS, classes=tuple(classes), source=str(Path(data).resolve()),
        extra={"resize": f"{INTERPOLATION.lower()}, never enlarged, long side even",
               "jpeg": "libjpeg-turbo, 4:2:0", "resample": "torchvision VideoClips"},
    )


def check_store(store: Path, settings: StoreSettings) -> None:
    """Raise StoreError unless ``store`` is absent, empty or a store built the same way."""
    store = Path(store)
    if (store / SETTINGS_FILE).is_file():
        old = replace(read_settings(store), identity={})  # the record is not a setting
        if old != settings:
            wrong = [f"{k}={getattr(old, k)!r}" for k in settings.__dataclass_fields__
                     if getattr(old, k) != getattr(settings, k) and k != "classes"]
            if old.classes != settings.classes:
                wrong.append("other classes")
            raise StoreError(f"{store / SETTINGS_FILE}: store built with other settings "
                             f"({', '.join(wrong)}); choose another --out or delete it")
    elif store.exists() and any(p.name not in LOCK_FILES for p in store.iterdir()):
        raise StoreError(f"{store}: not empty and not a frame store; choose another --out")


def prepare_store(store: Path, settings: StoreSettings) -> None:
    """Create the store, or check that an existing one was built the same way."""
    check_store(store, settings)
    Path(store).mkdir(parents=True, exist_ok=True)
    write_settings(store, settings)


def remove_partial(store: Path) -> None:
    """Remove what a killed run may have left half-written."""
    # Only the levels where partial video folders live: never walk the frame files.
    patterns = ("*/*/*.partial", ".parts/*/*/*.partial", "*.tmp*")
    for leftover in [p for pattern in patterns for p in store.glob(pattern)]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _is_current(meta: dict | None, opts: ExtractOptions, video: SourceVideo) -> bool:
    if meta is None or meta.get("short_side") != opts.short_side or \
            meta.get("jpeg_quality") != opts.quality:
        return False
    try:
        return meta.get("source_bytes") == video.path.stat().st_size
    except OSError:  # the source is gone (e.g. now a broken link): redo, which reports it
        return False


def process_video(video: SourceVideo, final: Path, opts: ExtractOptions, decode_threads: int,
                  store: Path, parent: int | None = None) -> tuple[SourceVideo, dict | None, str]:
    """Extract one video into ``final``. Returns (video, meta, "") or (video, None, reason).

    ``parent``: pid of the run's main process, for a worker process. A worker whose main
    process is gone (killed) writes nothing more: a new run may be cleaning up by then."""
    try:
        video.video_id.encode("utf-8")
    except UnicodeEncodeError:  # the index and failures.csv are UTF-8 text
        return video, None, "file name is not valid UTF-8; rename the file"
    try:
        ex = extract_video(video.path, opts, decode_threads)
    except VideoError as e:
        return video, None, str(e)
    except Exception as e:  # noqa: BLE001 - a broken file must not stop the other videos
        return video, None, f"{type(e).__name__}: {e}"
    meta = {
        "video_id": video.video_id, "source": video.path.name,
        "source_bytes": video.path.stat().st_size, "source_fps": ex.source_fps,
        "source_frames": ex.source_frames, "source_width": ex.source_width,
        "source_height": ex.source_height, "kept_frames": len(ex.jpegs), "width": ex.width,
        "height": ex.height, "short_side": opts.short_side, "jpeg_quality": opts.quality,
        "jpeg_bytes": sum(len(j) for j in ex.jpegs),
    }
    with worker_lock(store):
        if parent is not None and os.getppid() != parent:
            return video, None, "the run was stopped"
        write_video_dir(final, ex.jpegs, meta)
    return video, meta, ""


def _record(split: str, meta: dict, fmt: str, classes: list[str]) -> VideoRecord:
    video_id = meta["video_id"]
    class_name = video_id.split("/", 1)[0]
    location = pack.h5_location(split, video_id) if fmt == "hdf5" else f"{split}/{video_id}"
    return VideoRecord(video_id, class_name, classes.index(class_name), meta["kept_frames"],
                       meta["source_fps"], meta["source_frames"], meta["width"], meta["height"],
                       location)


def shown_path(path: Path) -> str:
    """A path as text for failures.csv and messages: bytes that are not UTF-8 (a file named
    on another system) become backslash escapes instead of breaking the UTF-8 files."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def write_failures(store: Path, failures: list[tuple[str, str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # quotes commas, quotes and newlines
    writer.writerow(["split", "video", "reason"])
    for split, path, reason in sorted(failures):
        writer.writerow([split, path, reason.replace("\n", " ")])
    atomic_write_text(Path(store) / FAILURES_FILE, buffer.getvalue())


def build_store(data: Path, store: Path, opts: ExtractOptions, jobs: int = -1,
                quiet: bool = False) -> Summary:
    """Build (or complete) the frame store ``store`` from the dataset folder ``data``."""
    if not 1 <= opts.quality <= 100 or opts.short_side < 16:
        raise StoreError(f"--quality must be 1..100 and --short-side >= 16, got "
                         f"{opts.quality} and {opts.short_side}")
    start = time.monotonic()
    data, store = Path(data), Path(store)
    classes, videos = find_videos(data)
    settings = store_settings(opts, classes, data)
    check_store(store, settings)  # before creating anything in a folder that is not a store
    store.mkdir(parents=True, exist_ok=True)
    with store_write_lock(store, quiet):
        prepare_store(store, settings)
        remove_partial(store)
        summary = _build(data, store, opts, jobs, quiet, classes, videos)
        # The store is complete: record what it holds and whether it is the benchmark's data.
        record_identity(store, data, summary.failures, quiet)
    summary.seconds = time.monotonic() - start
    if not quiet:
        print_summary(summary, store, data, videos)
    return summary


def _build(data: Path, store: Path, opts: ExtractOptions, jobs: int, quiet: bool,
           classes: list[str], videos: dict[str, list[SourceVideo]]) -> Summary:
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm import tqdm

    summary = Summary()
    complete: dict[str, dict[str, dict]] = {split: {} for split in videos}
    staged: dict[str, set[str]] = {split: set() for split in videos}
    todo = []
    for split, split_videos in videos.items():
        packed = pack.packed_meta(store, split) if opts.format == "hdf5" else {}
        for v in split_videos:
            final = video_dir(store, opts.format, split, v.video_id)
            meta = read_video_meta(final)
            if _is_current(meta, opts, v):
                staged[split].add(v.video_id)
            elif _is_current(packed.get(v.video_id), opts, v):
                meta = packed[v.video_id]
            else:
                todo.append((v, final))
                continue
            complete[split][v.video_id] = meta
            summary.skipped += 1

    n_jobs = min(effective_n_jobs(jobs), max(len(todo), 1))
    decode_threads = 1 if n_jobs > 1 else 0  # one process: let the decoder use threads
    parent = os.getpid() if n_jobs > 1 else None  # workers are this process's children
    tasks = (delayed(process_video)(v, final, opts, decode_threads, store, parent)
             for v, final in todo)
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
    bar = tqdm(results, total=len(todo), unit="video", desc=f"frames {store.name}",
               disable=quiet or not todo, smoothing=0.05)
    for video, meta, reason in bar:
        if meta is None:
            summary.failed += 1
            summary.failures.append((video.split, shown_path(video.path.relative_to(data)),
                                     reason))
            continue
        summary.done += 1
        summary.frames += meta["kept_frames"]
        summary.bytes += meta["jpeg_bytes"]
        complete[video.split][video.video_id] = meta
        staged[video.split].add(video.video_id)
        bar.set_postfix(frames_per_s=f"{summary.frames / bar.format_dict['elapsed']:.0f}"
                        if bar.format_dict["elapsed"] else "-", refresh=False)

    for split in videos:
        needs_pack = staged[split] or not pack.h5_path(store, split).is_file()
        if opts.format == "hdf5" and needs_pack:
            if not quiet:
                print(f"packing {pack.h5_path(store, split)} ...", file=sys.stderr, flush=True)
            pack.pack_split(store, split, complete[split], staged[split])
        records = [_record(split, m, opts.format, classes) for m in complete[split].values()]
        write_index(store, split, records)
    write_failures(store, summary.failures)
    return summary


def print_summary(s: Summary, store: Path, data: Path, videos: dict) -> None:
    rate = s.done / s.seconds if s.seconds else 0.0
    print(f"{store}: {s.done} videos done, {s.skipped} skipped (already complete), "
          f"{s.failed} failed; {s.frames} frames, {s.bytes / 1e6:.1f} MB in {s.seconds:.1f} s "
          f"({rate:.1f} videos/s, {s.frames / max(s.seconds, 1e-9):.0f} frames/s)")
    for split, path, reason in s.failures[:20]:
        print(f"  failed: {split}: {path}: {reason}")
    if s.failures:
        print(f"  all failures are listed in {store / FAILURES_FILE}")
    for split, split_videos in videos.items():
        try:
            missing = missing_on_disk(data, split, split_videos)
        except (LayoutError, OSError) as e:
            print(f"  note: {e}")
            continue
        if missing:
            print(f"  note: {split}.csv lists {len(missing)} videos that are not on disk "
                  f"(e.g. {missing[0]}); the folders are used")
    sys.stdout.flush()


def default_jobs() -> int:
    return os.cpu_count() or 1
