"""Build a frame store from a dataset in the Kinetics layout (``python -m preprocess frames``).

The unit of work and of resumption is one video: its JPEG files and meta.json are written to
a temporary folder, flushed to disk and renamed when complete (store.write_video_dir). A rerun
skips videos whose folder (or, for hdf5, packed entry) is complete and redoes everything else.
Videos that cannot be used are skipped and listed with the reason in failures.csv
(preprocess.task says which problems are a video's). Two source files for one video id
(``a.mp4`` and ``a.webm``) are both listed and neither is built: picking one would depend on
the order of a directory listing. A full disk (or a store that cannot be written) stops the
run with one line; what is complete stays, the video in hand is removed, a rerun resumes.
A run holds the store's locks (preprocess.lock), so a rerun after a kill starts only once
every process of the killed run has stopped writing, and a training run reading the store
makes it wait.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from formats.store import (
    SETTINGS_FILE,
    StoreError,
    StoreSettings,
    VideoRecord,
    read_settings,
    read_video_meta,
    video_dir,
    write_index,
    write_settings,
)
from preprocess import pack
from preprocess.extract import INTERPOLATION, ExtractOptions
from preprocess.failures import Summary, print_summary, write_failures
from preprocess.identity import record_identity
from preprocess.kinetics import SourceVideo, find_videos, shared_ids
from preprocess.lock import LOCK_FILES, store_write_lock
from preprocess.resample import TARGET_FPS
from preprocess.task import (
    Outcome,
    Stopped,
    is_current,
    process_video,
    shown_path,
    stopped_build,
)


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


@contextmanager
def stopping_cleanly(store: Path, keep_workers_out: Callable[[], None],
                     summary: Summary) -> Iterator[None]:
    """A build that stops (a worker's fatal outcome, a full disk, a refused write) keeps what it
    finished, removes what was half-written and says so in one line (a rerun resumes)."""
    try:
        yield
    except (OSError, Stopped) as e:
        keep_workers_out()  # no worker writes any more
        remove_partial(store)
        raise stopped_build(e, store, summary.progress()) from None


def remove_partial(store: Path) -> None:
    """Remove what a killed run may have left half-written."""
    # Only the levels where partial video folders live: never walk the frame files.
    patterns = ("*/*/*.partial", ".parts/*/*/*.partial", "*.tmp*")
    for leftover in [p for pattern in patterns for p in store.glob(pattern)]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _record(split: str, meta: dict, fmt: str, classes: list[str]) -> VideoRecord:
    video_id = meta["video_id"]
    class_name = video_id.split("/", 1)[0]
    location = pack.h5_location(split, video_id) if fmt == "hdf5" else f"{split}/{video_id}"
    return VideoRecord(video_id, class_name, classes.index(class_name), meta["kept_frames"],
                       meta["source_fps"], meta["source_frames"], meta["width"], meta["height"],
                       location)


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
    summary = Summary(total=sum(len(v) for v in videos.values()))
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{store}: cannot create the store ({e.strerror})") from None
    with store_write_lock(store, quiet) as keep_workers_out:
        with stopping_cleanly(store, keep_workers_out, summary):
            prepare_store(store, settings)
            remove_partial(store)
            _build(data, store, opts, jobs, quiet, classes, videos, summary)
            # The store is complete: record what it holds and whether it is the benchmark's data.
            record_identity(store, data, summary.failures, quiet)
    summary.seconds = time.monotonic() - start
    if not quiet:
        print_summary(summary, store, data, videos)
    return summary


def _plan(store: Path, opts: ExtractOptions, videos: dict[str, list[SourceVideo]],
          summary: Summary, data: Path) -> tuple[dict, dict, list]:
    """What is complete (per split: id -> meta), what is staged for packing, what to do."""
    complete: dict[str, dict[str, dict]] = {split: {} for split in videos}
    staged: dict[str, set[str]] = {split: set() for split in videos}
    todo = []
    for split, split_videos in videos.items():
        shared = shared_ids(split_videos)
        for video_id, sources in shared.items():
            names = ", ".join(shown_path(v.path.name) for v in sources)
            for v in sources:
                _fail(summary, data, v, f"{len(sources)} source files for video id "
                                        f"{shown_path(video_id)} ({names}); keep one and run again")
        packed = pack.packed_meta(store, split) if opts.format == "hdf5" else {}
        for v in split_videos:
            if v.video_id in shared:
                continue
            final = video_dir(store, opts.format, split, v.video_id)
            meta = read_video_meta(final)
            if is_current(meta, opts, v):
                staged[split].add(v.video_id)
            elif is_current(packed.get(v.video_id), opts, v):
                meta = packed[v.video_id]
            else:
                todo.append((v, final))
                continue
            complete[split][v.video_id] = meta
            summary.skipped += 1
    return complete, staged, todo


def _fail(summary: Summary, data: Path, video: SourceVideo, reason: str) -> None:
    summary.failed += 1
    summary.failures.append((video.split, shown_path(video.path.relative_to(data)), reason))


def _build(data: Path, store: Path, opts: ExtractOptions, jobs: int, quiet: bool,
           classes: list[str], videos: dict[str, list[SourceVideo]], summary: Summary) -> None:
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm import tqdm

    complete, staged, todo = _plan(store, opts, videos, summary, data)
    n_jobs = min(effective_n_jobs(jobs), max(len(todo), 1))
    decode_threads = 1 if n_jobs > 1 else 0  # one process: let the decoder use threads
    parent = os.getpid() if n_jobs > 1 else None  # workers are this process's children
    tasks = (delayed(process_video)(v, final, opts, decode_threads, store, parent)
             for v, final in todo)
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
    bar = tqdm(results, total=len(todo), unit="video", desc=f"frames {store.name}",
               disable=quiet or not todo, smoothing=0.05)
    try:
        for outcome in bar:
            _count(outcome, summary, complete, staged, data)
            bar.set_postfix(frames_per_s=f"{summary.frames / bar.format_dict['elapsed']:.0f}"
                            if bar.format_dict["elapsed"] else "-", refresh=False)
    finally:
        bar.close()
        results.close()  # on a stop: cancel what is queued, end the workers

    for split in videos:
        needs_pack = staged[split] or not pack.h5_path(store, split).is_file()
        if opts.format == "hdf5" and needs_pack:
            if not quiet:
                print(f"packing {pack.h5_path(store, split)} ...", file=sys.stderr, flush=True)
            pack.pack_split(store, split, complete[split], staged[split])
        records = [_record(split, m, opts.format, classes) for m in complete[split].values()]
        write_index(store, split, records)
    write_failures(store, summary.failures)


def _count(outcome: Outcome, summary: Summary, complete: dict, staged: dict,
           data: Path) -> None:
    video, meta = outcome.video, outcome.meta
    if outcome.stop:
        raise Stopped(outcome.reason)
    if meta is None:
        _fail(summary, data, video, outcome.reason)
        return
    summary.done += 1
    summary.frames += meta["kept_frames"]
    summary.bytes += meta["jpeg_bytes"]
    complete[video.split][video.video_id] = meta
    staged[video.split].add(video.video_id)


def default_jobs() -> int:
    return os.cpu_count() or 1
