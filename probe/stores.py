"""Both store formats in the probe: a JPEG store (jpg or hdf5) and the decoded store made
from it (raw, ``make frames FORMAT=raw``). The probe measures the supply of each that is
present, sets each store's size against this machine's memory (a decoded store larger than
memory is read from disk again every epoch), and says which keeps the GPUs fed."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from formats.raw import video_bytes
from formats.store import META_FILE, StoreError, read_index, read_settings
from preprocess.kinetics import SPLITS
from probe.predict import Plan, Rates, predict


def companion(store: Path) -> Path | None:
    """The store of the other format holding the same frames: a decoded store's JPEG store
    (recorded when it was decoded), or the decoded store made from a JPEG store (named as
    ``make frames FORMAT=raw`` names it: ``<dataset>_raw`` beside ``<dataset>_jpg``)."""
    try:
        settings = read_settings(store)
    except StoreError:
        return None
    if settings.format == "raw":
        source = Path(settings.extra.get("decoded_from", ""))
        return source if (source / "store.json").is_file() else None
    stem = Path(store).name.rsplit("_", 1)[0]
    other = Path(store).parent / f"{stem}_raw"
    try:
        decoded = read_settings(other)
    except StoreError:
        return None
    made_from = decoded.extra.get("decoded_from")
    return other if made_from == str(Path(store).resolve()) else None


def frame_bytes(store: Path) -> int:
    """Bytes of a store's frames: from its index for a decoded store, its HDF5 files, or the
    JPEG bytes each video folder's meta.json records."""
    settings = read_settings(store)
    records = [(split, r) for split in SPLITS for r in read_index(store, split)]
    if settings.format == "raw":
        return sum(video_bytes(r.kept_frames, r.height, r.width) for _, r in records)
    if settings.format == "hdf5":
        return sum((Path(store) / f"{split}.h5").stat().st_size for split in SPLITS)
    total = 0
    for _, r in records:
        try:
            meta = json.loads((Path(store) / r.location / META_FILE).read_text())
            total += int(meta.get("jpeg_bytes", 0))
        except (OSError, ValueError):
            continue
    return total


def decoded_bytes(store: Path) -> int:
    """Bytes a decoded store of ``store``'s frames takes (or would take)."""
    return sum(video_bytes(r.kept_frames, r.height, r.width)
               for split in SPLITS for r in read_index(store, split))


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def format_entry(store: Path, loader: float | None, rates: Rates, plan: Plan) -> dict:
    """One format's store, size, supply and verdict for one model."""
    fmt = read_settings(store).format
    p = predict(replace(rates, loader=loader), plan)
    return {"store": str(store), "format": fmt, "bytes": frame_bytes(store),
            "supply": p.supply, "bound": p.bound, "margin": p.margin,
            "min_workers": p.min_workers, "cores_needed": p.cores_needed}


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _side(entry: dict, plan: dict, memory: int | None) -> str:
    name = "decoded store" if entry["format"] == "raw" else "JPEG store"
    at = f"at {plan['gpus']} processes x {plan['workers']} workers"
    if entry["bound"] == "data":
        text = f"{name}: data-bound {at} ({entry['supply']:.0f} clips/s"
        text += (f"; WORKERS={entry['min_workers']} would do)" if entry["min_workers"]
                 else f"; it would take about {entry['cores_needed']} cores)")
    else:
        text = f"{name}: {entry['bound']}-bound {at} ({entry['supply']:.0f} clips/s)"
    if entry["format"] == "raw":
        text += f", needs {_gb(entry['bytes'])}"
        if memory:
            text += f", {_gb(memory)} of memory here"
            if entry["bytes"] > memory:
                text += " (larger: read from disk every epoch, at the disk's speed)"
    return text


def formats_line(m: dict, memory: int | None) -> str | None:
    """``<model>: JPEG store: ...; decoded store: ...; <which keeps the GPUs fed>``."""
    entries = m.get("formats") or []
    if not entries:
        return None
    parts = [_side(e, m["plan"], memory) for e in entries]
    if len(entries) == 1 and entries[0]["format"] != "raw":
        parts.append(f"decoded store: not built (make frames FORMAT=raw; it would need "
                     f"{_gb(m['decoded_bytes'])}" + (f", {_gb(memory)} of memory here)"
                                                    if memory else ")"))
    fed = [e for e in entries if e["bound"] != "data"]
    side = "the GPUs" if m["device"] == "cuda" else "the CPU"
    if len(entries) == 1:
        verdict = f"it {'keeps' if fed else 'does not keep'} {side} fed"
    elif not fed:
        verdict = f"neither store keeps {side} fed with these settings"
    elif len(fed) == len(entries):
        verdict = f"either store keeps {side} fed"
    else:
        name = "the decoded store" if fed[0]["format"] == "raw" else "the JPEG store"
        verdict = f"{name} keeps {side} fed"
    return f"{m['name']}: " + "; ".join(parts) + f"; {verdict}"
