"""Build a decoded-frame store (format ``raw``, formats/raw.py) from a JPEG store:
``python -m datasets.decoded_store --jpeg-store <jpg or hdf5 store> --out <store>``;
``make frames FORMAT=raw`` builds (or completes) the JPEG store, then runs this.

It lives with the loader because the loader's own decoder defines the pixels: every kept frame
is decoded with it (``datasets/jpeg_window.c``, the whole frame), so
the pixels are exactly those a run on the JPEG store decodes: a run on either store gets the
same clips, bit for bit. The index rows, the settings that shape the frames and so the
fingerprint are the JPEG store's; its identity record (dataset check, failed videos) is
carried over with ``decoded_from`` (path, format and fingerprint of the JPEG store), so a
decoded store made from a compliant JPEG store is compliant.

As ``make frames``: one video is the unit of work and of resumption (its file is written
under a temporary name and renamed), a rerun skips videos whose file is complete and was
decoded from the same index row (and removes the files of videos no longer indexed), a video
that cannot be decoded is listed in failures.csv, the free space is checked before writing
(the size needed is in the message), a full disk stops the run with one line and a rerun
resumes; the store locks are held (preprocess.lock), and the JPEG store is held as a
training run holds it (a ``make frames`` into it waits).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from datasets.decode import frame_source
from datasets.jpeg_window import JpegError, decode_window
from formats.raw import RAW_SUFFIX, check_file, raw_location, video_bytes, write_raw_video
from formats.store import (
    JPEG_FORMATS,
    StoreError,
    StoreSettings,
    VideoRecord,
    read_index,
    read_settings,
    write_index,
    write_settings,
)
from preprocess.cli import guarded, run_main
from preprocess.failures import FAILURES_FILE, Summary, print_failures, write_failures
from preprocess.frame_bytes import read_frame_bytes
from preprocess.frames import check_store, prepare_store, remove_partial, stopping_cleanly
from preprocess.identity import RECORD_OK, read_store_identity, store_fingerprint
from preprocess.kinetics import SPLITS
from preprocess.lock import store_read_lock, store_write_lock, worker_lock
from preprocess.task import Stopped, write_error


@dataclass
class Decoded:
    split: str
    record: VideoRecord  # the JPEG store's row
    reason: str = ""  # why the video failed (failures.csv), or why the run must stop
    stop: bool = False


def raw_settings(jpeg_store: Path, src: StoreSettings) -> StoreSettings:
    """The decoded store's settings: the JPEG store's (same frame-shaping settings, same
    dataset folder as ``source``), with the JPEG store it is decoded from."""
    return StoreSettings(
        format="raw", short_side=src.short_side, jpeg_quality=src.jpeg_quality, fps=src.fps,
        classes=src.classes, source=src.source,
        extra={**src.extra, "decoded_from": str(Path(jpeg_store).resolve()),
               "pixels": "uint8 RGB, decoded by datasets/jpeg_window.c (the loader's decoder)"})


def source_row(r: VideoRecord) -> list:
    """What a decoded file records of the JPEG store's row it was decoded from."""
    return [r.video_id, r.kept_frames, r.width, r.height, r.source_frames, repr(r.source_fps)]


def is_current(path: Path, record: VideoRecord) -> bool:
    try:
        return check_file(path, record).get("source") == source_row(record)
    except (StoreError, OSError):
        return False


def decode_video(jpeg_store: Path, split: str, record: VideoRecord, store: Path,
                 parent: int | None = None) -> Decoded:
    """Decode one video of the JPEG store into its file (in a worker process)."""
    outcome = Decoded(split, record)
    try:
        jpegs = read_frame_bytes(jpeg_store, record, list(range(record.kept_frames)))
    except StoreError as e:
        outcome.reason = str(e)
        return outcome
    size = (record.height, record.width)
    bad: list[str] = []

    def frames():
        for i, data in enumerate(jpegs):
            try:
                yield decode_window(data, size, (0, size[0]), (0, size[1]))
            except JpegError as e:
                bad.append(f"{frame_source(jpeg_store, record, i)}: corrupt JPEG ({e})")
                raise

    final = Path(store) / raw_location(split, record.video_id)
    header = {"video_id": record.video_id, "height": record.height, "width": record.width,
              "source": source_row(record)}
    try:
        with worker_lock(store):
            if parent is not None and os.getppid() != parent:  # the run was killed
                return Decoded(split, record, "the run was stopped", stop=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            write_raw_video(final, frames(), header)
    except JpegError:
        outcome.reason = bad[0] if bad else "corrupt JPEG"
    except OSError as e:
        outcome.reason, outcome.stop = write_error(final, e)
    return outcome


def check_space(store: Path, todo: list[tuple[str, VideoRecord]]) -> None:
    """Raise StoreError (one line, with the amounts) unless the files to write fit."""
    need = sum(video_bytes(r.kept_frames, r.height, r.width) for _, r in todo)
    free = shutil.disk_usage(store).free
    if need > free:
        raise StoreError(
            f"{store}: the decoded frames of {len(todo)} videos need about {size_text(need)} "
            f"free, {size_text(free)} are free; free space (or choose another --out) and run "
            "the same command again")


def size_text(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def build_decoded_store(jpeg_store: Path, store: Path, jobs: int = -1,
                        quiet: bool = False) -> Summary:
    """Build (or complete) the decoded store ``store`` from the JPEG store ``jpeg_store``."""
    start = time.monotonic()
    jpeg_store, store = Path(jpeg_store), Path(store)
    src = read_settings(jpeg_store)
    if src.format not in JPEG_FORMATS:
        raise StoreError(f"{jpeg_store}: a {src.format} store; decode from a JPEG store "
                         f"({' or '.join(JPEG_FORMATS)}, made by make frames)")
    if store.resolve() == jpeg_store.resolve():
        raise StoreError(f"{store}: --out is the JPEG store itself; choose another folder")
    with store_read_lock(jpeg_store):  # a make frames run into the JPEG store waits
        identity = read_store_identity(jpeg_store)
        if identity["dataset_check"]["record"] != RECORD_OK:
            raise StoreError(f"{jpeg_store}: the JPEG store's build is not complete (no "
                             "identity record for its index); run make frames on it first")
        settings = raw_settings(jpeg_store, src)
        check_store(store, settings)
        try:
            store.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{store}: cannot create the store ({e.strerror})") from None
        index = {split: read_index(jpeg_store, split) for split in SPLITS}
        summary = Summary(total=sum(len(rows) for rows in index.values()))
        with store_write_lock(store, quiet) as keep_workers_out:
            with stopping_cleanly(store, keep_workers_out, summary):
                prepare_store(store, settings)
                remove_partial(store)
                _build(jpeg_store, store, index, jobs, quiet, summary)
                _record_identity(jpeg_store, store, identity, summary)
    summary.seconds = time.monotonic() - start
    if not quiet:
        _print_summary(summary, store)
    return summary


def _build(jpeg_store: Path, store: Path, index: dict[str, list[VideoRecord]], jobs: int,
           quiet: bool, summary: Summary) -> None:
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm import tqdm

    done: dict[str, list[VideoRecord]] = {split: [] for split in index}
    todo = []
    for split, rows in index.items():
        for r in rows:
            if is_current(store / raw_location(split, r.video_id), r):
                done[split].append(r)
                summary.skipped += 1
            else:
                todo.append((split, r))
    check_space(store, todo)
    n_jobs = min(effective_n_jobs(jobs), max(len(todo), 1))
    parent = os.getpid() if n_jobs > 1 else None
    tasks = (delayed(decode_video)(jpeg_store, split, r, store, parent) for split, r in todo)
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
    bar = tqdm(results, total=len(todo), unit="video", desc=f"decode {store.name}",
               disable=quiet or not todo, smoothing=0.05)
    try:
        for outcome in bar:
            if outcome.stop:
                raise Stopped(outcome.reason)
            r = outcome.record
            if outcome.reason:
                summary.failed += 1
                summary.failures.append((outcome.split, r.video_id, outcome.reason))
                continue
            summary.done += 1
            summary.frames += r.kept_frames
            summary.bytes += video_bytes(r.kept_frames, r.height, r.width)
            done[outcome.split].append(r)
    finally:
        bar.close()
        results.close()  # on a stop: cancel what is queued, end the workers
    for split, rows in done.items():
        write_index(store, split, [replace(r, location=raw_location(split, r.video_id))
                                   for r in rows])
        # Files of videos the JPEG store no longer has (or that failed now): 409 KB a frame.
        indexed = {store / raw_location(split, r.video_id) for r in rows}
        for path in store.glob(f"{split}/*/*{RAW_SUFFIX}"):
            if path not in indexed:
                path.unlink(missing_ok=True)
    write_failures(store, _source_failures(jpeg_store) + summary.failures)


def _source_failures(jpeg_store: Path) -> list[tuple[str, str, str]]:
    """The JPEG store's failures.csv rows: those videos are missing here too."""
    path = Path(jpeg_store) / FAILURES_FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return [(row["split"], row["video"], row["reason"]) for row in csv.DictReader(f)]


def _record_identity(jpeg_store: Path, store: Path, source: dict, summary: Summary) -> None:
    """The JPEG store's identity record, with this store's own counts and fingerprint (the
    same as the JPEG store's when every video was decoded) and where it came from."""
    settings = read_settings(store)
    recorded = read_settings(jpeg_store).identity
    index = {split: read_index(store, split) for split in SPLITS}
    new_failed = {split: sum(1 for s, _, _ in summary.failures if s == split) for split in SPLITS}
    splits = {split: {"videos": len(rows), "kept_frames": sum(r.kept_frames for r in rows),
                      "failed": recorded.get("splits", {}).get(split, {}).get("failed", 0)
                      + new_failed[split]} for split, rows in index.items()}
    identity = {
        **recorded,
        "fingerprint": store_fingerprint(store),
        "splits": splits,
        "failed_videos": recorded.get("failed_videos", 0) + len(summary.failures),
        "decoded_from": {"path": source["path"], "format": source["format"],
                         "fingerprint": source["fingerprint"]},
    }
    write_settings(store, replace(settings, identity=identity))


def _print_summary(s: Summary, store: Path) -> None:
    print(f"{store}: {s.done} videos decoded, {s.skipped} skipped (already complete), "
          f"{s.failed} failed; {s.frames} frames, {size_text(s.bytes)} in {s.seconds:.1f} s")
    print_failures(s, store)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datasets.decoded_store",
                                description="decode a JPEG store into a decoded-frame store "
                                "(raw): same clips, no JPEG decoding while training")
    p.add_argument("--jpeg-store", type=Path, required=True,
                   help="the JPEG frame store (jpg or hdf5) to decode")
    p.add_argument("--out", type=Path, required=True, help="decoded-frame store folder")
    p.add_argument("--jobs", type=int, default=-1, help="parallel processes (-1: all cores)")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any video fails")
    args = p.parse_args(argv)

    def work() -> int:
        summary = build_decoded_store(args.jpeg_store, args.out, jobs=args.jobs)
        return 1 if args.strict and summary.failed else 0

    return guarded(work, (StoreError,))


if __name__ == "__main__":
    run_main(main)
