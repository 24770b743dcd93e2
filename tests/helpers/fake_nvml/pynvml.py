"""Fake ``pynvml``: GPUs whose power is known, so their energy is too.

Each GPU ``i`` draws a constant ``FAKE_NVML_WATTS[i]`` watts, so its energy counter reads
``watts x time.perf_counter()`` (in mJ, as NVML's does) and its power ``watts`` (in mW): the
energy of any span of time is its power times its length. Settings, from the environment:

    FAKE_NVML_WATTS       watts per GPU, comma-separated (default "100,250": two GPUs)
    FAKE_NVML_NO_COUNTER  "1": no energy counter (pre-Volta), only power: the sampled fallback
    FAKE_NVML_FAIL_WHEN   a path (glob): once a file matches it, GPU 1's calls fail
    FAKE_NVML_LOG         a file: each process appends "<pid> init" and "<pid> read <n>"

In-process tests set ``CONFIG`` (``watts``: a function of (gpu, time), ``clock``) directly.
"""

from __future__ import annotations

import atexit
import glob
import os
import time

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_GPU_IS_LOST = 15
NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {NVML_ERROR_NOT_SUPPORTED: "Not Supported",
                NVML_ERROR_GPU_IS_LOST: "GPU is lost"}.get(self.value, "Unknown Error")


class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's own name)
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


_WATTS = [float(w) for w in os.environ.get("FAKE_NVML_WATTS", "100,250").split(",")]
CONFIG = {
    "watts": lambda gpu, t: _WATTS[gpu],
    "clock": time.perf_counter,
    "count": len(_WATTS),
    "counter": os.environ.get("FAKE_NVML_NO_COUNTER") != "1",
    "fail_when": os.environ.get("FAKE_NVML_FAIL_WHEN"),
}
_reads = 0


def _log(text: str) -> None:
    path = os.environ.get("FAKE_NVML_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {text}\n")


atexit.register(lambda: _reads and _log(f"read {_reads}"))


def _check(handle: int) -> None:
    global _reads
    _reads += 1
    if handle == 1 and CONFIG["fail_when"] and glob.glob(CONFIG["fail_when"]):
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)


def nvmlInit() -> None:
    _log("init")


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return CONFIG["count"]


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if not 0 <= index < CONFIG["count"]:
        raise NVMLError(2)
    return index


def nvmlDeviceGetTotalEnergyConsumption(handle: int) -> int:
    if not CONFIG["counter"]:
        raise NVMLError_NotSupported()
    _check(handle)
    t = CONFIG["clock"]()
    return int(CONFIG["watts"](handle, t) * t * 1000)  # constant power: energy = P x t


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    _check(handle)
    return int(round(CONFIG["watts"](handle, CONFIG["clock"]()) * 1000))


def nvmlDeviceGetPowerManagementLimit(handle: int) -> int:
    return 300_000 + 50_000 * handle


def nvmlDeviceGetPowerManagementDefaultLimit(handle: int) -> int:
    return 350_000


def nvmlDeviceGetMaxClockInfo(handle: int, kind: int) -> int:
    return 1980 if kind == NVML_CLOCK_SM else 2619


def nvmlDeviceGetName(handle: int) -> str:
    return f"Fake GPU {handle}"


def nvmlSystemGetDriverVersion() -> str:
    return "550.54.15-fake"
