"""What machine and code a run used (system.json), so results can be grouped and trusted."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

from datasets.jpeg_window import libjpeg_turbo_version

REPO = Path(__file__).resolve().parent.parent

# Libraries whose versions can change the data pipeline's or the model's speed.
LIBRARIES = ("torch", "torchvision", "numpy", "av", "h5py", "simplejpeg",
             "opencv-python-headless", "pillow", "PyYAML", "tqdm")

# Git-ignored outputs that never make a tree dirty (in case they are not ignored locally).
OUTPUT_DIRS = ("data/", "results/")


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(repo: Path = REPO) -> tuple[str | None, bool]:
    """(commit, dirty). Dirty means tracked changes or untracked files outside data/ and
    results/; an unknown state (no git, no commit) counts as dirty since it proves nothing."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd=repo)
    status = _run(["git", "status", "--porcelain"], cwd=repo)
    if commit is None or status is None:
        return (commit.strip() if commit else None), True
    changed = [
        line for line in status.splitlines()
        if line and not (line.startswith("?? ") and line[3:].startswith(OUTPUT_DIRS))
    ]
    return commit.strip(), bool(changed)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_driver() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def _versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    # The loader's JPEG decoder is built from source against the system's library.
    versions["libjpeg-turbo (datasets/jpeg_window.c)"] = libjpeg_turbo_version()
    return versions


def machine_label(device: str, gpus: list[dict], cpu_model: str, cores: int) -> str:
    """Short label that groups runs of the same hardware, e.g. "4 x NVIDIA TITAN RTX"."""
    if device == "cuda" and gpus:
        names = sorted({g["name"] for g in gpus})
        return f"{len(gpus)} x {' + '.join(names)}"
    return f"cpu: {cpu_model} ({cores} cores)"


def describe(device: torch.device, world_size: int) -> dict:
    """system.json content; the GPUs listed are those the run's processes use."""
    cores = os.cpu_count() or 1
    cpu_model = _cpu_model()
    gpus = []
    if device.type == "cuda":
        for i in range(world_size):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"name": props.name, "memory_mb": props.total_memory // 2**20})
    commit, dirty = git_state()
    versions = _versions()
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": {"model": cpu_model, "cores": cores},
        "memory_gb": _memory_gb(),
        "device": device.type,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver": _gpu_driver() if gpus else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if gpus else None,
        "torch": torch.__version__,
        "torchvision": versions.get("torchvision"),
        "libraries": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "machine": machine_label(device.type, gpus, cpu_model, cores),
    }
