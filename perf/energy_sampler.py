"""What reading the GPUs' energy costs the run (train/energy.py): the CPU share of the reader.

Each node's local rank 0 reads its GPUs: with the energy counter only when asked (at the
clock's points, each epoch's end and the 1 s heartbeat: no thread), else by polling their
power on one thread. For each way this measures, over ``--seconds`` while the main thread
sleeps, the process CPU time the reading takes (less the same wait without a reader) as a share
of one core, and the cost of one poll of all GPUs (median of 2000).

Without NVML on the machine (``--fake``, the default when NVML will not start) the GPUs are
tests/helpers/fake_nvml's: the Python side of the reader is measured, not the driver's calls.

    .venv/bin/python perf/energy_sampler.py                 # 8 GPUs, 5 s per row
    .venv/bin/python perf/energy_sampler.py --gpus 2 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from train import energy  # noqa: E402


def nvml_module(fake: bool, gpus: int):
    if not fake:
        lib = energy.load_nvml()
        if lib is not None:
            return lib, "NVML"
    from tests.helpers.fake_nvml import pynvml as lib

    lib.CONFIG["count"] = gpus
    lib.CONFIG["watts"] = lambda gpu, t: 300.0
    return lib, "fake NVML (Python)"


def cpu_while_waiting(seconds: float, reader: energy.Reader | None,
                      reads_per_s: float = 0.0) -> float:
    """Process CPU seconds spent while the main thread waits ``seconds`` (reading the
    counters ``reads_per_s`` times a second, as the heartbeat does)."""
    start_cpu, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        time.sleep(1.0 / reads_per_s if reads_per_s else seconds)
        if reader is not None and reads_per_s:
            reader.read()
    return time.process_time() - start_cpu


def poll_us(reader: energy.Reader, sampled: bool) -> float:
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        reader.poll(t) if sampled else reader.read()
        times.append(time.perf_counter() - t)
    return 1e6 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=int, default=8, help="GPUs of the fake node (default 8)")
    p.add_argument("--seconds", type=float, default=5.0, help="wait per row (default 5)")
    p.add_argument("--fake", action="store_true", help="the fake NVML even if NVML is here")
    args = p.parse_args(argv)
    lib, source = nvml_module(args.fake, args.gpus)
    indices = energy.gpu_indices(lib)
    baseline = cpu_while_waiting(args.seconds, None)
    rows = []
    for name, hz in (("counter, read once a second (heartbeat)", 1.0),
                     ("sampled power, thread", 10.0), ("sampled power, thread", 20.0),
                     ("sampled power, thread", 50.0)):
        sampled = name.startswith("sampled")
        if sampled and hasattr(lib, "CONFIG"):
            lib.CONFIG["counter"] = False  # the fake GPUs lose their counter
        reader = energy.Reader(lib, indices, [], hz=hz, thread=sampled)
        if reader.method != (energy.METHOD_SAMPLED if sampled else energy.METHOD_COUNTER):
            reader.close()
            continue  # real GPUs take one way only
        cpu = cpu_while_waiting(args.seconds, reader, 0.0 if sampled else hz)
        reader.close()
        cost = poll_us(energy.Reader(lib, indices, [], hz=hz, thread=False), sampled)
        rows.append((name, hz, max(cpu - baseline, 0.0) / args.seconds, cost))
    print(f"energy reader, {len(indices)} GPUs, {source}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.seconds:g} s per row")
    print()
    print("| reading | polls/s | CPU share of one core | one poll of all GPUs |")
    print("|---|---:|---:|---:|")
    for name, hz, share, cost in rows:
        print(f"| {name} | {hz:g} | {100 * share:.3f} % | {cost:.1f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
