"""Check a frame store against its index (``python -m preprocess verify``): every indexed
frame is present and decodes to the recorded size, frame counts match, labels match the
classes of store.json, and the index still has the fingerprint recorded in store.json when the
store was built. Problems are reported with the file they concern. It also runs the dataset
check again on the folder the store was built from and says whether that folder is (still)
the benchmark's Kinetics-20. In a decoded store (raw) every file's size and header are
checked against the index and its pixels against the sha256 of its header, and it says
whether the JPEG store it was decoded from is still the same."""

from __future__ import annotations

import sys
from pathlib import Path

import simplejpeg

from formats.raw import check_file, is_raw, pixels_sha256
from formats.store import (
    SETTINGS_FILE,
    StoreError,
    StoreSettings,
    VideoRecord,
    frame_name,
    read_index,
    read_settings,
)
from preprocess import pack
from preprocess.dataset_check import check_dataset, verdict
from preprocess.frame_bytes import is_packed, read_frame_bytes
from preprocess.identity import store_fingerprint
from preprocess.kinetics import SPLITS


def check_video(store: Path, record: VideoRecord, classes: tuple[str, ...]) -> list[str]:
    """Problems of one video, as ``<file>: <problem>`` lines."""
    problems = []
    where = Path(store) / record.location
    if record.class_name not in classes or classes.index(record.class_name) != record.label:
        problems.append(f"{where}: label {record.label} does not match class "
                        f"{record.class_name!r} of store.json")
    if record.video_id.split("/", 1)[0] != record.class_name:
        problems.append(f"{where}: video {record.video_id} is listed under class "
                        f"{record.class_name!r}")
    if is_raw(record):
        return problems + _check_raw(store, record)
    if is_packed(record):
        problems += _check_packed(store, record)
    else:
        on_disk = sum(1 for p in where.glob("image_*.jpg"))
        if on_disk != record.kept_frames:
            problems.append(f"{where}: {on_disk} frame files, index says {record.kept_frames}")
    for i in range(record.kept_frames):
        try:
            data = read_frame_bytes(store, record, [i])[0]
        except StoreError as e:
            problems.append(str(e))
            continue
        try:
            header = simplejpeg.decode_jpeg_header(data)
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")
        except (ValueError, RuntimeError) as e:
            problems.append(f"{where / frame_name(i)}: not a decodable JPEG ({e})")
            continue
        if pixels.shape != (record.height, record.width, 3) or header[:2] != pixels.shape[:2]:
            problems.append(f"{where / frame_name(i)}: {pixels.shape[1]}x{pixels.shape[0]} "
                            f"pixels, index says {record.width}x{record.height}")
    return problems


def _check_raw(store: Path, record: VideoRecord) -> list[str]:
    """A decoded video's file: size and header as the index says, pixels as hashed."""
    path = Path(store) / record.location
    try:
        header = check_file(path, record)
        if pixels_sha256(path) != header.get("sha256"):
            return [f"{path}: pixels differ from the checksum written with them (damaged); "
                    "rebuild it with make frames FORMAT=raw"]
    except StoreError as e:
        return [str(e)]
    except OSError as e:
        return [f"{path}: unreadable ({e.strerror})"]
    return []


def _check_packed(store: Path, record: VideoRecord) -> list[str]:
    import h5py

    file_name, dataset = record.location.split(":", 1)
    path = Path(store) / file_name
    try:
        with h5py.File(path, "r") as f:
            ds = f[dataset]
            offsets = ds.attrs["offsets"]
            if len(offsets) != record.kept_frames + 1 or offsets[-1] != ds.shape[0]:
                return [f"{path}:{dataset}: {len(offsets) - 1} frames of {ds.shape[0]} bytes, "
                        f"index says {record.kept_frames} frames"]
    except (OSError, KeyError) as e:
        return [f"{path}:{dataset}: unreadable ({e})"]
    return []


def _check_many(store: Path, records: list[VideoRecord], classes: tuple[str, ...]) -> list:
    return [p for r in records for p in check_video(store, r, classes)]


def check_identity(store: Path, settings: StoreSettings) -> tuple[list[str], list[str]]:
    """Problems and notes about the store's identity record and its dataset folder."""
    recorded = settings.identity
    if not recorded:
        return [], [f"{Path(store) / SETTINGS_FILE}: no identity record (built by an older "
                    "version, or the build did not finish); run make frames to record one"]
    problems, notes = [], []
    now = store_fingerprint(store)
    decoded_from = recorded.get("decoded_from")
    if decoded_from:
        notes.append(_source_note(decoded_from))
    if recorded.get("fingerprint") != now:
        problems.append(f"{Path(store) / SETTINGS_FILE}: recorded fingerprint "
                        f"{recorded.get('fingerprint')}, the index gives {now}: the store "
                        "changed since it was built; run make frames again")
    check = recorded.get("dataset_check") or {}
    if check:
        notes.append(f"dataset when built: {settings.source}: {verdict(check)}; "
                     f"{recorded.get('failed_videos', 0)} videos failed")
    source = Path(settings.source)
    if not source.is_dir():
        notes.append(f"{source}: the dataset folder is gone; the dataset check was not redone")
    elif check:
        try:
            current = check_dataset(source).record()
        except OSError as e:
            return problems, notes + [f"{source}: cannot list the dataset folder ({e})"]
        same = all(current[k] == check.get(k)
                   for k in ("matches_kinetics20", "missing", "extra", "manifest_sha256"))
        notes.append(f"dataset now: {source}: {verdict(current)}" + (
            "" if same else "; it changed since the store was built: run make frames"))
    return problems, notes


def _source_note(decoded_from: dict) -> str:
    """Whether the JPEG store a decoded store was made from is still the same."""
    jpeg_store = Path(decoded_from.get("path", ""))
    head = f"decoded from the JPEG store {jpeg_store}"
    try:
        now = store_fingerprint(jpeg_store)
    except StoreError:
        return f"{head}: not readable there now"
    if now != decoded_from.get("fingerprint"):
        return f"{head}: it changed since (fingerprint {now}); run make frames FORMAT=raw"
    return f"{head}: unchanged (same fingerprint)"


def verify_store(store: Path, jobs: int = -1, quiet: bool = False) -> list[str]:
    """All problems of the store (empty if it is sound); prints them and a summary line."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    settings = read_settings(store)
    problems: list[str] = []
    records: list[VideoRecord] = []
    for split in SPLITS:
        split_records = read_index(store, split)
        if settings.format == "hdf5" and not pack.h5_path(store, split).is_file():
            problems.append(f"{pack.h5_path(store, split)}: missing")
            continue
        records += split_records
    batches = [records[i : i + 8] for i in range(0, len(records), 8)]
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(_check_many)(store, batch, settings.classes) for batch in batches
    )
    bar = tqdm(total=len(records), unit="video", desc=f"verify {Path(store).name}",
               disable=quiet)
    for batch_problems in results:
        problems += batch_problems
        bar.update(8)
    bar.close()
    frames = sum(r.kept_frames for r in records)
    identity_problems, notes = check_identity(store, settings)
    problems += identity_problems
    if not quiet:
        for note in notes:
            print(f"note: {note}")
        for p in problems[:50]:
            print(f"problem: {p}", file=sys.stderr)
        if len(problems) > 50:
            print(f"... and {len(problems) - 50} more problems", file=sys.stderr)
        verdict = f"{len(problems)} problems" if problems else "OK"
        print(f"{store}: {len(records)} videos, {frames} frames checked: {verdict}")
    return problems
