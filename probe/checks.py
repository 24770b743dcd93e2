"""Pre-flight checks: one line each, with what to do when something is not in place."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from datasets.loader import POOL_EXTRA
from formats.store import SETTINGS_FILE, StoreError, read_settings
from preprocess.identity import read_store_identity, store_compliance_issues
from train.device import DeviceError, DeviceFacts, decide

STORE_FPS = 15  # WORKLOAD.md, "Clips"
OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    message: str

    def line(self) -> str:
        return f"{self.status:>4}  {self.name:<8} {self.message}"

    def to_json(self) -> dict:
        return asdict(self)


def check_device(requested: str, facts: DeviceFacts,
                 gpus: int) -> tuple[Check, torch.device | None]:
    """The device the run would use (train/device.py's decision for every process)."""
    try:
        device = decide(requested, facts, local_rank=0)
        if device.type == "cuda":
            decide(requested, facts, local_rank=gpus - 1)  # a GPU for every process
    except DeviceError as e:
        return Check("devices", FAIL, str(e)), None
    if device.type == "cuda":
        return Check("devices", OK, f"{facts.device_count} GPU(s) usable (driver "
                     f"{facts.driver or 'unknown'}, PyTorch built for CUDA {facts.torch_cuda}); "
                     f"the run uses {gpus}"), device
    why = "as requested (--device cpu)" if requested == "cpu" else "no NVIDIA GPU on this machine"
    return Check("devices", OK, f"CPU: {why}; a benchmark run on a CPU takes days, "
                 "use it for the demo presets"), device


def check_backend(device: torch.device, gpus: int) -> Check:
    import torch.distributed as dist

    if gpus == 1:
        return Check("backend", OK, "one process: no process group needed")
    if device.type == "cuda":
        if dist.is_nccl_available():
            return Check("backend", OK, f"NCCL available for {gpus} processes")
        return Check("backend", FAIL, "NCCL is not available in this PyTorch build; install "
                     "a CUDA build of PyTorch with NCCL (make venv TORCH_INDEX=...)")
    if dist.is_gloo_available():
        return Check("backend", OK, f"gloo available for {gpus} CPU processes")
    return Check("backend", FAIL, "gloo is not available in this PyTorch build; reinstall "
                 "PyTorch (make clean-venv && make venv)")


def shm_needed(gpus: int, workers: int, batch_bytes: int, prefetch: int) -> int:
    """Shared memory the loaders hold at once: every worker's batches in flight and the
    training loader's reused batch buffers (``prefetch + POOL_EXTRA`` per worker)."""
    return gpus * workers * (prefetch + POOL_EXTRA) * batch_bytes


def check_shm(gpus: int, workers: int, batch_bytes: int, prefetch: int,
              path: str = "/dev/shm") -> Check:
    need = shm_needed(gpus, workers, batch_bytes, prefetch)
    if workers == 0:
        return Check("shm", OK, "no loader workers: batches do not cross processes")
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return Check("shm", WARN, f"{path} not found; loader workers pass batches through "
                     "shared memory: mount a tmpfs there (docker: --shm-size=8g)")
    where = (f"{gpus} x {workers} workers x {2 * prefetch + POOL_EXTRA} batches of "
             f"{batch_bytes / 2**20:.1f} MB")
    need += gpus * workers * prefetch * batch_bytes  # the evaluation loader's, meanwhile
    if free < need:
        return Check("shm", FAIL, f"{path} has {free / 2**30:.2f} GB free, {where} need "
                     f"{need / 2**30:.2f} GB; enlarge it (docker: --shm-size) or lower "
                     "WORKERS")
    return Check("shm", OK, f"{path} {free / 2**30:.1f} GB free for {where}")


def check_store(store: Path | None) -> Check:
    """Present, readable at 15 fps, and (as the run will record it) built with the
    workload's settings from the benchmark's dataset."""
    if store is None:
        return Check("store", WARN, "no store given: supply not measured, clip counts of "
                     "Kinetics-20 assumed; pass STORE=<frame store>")
    if not (Path(store) / SETTINGS_FILE).is_file():
        return Check("store", FAIL, f"{store}: no frame store here; build it with make frames "
                     "(DATA=..., STORE=...) or pass STORE=<frame store>")
    try:
        identity = read_store_identity(store)
        settings = read_settings(store)
    except StoreError as e:
        return Check("store", FAIL, str(e))
    if settings.fps != STORE_FPS:
        return Check("store", FAIL, f"{store}: built at {settings.fps} fps, the workload "
                     f"reads {STORE_FPS}; rebuild it with make frames")
    issues = store_compliance_issues(identity)
    videos = ", ".join(f"{n} {split}" for split, n in identity["videos"].items())
    if issues:
        return Check("store", WARN, f"{store} ({videos} videos): runs on it are not "
                     f"compliant: {'; '.join(issues)}")
    return Check("store", OK, f"{store}: {videos} videos, built with the workload's settings "
                 f"(short side {settings.short_side}, quality {settings.jpeg_quality})")


def check_disk(results: Path, checkpoint_bytes: int) -> Check:
    """Room for a checkpoint being written beside the previous one (2 x its size)."""
    folder = Path(results).resolve()
    while not folder.exists():
        folder = folder.parent
    need = 2 * checkpoint_bytes
    free = shutil.disk_usage(folder).free
    if not os.access(folder, os.W_OK):
        return Check("disk", FAIL, f"{folder}: not writable; pass RESULTS=<writable folder>")
    if free < need:
        return Check("disk", FAIL, f"{results}: {free / 2**30:.2f} GB free, checkpoints need "
                     f"{need / 2**30:.2f} GB; free space or pass RESULTS=<other folder>")
    return Check("disk", OK, f"{results}: {free / 2**30:.1f} GB free, checkpoints need "
                 f"{need / 2**20:.0f} MB")
