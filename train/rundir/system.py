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
import yaml

from datasets.jpeg_window import libjpeg_turbo_version
from formats.results import SYSTEM_DESCRIPTION_KEYS
from formats.yaml_limits import load_yaml_file
from train import TrainError
from train.energy import gpu_facts

REPO = Path(__file__).resolve().parents[2]

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


def numerics() -> dict:
    """The numerics flags in force (they change results and speed on a GPU). "fp32" runs keep
    PyTorch's defaults: the trainer sets none of these, and system.json shows what held."""
    return {
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
    }


def node_description(device: torch.device, processes: int, node: int = 0) -> dict:
    """The hardware of this node: host, CPU, memory and the GPUs its ``processes`` processes
    use (cuda:0 .. cuda:<processes - 1>, the devices of this node only), with each GPU's power
    limit and clocks and the driver as NVML reads them (None without NVML)."""
    gpus, driver = [], None
    if device.type == "cuda":
        facts, driver = gpu_facts(processes)
        for i in range(processes):
            props = torch.cuda.get_device_properties(i)
            nvml = {k: v for k, v in facts[i].items() if k != "name"} if i < len(facts) else {}
            gpus.append({"name": props.name, "memory_mb": props.total_memory // 2**20, **nvml})
    return {
        "node": node, "host": socket.gethostname(), "processes": processes,
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count() or 1},
        "memory_gb": _memory_gb(), "gpus": gpus,
        "driver": driver,
    }


def gather_nodes(d) -> list[dict]:
    """Every node's description, by node, gathered from each node's local rank 0 (a
    collective: every process of the run calls it at the same point)."""
    from train.distributed import gather_objects

    mine = node_description(d.device, d.node_processes, d.node) if d.local_rank == 0 else None
    found = gather_objects(d, mine, "the description of every node")
    return sorted((n for n in found if n is not None), key=lambda n: n["node"])


def machine_label(device: str, nodes: list[dict]) -> str:
    """Short label that groups runs of the same hardware: "4 x NVIDIA TITAN RTX",
    "2 nodes x 4 x NVIDIA A100", "cpu: <model> (N cores)", "2 nodes x 2 processes, cpu: ..."."""
    per_node = {len(n["gpus"]) if device == "cuda" else n["processes"] for n in nodes}
    count = per_node.pop() if len(per_node) == 1 else "/".join(
        str(len(n["gpus"]) if device == "cuda" else n["processes"]) for n in nodes)
    many = f"{len(nodes)} nodes x " if len(nodes) > 1 else ""
    if device == "cuda" and any(n["gpus"] for n in nodes):
        names = sorted({g["name"] for n in nodes for g in n["gpus"]})
        return f"{many}{count} x {' + '.join(names)}"
    cpu = "cpu: " + " + ".join(sorted(
        {f"{n['cpu']['model']} ({n['cpu']['cores']} cores)" for n in nodes}))
    return f"{many}{count} processes, {cpu}" if many else cpu


def describe(device: torch.device, nodes: list[dict] | int) -> dict:
    """system.json content: rank 0's host and code, and every node's hardware (``nodes``
    from ``gather_nodes``; a number of processes means this node alone)."""
    if isinstance(nodes, int):
        nodes = [node_description(device, nodes)]
    first = nodes[0]
    gpus = [{**g, "node": n["node"]} for n in nodes for g in n["gpus"]]
    commit, dirty = git_state()
    versions = _versions()
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": first["cpu"],
        "memory_gb": first["memory_gb"],
        "device": device.type,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver": first["driver"],
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if gpus else None,
        "torch": torch.__version__,
        "torchvision": versions.get("torchvision"),
        "libraries": versions,
        "numerics": numerics(),
        "node_count": len(nodes),
        "nodes": nodes,
        "git_commit": commit,
        "git_dirty": dirty,
        "machine": machine_label(device.type, nodes),
    }


def system_name(config: dict, nodes: list[dict]) -> str:
    """The name a run's results are grouped by: SYSTEM= if given, else the host's name
    (``<host>-<n>nodes`` for a run across nodes)."""
    if config.get("system"):
        return config["system"]
    host = socket.gethostname().split(".")[0] or "host"
    return host if len(nodes) <= 1 else f"{host}-{len(nodes)}nodes"


def read_system_description(path: str | None) -> dict | None:
    """The user's description of the system (a YAML or JSON mapping of
    formats.results.SYSTEM_DESCRIPTION_KEYS), or None; one-line TrainError if it is unusable."""
    if not path:
        return None
    fix = "SYSTEM_DESCRIPTION= names a YAML or JSON file of " + \
        ", ".join(SYSTEM_DESCRIPTION_KEYS) + " (README, Comparing machines)"
    try:
        values = load_yaml_file(Path(path))
    except (OSError, ValueError, yaml.YAMLError) as e:
        reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainError(f"{path}: unreadable system description ({reason}); {fix}") from None
    if not isinstance(values, dict):
        raise TrainError(f"{path}: not a mapping; {fix}")
    unknown = sorted(str(k) for k in values if k not in SYSTEM_DESCRIPTION_KEYS)
    if unknown:
        raise TrainError(f"{path}: unknown key {', '.join(unknown)}; {fix}")
    for key, value in values.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0 \
            if key == "power_cap_w" else isinstance(value, str) and len(value) <= 2000
        if not ok:
            raise TrainError(f"{path}: {key}: {str(value)[:60]!r} is not "
                             f"{'a power in watts' if key == 'power_cap_w' else 'text'}; {fix}")
    return values
