"""A frame store's identity: what it holds, how it was made, and whether it is the benchmark's.

At the end of every ``make frames`` the builder calls ``record_identity``, which checks the
dataset folder against the manifest (preprocess.dataset_check, differences in
``<store>/dataset_check.csv``) and records in store.json, under ``identity``:

    fingerprint      sha256 over the store's settings and its index rows (see below)
    splits           per split: videos, kept_frames, failed (videos that could not be used)
    failed_videos    failed videos in all
    dataset_check    the check's result (matches_kinetics20, missing, extra, expected, ...)

A rerun of ``make frames`` rewrites store.json without it first, so a store being (re)built
has no identity until it is complete.

The fingerprint covers the settings that shape the frames (short side, JPEG quality, fps,
classes) and, per split, every index row except its ``location``: video id, label, kept
frames, size, source frame count and rate. It reads only store.json and the index files, so
it is cheap enough to recompute on every resume, and a jpg store and an hdf5 store built from
the same videos (byte-identical JPEG files) have the same fingerprint, as has a decoded store
(raw, datasets/decoded_store.py) made from either: same rows, same pixels. It does not hash the
frame bytes: ``make verify`` decodes every frame instead (docs/RELIABILITY.md has the
measurement of what hashing them would cost).

The trainer reads ``read_store_identity`` (the run.json ``store`` keys of formats.results,
without ``clips``) and ``store_compliance_issues``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

from formats.store import StoreSettings, read_index, read_settings, write_settings
from preprocess.dataset_check import CHECK_FILE, run_check, verdict
from preprocess.kinetics import SPLITS

IDENTITY_VERSION = 1
# The workload's store (WORKLOAD.md, "Clips"): short side at most 320, JPEG quality 90 (and
# 15 fps, which the builder always uses).
WORKLOAD_STORE = {"short_side": 320, "jpeg_quality": 90}

# dataset_check["record"] in read_store_identity: whether store.json's record can be trusted.
RECORD_OK = "ok"
RECORD_MISSING = "missing"  # built by an older version, or a build that did not finish
RECORD_STALE = "stale"  # the index no longer has the recorded fingerprint


def _fingerprint(settings: StoreSettings, splits: dict[str, list]) -> str:
    h = hashlib.sha256()
    shaping = {"short_side": settings.short_side, "jpeg_quality": settings.jpeg_quality,
               "fps": settings.fps, "classes": list(settings.classes)}
    h.update(json.dumps(shaping, sort_keys=True).encode("utf-8") + b"\n")
    for split in sorted(splits):
        for r in sorted(splits[split], key=lambda r: r.video_id):
            row = (split, r.video_id, r.label, r.kept_frames, r.width, r.height,
                   r.source_frames, repr(r.source_fps))
            h.update("\t".join(map(str, row)).encode("utf-8", "surrogateescape") + b"\n")
    return "sha256:" + h.hexdigest()


def store_fingerprint(store: Path) -> str:
    """The fingerprint of the store's content as it is now (store.json and index files only)."""
    return _fingerprint(read_settings(store), {s: read_index(store, s) for s in SPLITS})


def record_identity(store: Path, data: Path, failures: list[tuple[str, str, str]],
                    quiet: bool = False) -> dict:
    """Check ``data`` against the manifest and record the store's identity in store.json.

    ``failures``: the build's (split, path, reason) list of videos that could not be used."""
    store = Path(store)
    check = run_check(data, store / CHECK_FILE, quiet=quiet)
    settings = read_settings(store)
    index = {s: read_index(store, s) for s in SPLITS}
    failed = Counter(split for split, _, _ in failures)
    identity = {
        "version": IDENTITY_VERSION,
        "fingerprint": _fingerprint(settings, index),
        "splits": {s: {"videos": len(rows), "kept_frames": sum(r.kept_frames for r in rows),
                       "failed": failed[s]} for s, rows in index.items()},
        "failed_videos": len(failures),
        "dataset_check": check.record(),
    }
    write_settings(store, replace(settings, identity=identity))
    return identity


def read_store_identity(store: Path) -> dict:
    """What a run records of the store it read: formats.results.STORE_KEYS except ``clips``.

    ``videos`` and ``fingerprint`` come from the index as it is now; the failed videos and
    the dataset check from store.json's record, which is trusted only while the index still
    has the recorded fingerprint (``dataset_check["record"]`` says so: ok, missing, stale).
    Raises StoreError (one line) if the store cannot be read."""
    store = Path(store)
    settings = read_settings(store)
    index = {s: read_index(store, s) for s in SPLITS}
    fingerprint = _fingerprint(settings, index)
    recorded = settings.identity or {}
    if not recorded:
        state, check, failed = RECORD_MISSING, {}, None
    elif recorded.get("fingerprint") != fingerprint:
        state, check, failed = RECORD_STALE, {}, None
    else:
        state, check = RECORD_OK, dict(recorded.get("dataset_check") or {})
        failed = recorded.get("failed_videos")
    return {
        "path": str(store.resolve()),
        "format": settings.format,
        "short_side": settings.short_side,
        "jpeg_quality": settings.jpeg_quality,
        "fingerprint": fingerprint,
        "videos": {s: len(rows) for s, rows in index.items()},
        "failed_videos": failed,
        "dataset_matches_kinetics20": check.get("matches_kinetics20") if check else None,
        "dataset_check": {"record": state, **check},
    }


def store_compliance_issues(identity: dict) -> list[str]:
    """One-line reasons why a run on this store is not a compliant run (empty if it is)."""
    issues = []
    wrong = [f"{k} {identity.get(k)}" for k, v in WORKLOAD_STORE.items() if identity.get(k) != v]
    if wrong:
        issues.append(f"store settings differ: {', '.join(wrong)} (the workload's: short_side "
                      f"{WORKLOAD_STORE['short_side']}, jpeg_quality "
                      f"{WORKLOAD_STORE['jpeg_quality']})")
    check = identity.get("dataset_check")
    check = check if isinstance(check, dict) else {}  # (a record read back from a run.json)
    state = check.get("record", RECORD_MISSING)
    if state == RECORD_MISSING:
        issues.append("store has no identity record (built by an older version, or its build "
                      "did not finish); rebuild with make frames")
    elif state == RECORD_STALE:
        issues.append("store changed since its identity was recorded (its index has another "
                      "fingerprint); rebuild with make frames")
    else:
        if not check.get("matches_kinetics20"):
            issues.append(f"dataset {verdict(check)}")
        elif _held(identity) != check.get("expected"):
            # The check says the dataset matched; the store's own counts must say so too.
            issues.append(f"store holds {_counts(identity.get('videos'))} videos and "
                          f"{identity.get('failed_videos') or 0} failed, its dataset check "
                          f"expected {check.get('expected')}")
        if identity.get("failed_videos"):
            issues.append(f"{identity['failed_videos']} videos failed in the store "
                          "(see its failures.csv)")
    return issues


def _held(identity: dict) -> int | None:
    """Videos the store indexes plus those that failed (None: unreadable counts)."""
    videos = identity.get("videos")
    if not isinstance(videos, dict) or not all(isinstance(v, int) for v in videos.values()):
        return None
    failed = identity.get("failed_videos") or 0
    return sum(videos.values()) + failed if isinstance(failed, int) else None


def _counts(videos: object) -> str:
    if not isinstance(videos, dict):
        return "unrecorded"
    return " + ".join(f"{v} {k}" for k, v in sorted(videos.items(), key=lambda kv: str(kv[0])))
