"""Where a run trains: the GPUs, or the CPU only when that is what the user means.

A machine whose NVIDIA driver is older than the CUDA version PyTorch was built for shows its
GPUs (device files, a loaded driver, ``nvidia-smi``) while ``torch.cuda.is_available()`` is
false. Falling back to the CPU there would train for days without a word, so ``decide``
refuses: with ``device: auto`` a CPU run happens only on a machine without NVIDIA GPUs, and
``device: cpu`` (``--device cpu``) is the explicit way to train on the CPU anyway.

``gather_facts`` reads the machine once; ``decide`` is a pure function of those facts, so
every case is tested with facts made up by hand.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass

import torch

from train import TrainError

REQUESTS = ("auto", "cuda", "cpu")
TORCH_INDEX_URL = "https://download.pytorch.org/whl/"
# CUDA versions PyTorch publishes wheels for (its index is TORCH_INDEX_URL + "cu118", ...).
TORCH_CUDA_BUILDS = ("11.8", "12.1", "12.4", "12.6", "12.8", "12.9", "13.0")
# Oldest Linux driver of each CUDA release (NVIDIA's CUDA toolkit release notes, table 3):
# the newest CUDA a driver runs when nvidia-smi cannot say it.
DRIVER_FOR_CUDA = (("13.0", 580.65), ("12.9", 575.51), ("12.8", 570.26), ("12.6", 560.28),
                   ("12.4", 550.54), ("12.2", 535.54), ("12.1", 530.30), ("12.0", 525.60),
                   ("11.8", 520.61))
SMI_TIMEOUT_S = 5.0


class DeviceError(TrainError):
    """The requested device cannot be used, or the GPUs present cannot be."""


@dataclass(frozen=True)
class DeviceFacts:
    cuda_available: bool  # torch.cuda.is_available()
    device_count: int  # GPUs PyTorch sees (0 when CUDA is unusable)
    torch_version: str
    torch_cuda: str | None  # CUDA version PyTorch was built for; None: a CPU-only build
    nvidia_devices: int  # /dev/nvidia0, /dev/nvidia1, ... files
    driver: str | None  # NVIDIA driver version (nvidia-smi or /proc/driver/nvidia/version)
    driver_cuda: str | None  # newest CUDA version the driver supports
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES as set, or None
    cuda_warning: str | None = None  # what torch said when CUDA failed to initialise

    @property
    def usable(self) -> bool:
        return self.cuda_available and self.device_count > 0

    @property
    def nvidia_present(self) -> bool:
        return self.nvidia_devices > 0 or self.driver is not None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def driver_cuda_from_table(driver: str) -> str | None:
    """The newest CUDA release whose minimum driver ``driver`` meets (None: older than all)."""
    parts = _version(driver)
    number = parts[0] + (parts[1] / 100 if len(parts) > 1 else 0.0)
    for cuda, minimum in DRIVER_FOR_CUDA:
        if number >= minimum:
            return cuda
    return None


def parse_smi(text: str) -> tuple[str | None, str | None]:
    """(driver version, CUDA version) from the header of plain ``nvidia-smi`` output."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return (driver.group(1) if driver else None), (cuda.group(1) if cuda else None)


def parse_proc_version(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version ("... Kernel Module  535.104.05 ...")."""
    match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    return match.group(1) if match else None


def _smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi"], capture_output=True, text=True,
                              timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout or None


def gather_facts(ask_driver: bool | None = None) -> DeviceFacts:
    """Read the machine: PyTorch's view of CUDA and the NVIDIA driver's own traces.
    ``ask_driver`` runs ``nvidia-smi`` (default: only when PyTorch cannot use CUDA, so a
    working GPU run pays nothing at start-up)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    said = [str(w.message).splitlines()[0] for w in caught if "CUDA" in str(w.message)]
    devices = len([p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r".*/nvidia\d+", p)])
    driver = driver_cuda = None
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as f:
            driver = parse_proc_version(f.read())
    except OSError:
        pass
    if ask_driver or (ask_driver is None and not available):
        smi = _smi()
        if smi:
            smi_driver, driver_cuda = parse_smi(smi)
            driver = smi_driver or driver
    if driver and driver_cuda is None:
        driver_cuda = driver_cuda_from_table(driver)
    return DeviceFacts(available, count, torch.__version__.split("+")[0], torch.version.cuda,
                       devices, driver, driver_cuda, os.environ.get("CUDA_VISIBLE_DEVICES"),
                       said[0] if said else None)


def _strtoul(text: str) -> int:
    """The number ``text`` starts with, as CUDA's strtoul reads it ("1gpu" is 1); -1 if none."""
    match = re.match(r"[+-]?\d+", text)
    return int(match.group()) if match else -1


def _shown(value: str) -> str:
    """A value for a message, quoted and escaped; garbage must not fill the terminal."""
    return repr(value) if len(value) <= 40 else f"{value[:30]!r}...({len(value)} characters)"


def visible_gpus(value: str, present: int) -> tuple[list[str], str]:
    """The GPUs CUDA shows under CUDA_VISIBLE_DEVICES=``value`` on a machine with ``present``
    device files (0: unknown), and why the list ends before its last entry ("" if it does
    not). CUDA's rules, as torch.cuda mirrors them: a list of indices or of GPU-/MIG- UUIDs,
    read up to the first entry it cannot use; an entry given twice hides every GPU."""
    if not value.strip():
        return [], "it is empty"
    prefix = value[:4] if value.startswith(("GPU-", "MIG-")) else ""
    used: list[str] = []
    for entry in value.split(","):
        entry = entry.strip() if not prefix else entry
        if prefix:
            ok, key = entry.startswith(prefix), entry
        else:
            number = _strtoul(entry)
            ok, key = number >= 0 and (present == 0 or number < present), str(number)
        if ok and key in used:
            return [], f"it names {key if prefix else 'GPU ' + key} twice"
        if not ok:
            kind = "a GPU UUID like the first" if prefix else "a GPU index"
            why = f"{_shown(entry)} is not {kind}"
            if not prefix and _strtoul(entry) >= present > 0:
                why = f"this machine has no GPU {_strtoul(entry)} (only 0 to {present - 1})"
            return used, why if not used else f"CUDA reads no further: {why}"
        used.append(key)
    return used, ""


def torch_index_for(driver_cuda: str | None) -> str:
    """The PyTorch wheel index of the newest CUDA build the driver runs."""
    if driver_cuda is None:
        return TORCH_INDEX_URL + "cuXXX"
    fitting = [c for c in TORCH_CUDA_BUILDS if _version(c) <= _version(driver_cuda)]
    build = fitting[-1] if fitting else TORCH_CUDA_BUILDS[0]
    return TORCH_INDEX_URL + "cu" + build.replace(".", "")


def unusable_cause(facts: DeviceFacts) -> tuple[str, str]:
    """(why PyTorch cannot use the GPUs, what to do), each part of one line."""
    cpu_fix = "or pass --device cpu to train on the CPU deliberately"
    reinstall = (f"install the PyTorch build for this driver: make clean-venv && make venv "
                 f"TORCH_INDEX={torch_index_for(facts.driver_cuda)}")
    if facts.torch_cuda is None:
        return f"PyTorch {facts.torch_version} is a CPU-only build", f"{reinstall}, {cpu_fix}"
    visible = facts.visible_devices
    if visible is not None:
        shown, why = visible_gpus(visible, facts.nvidia_devices)
        if not shown:
            return (f"CUDA_VISIBLE_DEVICES={_shown(visible)} hides every GPU ({why})",
                    f"unset CUDA_VISIBLE_DEVICES or set it to GPU indices of this machine "
                    f"({_indices(facts.nvidia_devices)}), {cpu_fix}")
    if facts.driver_cuda and _version(facts.driver_cuda) < _version(facts.torch_cuda):
        return (f"driver {facts.driver} supports CUDA up to {facts.driver_cuda} but PyTorch "
                f"{facts.torch_version} was built for CUDA {facts.torch_cuda}",
                f"{reinstall} (or update the driver), {cpu_fix}")
    if facts.driver and facts.driver_cuda is None:
        oldest, minimum = DRIVER_FOR_CUDA[-1]
        return (f"driver {facts.driver} is older than any CUDA build of PyTorch (CUDA "
                f"{oldest} needs driver {minimum:.2f} or newer)",
                f"update the NVIDIA driver, {cpu_fix}")
    if facts.nvidia_devices == 0:
        return ("the NVIDIA driver is loaded but no /dev/nvidia<N> device file is visible",
                f"give this container or user access to the GPUs, {cpu_fix}")
    said = f" ({facts.cuda_warning})" if facts.cuda_warning else ""
    if visible is not None:  # UUIDs cannot be checked here: the variable is the suspect
        return (f"torch.cuda.is_available() is false with CUDA_VISIBLE_DEVICES={_shown(visible)}"
                f"{said}", "check that it names GPUs of this machine (nvidia-smi -L lists "
                f"them) or unset it, {cpu_fix}")
    return (f"torch.cuda.is_available() is false with driver {facts.driver or 'unknown'} and "
            f"PyTorch built for CUDA {facts.torch_cuda}{said}", f"{reinstall}, {cpu_fix}")


def _indices(present: int) -> str:
    if present <= 0:
        return "e.g. 0"
    return "0" if present == 1 else f"e.g. 0 or 0,1; 0 to {present - 1} here"


def decide(requested: str, facts: DeviceFacts, local_rank: int = 0) -> torch.device:
    """The device of process ``local_rank`` for ``requested`` ("auto", "cuda", "cpu"), or a
    DeviceError saying why not and what to do."""
    if requested not in REQUESTS:
        raise DeviceError(f"device={requested!r} is invalid; expected one of "
                          + ", ".join(REQUESTS))
    if requested == "cpu":
        return torch.device("cpu")
    if facts.usable:
        if local_rank >= facts.device_count:
            visible = facts.visible_devices
            why = ""
            if visible is not None:
                why = f" with CUDA_VISIBLE_DEVICES={_shown(visible)}"
                ended = visible_gpus(visible, facts.nvidia_devices)[1]
                why += f": {ended}" if ended else ""
            raise DeviceError(
                f"process {local_rank} has no GPU ({facts.device_count} visible{why}); use "
                "at most one process per GPU (GPUS=<number of GPUs>)")
        return torch.device("cuda", local_rank)
    if requested == "auto" and not facts.nvidia_present:
        return torch.device("cpu")
    if requested == "cuda" and not facts.nvidia_present:
        raise DeviceError("device cuda requested but this machine shows no NVIDIA GPU (no "
                          "/dev/nvidia<N>, no driver); pass --device cpu or auto")
    cause, fix = unusable_cause(facts)
    raise DeviceError(f"device {requested}: NVIDIA GPUs present but PyTorch cannot use them: "
                      f"{cause}; {fix}")


def choose(requested: str = "auto", local_rank: int = 0,
           facts: DeviceFacts | None = None) -> torch.device:
    """``decide`` on this machine's facts (gathered unless given)."""
    if requested == "cpu":  # nothing to look at
        return torch.device("cpu")
    return decide(requested, facts if facts is not None else gather_facts(), local_rank)
