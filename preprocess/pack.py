"""HDF5 format: one ``<split>.h5`` per split, packed from the per-video staging folders.

Each video is a contiguous 1-D uint8 dataset ``videos/<class>/<stem>`` holding its JPEG files
back to back, with attributes ``offsets`` (kept_frames + 1 byte offsets) and ``meta`` (the
video's meta.json). The file is written under a temporary name and renamed, and is never
modified afterwards, so any number of DataLoader worker processes can read it at once.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np

from formats.files import sync_folder
from formats.store import StoreError, frame_name, video_dir

GROUP = "videos"


def h5_path(store: Path, split: str) -> Path:
    return Path(store) / f"{split}.h5"


def h5_location(split: str, video_id: str) -> str:
    """``VideoRecord.location`` of a packed video."""
    return f"{split}.h5:{GROUP}/{video_id}"


def packed_meta(store: Path, split: str) -> dict[str, dict]:
    """meta of every video already packed in ``<split>.h5`` (empty if there is no file)."""
    import h5py

    path = h5_path(store, split)
    if not path.is_file():
        return {}
    found: dict[str, dict] = {}
    try:
        with h5py.File(path, "r") as f:
            for class_name, group in f.get(GROUP, {}).items():
                for stem, ds in group.items():
                    found[f"{class_name}/{stem}"] = json.loads(ds.attrs["meta"])
    except (OSError, KeyError, ValueError):
        return {}  # unreadable: everything is redone
    return found


def space_needed(metas: dict[str, dict]) -> int:
    """Bytes the new ``<split>.h5`` may take: the frames, their offsets and meta, and a
    generous allowance for HDF5's own structures (measured: under 2 KB per video)."""
    return sum(m.get("jpeg_bytes", 0) + 8 * (m.get("kept_frames", 0) + 1)
               + len(json.dumps(m)) + 4096 for m in metas.values()) + (1 << 20)


def check_space(store: Path, split: str, metas: dict[str, dict]) -> None:
    """Raise StoreError (one line, with the amounts) unless the new file fits: it is written
    while the old file and the staged folders are still there."""
    need, free = space_needed(metas), shutil.disk_usage(store).free
    if free < need:
        raise StoreError(
            f"{h5_path(store, split)}: packing needs about {need / 1e6:.1f} MB free for the new "
            f"file (the old file and the staged videos stay until it is complete), "
            f"{free / 1e6:.1f} MB are free; free space and run the same command again")


def pack_split(store: Path, split: str, metas: dict[str, dict], staged: set[str]) -> int:
    """Write ``<split>.h5`` holding every video of ``metas``: those in ``staged`` from their
    staging folders, the others copied from the previous file. Returns the file size.
    Checks the free space first; a failed write leaves no temporary file."""
    import h5py

    check_space(store, split, metas)
    final = h5_path(store, split)
    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    old = h5py.File(final, "r") if final.is_file() and len(staged) < len(metas) else None
    try:
        with h5py.File(tmp, "w") as out:
            for video_id in sorted(metas):
                meta = metas[video_id]
                if video_id in staged:
                    folder = video_dir(store, "hdf5", split, video_id)
                    jpegs = [(folder / frame_name(i)).read_bytes()
                             for i in range(meta["kept_frames"])]
                    offsets = np.cumsum([0] + [len(j) for j in jpegs], dtype=np.int64)
                    blob = np.frombuffer(b"".join(jpegs), np.uint8)
                else:
                    ds_old = old[f"{GROUP}/{video_id}"]
                    offsets, blob = ds_old.attrs["offsets"], ds_old[()]
                ds = out.create_dataset(f"{GROUP}/{video_id}", data=blob)
                ds.attrs["offsets"] = offsets
                ds.attrs["meta"] = json.dumps(meta)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno is None and "No space left" in str(e):  # HDF5's own error, errno in text
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if old is not None:
            old.close()
    sync_folder(final.parent)
    parts = Path(store) / ".parts"
    shutil.rmtree(parts / split, ignore_errors=True)
    if parts.is_dir() and not any(parts.iterdir()):
        parts.rmdir()
    return final.stat().st_size
