"""The energy of a node's GPUs (and CPU packages), read where the run clock says.

One reader per node: each node's local rank 0 reads every GPU of its node that NVML reports
(only those CUDA_VISIBLE_DEVICES names when it is a list of integers: a run on fewer GPUs than
its node has should name them there, or the idle ones are counted too); the other ranks read
nothing. The GPUs' energy is

- "counter": ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded; Volta and
  later), where every GPU has it: exact, and read only when asked;
- "sampled": otherwise ``nvmlDeviceGetPowerUsage`` (mW) polled ``SAMPLE_HZ`` times a second on
  one thread and integrated (trapezoids; every read adds a sample, so a span's ends are exact).

CPU package energy comes from the kernel's powercap (RAPL) files
``/sys/class/powercap/intel-rapl:<n>/energy_uj`` (packages, not their subdomains) where they
are readable, labelled "rapl" and kept apart from the GPUs'; the counter wraps at
``max_energy_range_uj``, so the same thread reads it every ``RAPL_EVERY_S`` seconds.

What is measured is board energy as the GPU reports it, not the wall socket: power supplies,
fans, memory, network and (without RAPL) CPUs are not in it.

Never an error: no NVML, no GPU or a failing ``nvmlInit`` means "not measured" (None). A GPU
whose call fails mid-run gets one warning line, the run goes on, and from then on the node's
GPU energy is not measured (a sum missing a GPU would be a wrong figure, not a smaller one).
Nothing here draws random numbers or talks to other processes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

METHOD_COUNTER = "counter"
METHOD_SAMPLED = "sampled"
METHOD_RAPL = "rapl"
SAMPLE_HZ = 20.0  # power polls per second in the sampled fallback (at least 10)
RAPL_EVERY_S = 1.0  # RAPL wraps after minutes at full power: once a second sees every wrap
RAPL_ROOT = Path("/sys/class/powercap")

Joules = tuple[float | None, float | None]  # (GPUs, CPU packages); None: not measured

_nvml: ModuleType | None = None
_nvml_tried = False


def load_nvml() -> ModuleType | None:
    """pynvml, initialised; None where NVML is missing or will not start."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no package, no library, no driver: not measured
        return None
    return pynvml


def nvml() -> ModuleType | None:
    """``load_nvml`` once per process (one ``nvmlInit``, kept until the process ends)."""
    global _nvml, _nvml_tried
    if not _nvml_tried:
        _nvml_tried = True
        _nvml = load_nvml()
    return _nvml


def gpu_indices(lib: ModuleType, used: int | None = None) -> list[int]:
    """NVML indices of the GPUs in use: CUDA_VISIBLE_DEVICES when it is a list of integers
    (UUIDs or MIG names: NVML's order), the first ``used`` of them (None: all)."""
    total = int(lib.nvmlDeviceGetCount())
    order = list(range(total))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        try:
            order = [int(x) for x in visible.split(",") if x.strip()]
        except ValueError:
            pass
        order = [i for i in order if 0 <= i < total]
    return order if used is None else order[:used]


class _Rapl:
    """One CPU package's energy_uj, accumulated across its wrap-around."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "energy_uj"
        self.range_uj = int((folder / "max_energy_range_uj").read_text())
        self.last = int(self.file.read_text())
        self.joules = 0.0

    def poll(self) -> None:
        now = int(self.file.read_text())
        step = now - self.last if now >= self.last else now + self.range_uj - self.last
        self.joules += step / 1e6
        self.last = now


def rapl_packages(root: Path = RAPL_ROOT) -> list[_Rapl]:
    """The readable RAPL package domains under ``root`` (none: CPU energy not measured)."""
    found = []
    for folder in sorted(Path(root).glob("intel-rapl:*")):
        if folder.name.count(":") != 1:  # intel-rapl:0:0 and so on are parts of a package
            continue
        try:
            found.append(_Rapl(folder))
        except (OSError, ValueError):  # unreadable without privileges on most kernels
            return []
    return found


class Reader:
    """This node's GPU and CPU package energy since the reader was opened (``read``)."""

    def __init__(self, lib: ModuleType | None, indices: list[int], rapl: list[_Rapl],
                 hz: float = SAMPLE_HZ, thread: bool = True, clock=time.perf_counter) -> None:
        self.lib, self.hz, self.rapl, self.clock = lib, max(hz, 10.0), rapl, clock
        self.method: str | None = None
        self.cpu_method = METHOD_RAPL if rapl else None
        self.failed: str | None = None  # the warning given, once a GPU failed
        self._lock = threading.Lock()
        self._gpus: list[tuple[int, object]] = []
        self._base: dict[int, int] = {}
        self._joules: dict[int, float] = {}
        self._last: dict[int, tuple[float, float]] = {}
        self._rapl_at = -float("inf")
        if lib is not None and indices:
            try:
                self._gpus = [(i, lib.nvmlDeviceGetHandleByIndex(i)) for i in indices]
                self._base = {i: self._counter(h) for i, h in self._gpus}
                self.method = METHOD_COUNTER
            except lib.NVMLError:
                self._base = {}
                self.method = METHOD_SAMPLED if self._gpus else None
        if self.method == METHOD_SAMPLED:
            self._joules = {i: 0.0 for i, _ in self._gpus}
            self.poll(clock())
        self._stop = threading.Event()
        self._thread = None
        if thread and (self.method == METHOD_SAMPLED or rapl):
            self._thread = threading.Thread(target=self._run, name="energy", daemon=True)
            self._thread.start()

    def _counter(self, handle) -> int:
        return int(self.lib.nvmlDeviceGetTotalEnergyConsumption(handle))

    def read(self) -> Joules:
        """(GPU joules, CPU package joules) since the reader was opened; None: not measured."""
        with self._lock:
            now = self.clock()
            if self.method == METHOD_SAMPLED:
                self._poll_gpus(now)
            if self.rapl:
                self._poll_rapl(now, force=True)
            return self._gpu_joules(), self._cpu_joules()

    def _gpu_joules(self) -> float | None:
        if self.method is None or self.failed:
            return None
        if self.method == METHOD_SAMPLED:
            return sum(self._joules.values())
        total = 0
        for i, handle in self._gpus:
            try:
                total += self._counter(handle) - self._base[i]
            except self.lib.NVMLError as e:
                self._fail(i, e)
                return None
        return total / 1000.0

    def _cpu_joules(self) -> float | None:
        return sum(p.joules for p in self.rapl) if self.rapl else None

    def poll(self, now: float) -> None:
        """One sample of every GPU's power at ``now`` (``clock`` seconds), and RAPL when due;
        the thread calls it ``hz`` times a second."""
        with self._lock:
            if self.method == METHOD_SAMPLED:
                self._poll_gpus(now)
            if self.rapl:
                self._poll_rapl(now)

    def _poll_gpus(self, now: float) -> None:
        if self.failed:
            return
        for i, handle in self._gpus:
            try:
                watts = self.lib.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except self.lib.NVMLError as e:
                self._fail(i, e)
                return
            if i in self._last:
                then, before = self._last[i]
                self._joules[i] += (watts + before) / 2.0 * max(now - then, 0.0)
            self._last[i] = (now, watts)

    def _poll_rapl(self, now: float, force: bool = False) -> None:
        if not force and now - self._rapl_at < RAPL_EVERY_S:
            return
        self._rapl_at = now
        try:
            for package in self.rapl:
                package.poll()
        except (OSError, ValueError) as e:
            print(f"warning: energy: CPU package energy unreadable ({e}); the run goes on, "
                  "its CPU energy is not measured", file=sys.stderr, flush=True)
            self.rapl, self.cpu_method = [], None

    def _fail(self, index: int | None, error: Exception) -> None:
        if self.failed:
            return
        which = "the energy reader" if index is None else f"GPU {index}"
        self.failed = (f"warning: energy: {which}: NVML failed ({error}); the run goes "
                       "on, its GPU energy is not measured from here on")
        print(self.failed, file=sys.stderr, flush=True)

    def _run(self) -> None:
        every = 1.0 / self.hz if self.method == METHOD_SAMPLED else RAPL_EVERY_S
        while not self._stop.wait(every):
            try:
                self.poll(self.clock())
            except Exception as e:  # never take the run down with the reading
                self._fail(None, e)
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


def open_reader(rapl_root: Path = RAPL_ROOT) -> Reader:
    """This node's reader: every GPU NVML reports (as CUDA_VISIBLE_DEVICES limits them)."""
    rapl = rapl_packages(rapl_root)
    lib = nvml()
    try:
        return Reader(lib, gpu_indices(lib) if lib is not None else [], rapl)
    except Exception as e:  # bindings that misbehave: not measured, never the run's end
        print(f"warning: energy: NVML unusable ({e}); GPU energy not measured",
              file=sys.stderr, flush=True)
        return Reader(None, [], rapl)


def _call(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def gpu_facts(used: int | None = None) -> tuple[list[dict], str | None]:
    """([per GPU in use: NVML index, name, power limit and its default (W), maximum SM and
    memory clocks (MHz)], driver version); ([], None) without NVML."""
    lib = nvml()
    if lib is None:
        return [], None
    facts = []
    for i in _call(gpu_indices, lib, used) or []:
        h = _call(lib.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            continue
        limit = _call(lib.nvmlDeviceGetPowerManagementLimit, h)
        default = _call(lib.nvmlDeviceGetPowerManagementDefaultLimit, h)
        facts.append({
            "index": i, "name": _text(_call(lib.nvmlDeviceGetName, h)),
            "power_limit_w": None if limit is None else limit / 1000.0,
            "default_power_limit_w": None if default is None else default / 1000.0,
            "max_sm_clock_mhz": _call(lib.nvmlDeviceGetMaxClockInfo, h, lib.NVML_CLOCK_SM),
            "max_memory_clock_mhz": _call(lib.nvmlDeviceGetMaxClockInfo, h, lib.NVML_CLOCK_MEM),
        })
    return facts, _text(_call(lib.nvmlSystemGetDriverVersion))


def power_limits_line() -> str | None:
    """"GPU power limits (NVML): GPU 0 <name> 700 W, ..." or None without NVML."""
    facts, driver = gpu_facts()
    if not facts:
        return None
    limits = ", ".join(f"GPU {f['index']} {f['name']} "
                       + ("?" if f["power_limit_w"] is None else f"{f['power_limit_w']:.0f} W")
                       for f in facts)
    return f"GPU power limits (NVML, driver {driver or '?'}): {limits}"
