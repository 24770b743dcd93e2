"""The decoded-frame store (raw) against the JPEG store it was decoded from, side by side in
one run: clips/s of one loader process, through the training DataLoader (batch 16, 1 and 2
workers, wall clock, pinned memory where there is a GPU), the training process's own share
of that (receiving batches, pinning, copying to the device), and a cold page cache.

    .venv/bin/python -m perf.decoded_store [--quick] [--data DIR] [--work DIR]

The videos are 6 panned photographs of 10 s, 30 fps, 480x360 (perf/textured_videos.py), so
the store's 426x320 JPEGs at quality 90 are 35-60 KB as Kinetics frames are, not flat
synthetic ones; made once, then ``preprocess frames`` and ``datasets.decoded_store`` (under
``--work``). Every number is for the same training keys (epoch, index) with the workload's
train transform.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import formats.raw
from datasets import ClipDataset, TrainTransform, make_loader
from datasets.loader import init_worker
from formats.store import StoreError, read_index
from perf.textured_videos import make_videos

DEFAULT_DATA = Path("data/bench/pan_videos")
BATCH = 16


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise StoreError(f"command failed: {' '.join(cmd)}")


def prepare(data: Path, work: Path) -> dict[str, Path]:
    """The JPEG store of ``data`` and its decoded store, built under ``work`` if missing."""
    if not (data / "train").is_dir():
        print(f"+ making the videos in {data} (perf/textured_videos.py)", flush=True)
        make_videos(data)
    jpg, raw = work / f"{data.name}_jpg", work / f"{data.name}_raw"
    if not (jpg / "train_index.csv").is_file():
        run([sys.executable, "-m", "preprocess", "frames", "--data", str(data), "--out",
             str(jpg)])
    if not (raw / "train_index.csv").is_file():
        run([sys.executable, "-m", "datasets.decoded_store", "--jpeg-store", str(jpg), "--out",
             str(raw)])
    return {"JPEG": jpg, "decoded": raw}


def files(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file() and p.suffix in (".jpg", ".rgb")]


def store_line(name: str, store: Path) -> str:
    paths = files(store)
    sizes = np.array([p.stat().st_size for p in paths])
    frames = sum(r.kept_frames for split in ("train", "val") for r in read_index(store, split))
    line = f"{name} store {store}: {sizes.sum() / 1e6:.0f} MB for {frames} frames"
    if name == "JPEG":
        line += (f", JPEGs {sizes.mean() / 1e3:.0f} KB on average "
                 f"({np.percentile(sizes, 5) / 1e3:.0f}-{np.percentile(sizes, 95) / 1e3:.0f} KB, "
                 "5th-95th percentile)")
    return line + f" ({sizes.sum() / frames / 1e3:.0f} KB per frame)"


def per_process(sets: dict[str, ClipDataset], keys: list, rounds: int) -> dict[str, float]:
    """Clips/s of one process (CPU time), each store's best round; rounds interleaved."""
    best = {name: float("inf") for name in sets}
    for _ in range(rounds):
        for name, ds in sets.items():
            start = time.process_time()
            for key in keys:
                ds[key]
            best[name] = min(best[name], time.process_time() - start)
    return {name: len(keys) / s for name, s in best.items()}


def evict(store: Path) -> None:
    """Drop the store's files from the page cache (this store's pages only, not the
    machine's: the machine is shared)."""
    formats.raw.forget_maps()  # mapped pages are not dropped
    gc.collect()
    for path in files(store):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cold(ds: ClipDataset, keys: list) -> float:
    """Clips/s (wall clock) of one process reading the store from disk."""
    evict(ds.store)
    start = time.perf_counter()
    for key in keys:
        ds[key]
    return len(keys) / (time.perf_counter() - start)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_loader(ds: ClipDataset, workers: int,
                   seconds: float) -> tuple[float, float, float]:
    """(clips/s, clips/s per core of the workers' CPU time, training process's CPU ms per
    batch) of the training DataLoader, in steady state (the batches made ahead while the
    workers start are skipped). Where there is a GPU each batch is also copied to it and
    normalised, as the training process does."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader, sampler = make_loader(ds, BATCH, workers, shuffle=True, seed=0)
    skip = max(workers, 1) * 3
    seen, clips, epoch = 0, 0, 0
    start = cpu = None
    pids: list[int] = []
    try:
        while True:
            sampler.set_epoch(epoch)
            for batch, _, _ in loader:
                if device.type == "cuda":
                    ds.transform.normalize(batch.to(device, non_blocking=True))
                    torch.cuda.synchronize(device)
                seen += 1
                if seen == skip:
                    pids = [w.pid for w in loader._iterator._workers]
                    workers_cpu = sum(cpu_seconds(p) for p in pids)
                    start, cpu = time.perf_counter(), time.process_time()
                elif start is not None:
                    clips += len(batch)
                    elapsed = time.perf_counter() - start
                    if elapsed >= seconds and seen - skip >= 4:
                        cpu_ms = (time.process_time() - cpu) / (seen - skip) * 1e3
                        worked = sum(cpu_seconds(p) for p in pids) - workers_cpu
                        return clips / elapsed, clips / max(worked, 1e-9), cpu_ms
            epoch += 1
    finally:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.decoded_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("data/bench"))
    parser.add_argument("--clips", type=int, default=48, help="train clips per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="per DataLoader figure")
    parser.add_argument("--quick", action="store_true", help="16 clips, 2 rounds, 2 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.rounds, args.seconds = 16, 2, 2.0
    try:
        stores = prepare(args.data, args.work)
        sets = {name: ClipDataset(s, "train", TrainTransform()) for name, s in stores.items()}
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, store in stores.items():
        print(store_line(name, store))
    rng = np.random.default_rng(0)
    n = len(sets["JPEG"])
    keys = [(int(rng.integers(0, 100)), int(rng.integers(0, n))) for _ in range(args.clips)]
    print(f"machine: {os.cpu_count()} cores, load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg())
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else
             ", no GPU (no pinned memory, no copy to a device)"))

    torch.set_num_threads(1)  # as in a loader worker
    init_worker(0)
    one = per_process(sets, keys, args.rounds)
    rows = [("one loader process (CPU time, warm cache)", one)]
    cold_rates = {name: cold(ds, keys[: max(8, len(keys) // 3)]) for name, ds in sets.items()}
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    shares = {}
    for workers in (1, 2):
        rates, per_core = {}, {}
        for name, ds in sets.items():
            rates[name], per_core[name], shares[(name, workers)] = through_loader(
                ds, workers, args.seconds)
        rows.append((f"DataLoader, {workers} worker(s), batch {BATCH} (wall clock)", rates))
        rows.append((f"DataLoader, {workers} worker(s): per core of the workers' CPU time",
                     per_core))
    rows.append(("one process, cold page cache (wall clock)", cold_rates))

    print(f"\n{len(keys)} train clips of 16 frames, 224x224 crops; DataLoader as in training "
          f"(persistent workers, pinned memory where there is a GPU)")
    print("| clips/s | JPEG store | decoded store | decoded / JPEG |")
    print("|---|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['JPEG']:.1f} | {r['decoded']:.1f} | "
              f"{r['decoded'] / r['JPEG']:.2f}x |")
    print("\nThe training process's own CPU time per batch of 16 (receiving it from the "
          "workers" + (", pinning, copy to the GPU and normalising" if torch.cuda.is_available()
                       else "") + "), and the clips/s at which it would be the bound:")
    print("| store, workers | ms per batch | clips/s it can take in |")
    print("|---|---:|---:|")
    for (name, workers), ms in shares.items():
        print(f"| {name}, {workers} | {ms:.2f} | {BATCH / ms * 1e3:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
