"""Shared by the trainer tests: a tiny frame store written with the store's own writers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import simplejpeg
import torch

from formats.store import (
    StoreSettings,
    VideoRecord,
    video_dir,
    write_index,
    write_settings,
    write_video_dir,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "test_tiny.yaml"
CLASSES = ("abseiling", "bending_back", "bungee_jumping")
HEIGHT, WIDTH = 40, 48
# Kept frames per video (4-frame clips): train 3 classes x 2 videos x 2 clips = 12 clips;
# val 2 + 3 + 2 = 7 clips, a count that 2 processes cannot split evenly.
TRAIN_FRAMES = {0: (8, 9), 1: (8, 11), 2: (9, 8)}
VAL_FRAMES = {0: (9,), 1: (13,), 2: (8,)}
VAL_CLIPS = 7


def _frame(label: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy frame with a class-specific bright bar, moving with time."""
    img = rng.integers(0, 80, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    x = (4 + 12 * label + t) % (WIDTH - 8)
    img[:, x : x + 8, label] = 250
    return img


def build_tiny_store(store: Path) -> Path:
    """A 3-class jpg store at 15 fps, frames 48x40, a few videos per split."""
    rng = np.random.default_rng(0)
    store.mkdir(parents=True, exist_ok=True)
    for split, frames in (("train", TRAIN_FRAMES), ("val", VAL_FRAMES)):
        records = []
        for label, lengths in frames.items():
            cls = CLASSES[label]
            for v, n in enumerate(lengths):
                video_id = f"{cls}/{split}_{cls}_{v:02d}"
                jpegs = [simplejpeg.encode_jpeg(_frame(label, t, rng), quality=90)
                         for t in range(n)]
                write_video_dir(video_dir(store, "jpg", split, video_id), jpegs, {"frames": n})
                records.append(VideoRecord(video_id, cls, label, n, 15.0, n, WIDTH, HEIGHT,
                                           f"{split}/{video_id}"))
        write_index(store, split, records)
    write_settings(store, StoreSettings("jpg", HEIGHT, 90, 15, CLASSES, source="tests"))
    return store


# One compute thread per training process: on a small, shared CPU, OpenMP threads of several
# processes contend and a step can take ten times longer (torchrun sets the same by default).
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@contextmanager
def one_thread():
    """Run in-process training with one compute thread, then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_cli(*args: str, torchrun: int = 0, timeout: float = 240.0,
              **kwargs) -> subprocess.CompletedProcess:
    """Run the trainer as the Makefile does (through torchrun with ``torchrun`` processes) or
    as a plain process (``torchrun=0``)."""
    if torchrun:
        launcher = [*TORCHRUN, "--standalone",
                    f"--nproc-per-node={torchrun}"]
    else:
        launcher = [sys.executable]
    kwargs.setdefault("env", ONE_THREAD_ENV)
    return subprocess.run([*launcher, "-m", "train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


TORCHRUN = (sys.executable, "-m", "train.torchrun")  # torchrun as the Makefile runs it


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a rendezvous or a process group that a launch
    binds a moment later. It is taken below the kernel's ephemeral range, which the kernel
    never hands to another program's connection in between (a port picked by binding port
    0 is in that range, and was once taken that way), and from a band of this pytest-xdist
    worker's own, so two test processes never choose the same one."""
    import random
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    band, first = 1000, 10000
    bands = max(1, (low - first) // band)
    start = first + band * ((int(worker) if worker.isdigit() else 0) % bands)
    ports = list(range(start, start + band))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + band - 1}")


@contextmanager
def agent_store(host: str = "127.0.0.1") -> Iterator[dict[str, str]]:
    """The store of one process group, served by this process as torchrun's agent serves its
    workers' store: yields the environment that points the group's processes at it. The
    store binds a free port itself, so no other program can take the port between its choice
    and its use (as it could while rank 0 starts up to bind a port chosen for it)."""
    from torch.distributed import TCPStore

    store = TCPStore(host, 0, is_master=True, wait_for_workers=False)
    try:
        yield {"MASTER_ADDR": host, "MASTER_PORT": str(store.port),
               "TORCHELASTIC_USE_AGENT_STORE": "True"}
    finally:
        del store


def multinode_cmd(nodes: int, per_node: int, node_rank: int, port: int, *args: str,
                  run_id: str = "tiny") -> list[str]:
    """One node's torchrun launcher of the README's multi-node launch (c10d rendezvous on
    127.0.0.1:``port``), running ``python -m train *args``."""
    return [*TORCHRUN, f"--nnodes={nodes}", f"--nproc-per-node={per_node}",
            f"--node-rank={node_rank}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={run_id}", "-m", "train", *args]


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (torchrun starts its workers in sessions of
    their own, so killing its process group would leave them running)."""
    import signal

    from tests.helpers.faults import children

    pids, i = [pid], 0
    while i < len(pids):
        pids += children(pids[i])
        i += 1
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` (e.g. "400k") mounted at ``path`` (created), unmounted afterwards:
    a small disk or /dev/shm for the tests (needs root, as here and in CI)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
