"""The run clock: what is timed, what is not, and how a resumed run continues it.

The run clock starts when the run is launched (torchrun's start, or the process's start for a
plain ``python -m train``) and every epoch row records its reading at the end of the epoch.
Everything after the launch is on the clock (dataset indexing, model build, training, the
scheduled evaluations, checkpoints) except extra evaluations (``--eval-every``): they run
inside ``Clock.untimed()``, which stops the clock and adds their time to ``untimed_s``.

Clock rule for a resumed run. While a run trains, rank 0 writes the clock's current reading to
``heartbeat`` about once a second: the last sign of life of the run. A checkpoint, written after
every epoch, holds the clock reading at the moment it was taken. When ``--resume`` continues
from that checkpoint, the clock restarts from

    elapsed at resume = max(checkpoint clock, last heartbeat clock) + time of the new process

so the work the killed run did after its checkpoint (which is thrown away and done again) is
counted, while the time between the kill and the restart is not. That extra amount is the
run's lost time: ``lost_s`` in run.json is the sum over all kills of
``heartbeat clock - checkpoint clock``. Since the heartbeat stores run-clock readings (not wall
times), and the clock stands still during untimed work, a run killed again before its next
checkpoint, or during an extra evaluation, is still counted right. At most the heartbeat
interval (1 s) per kill goes uncounted.

Restart rule (``torchrun --max-restarts``). A restarted worker group continues the same run
(train/rundir/attempts.py finds its folder). torchrun's own start is the first attempt's, so
the restart does not time itself from there (that would count the failed attempt a second
time): it takes the resume rule above with the new attempt's own start in place of the launch,

    elapsed at restart = max(checkpoint clock, last heartbeat clock) + time of the new process

With no checkpoint yet (killed in epoch 0) the run starts over in the same folder and the clock
goes on from the last heartbeat, all of which is lost work. With neither (killed before its
first heartbeat) the restart times itself from torchrun's start, which then holds the failed
attempt once. ``attempt_clock`` applies these rules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from formats.files import atomic_write
from formats.results import HEARTBEAT_FILE
from train.launch import launcher
from train.rundir.checkpoint import ResumePoint


class Clock:
    """Run clock: seconds since launch plus the time carried over from before a resume, less
    the untimed spans (extra evaluations) of this process."""

    def __init__(self, launch_time: float, carried_s: float = 0.0, energy=None) -> None:
        self.carried_s = carried_s
        # The run's energy reading (train.energy.TimedEnergy): paused and resumed with the
        # clock, at the same points, so energy and time count the same spans.
        self.energy = energy
        self.untimed_s = 0.0  # untimed seconds of this process
        # Anchor the wall-clock launch time to a monotonic counter (immune to clock steps).
        self._base = time.time() - launch_time
        self._anchor = time.perf_counter()
        self._paused_at: float | None = None

    def elapsed(self) -> float:
        now = time.perf_counter() if self._paused_at is None else self._paused_at
        return self.carried_s + self._base + (now - self._anchor) - self.untimed_s

    @contextmanager
    def untimed(self) -> Iterator[None]:
        """Stop the clock for the block (nested blocks are one span)."""
        if self._paused_at is not None:
            yield
            return
        self._paused_at = time.perf_counter()
        if self.energy is not None:
            self.energy.pause()
        try:
            yield
        finally:
            if self.energy is not None:
                self.energy.resume()
            self.untimed_s += time.perf_counter() - self._paused_at
            self._paused_at = None


class Heartbeat:
    """Writes the run clock to ``<run_dir>/heartbeat`` at most once per ``every`` seconds,
    and after it the run's GPU and CPU energy in joules ("-": not measured) when ``energy``
    can tell them (train/rundir/energy.py)."""

    def __init__(self, run_dir: Path | None, clock: Clock, every: float = 1.0,
                 energy: Callable[[], tuple | None] | None = None) -> None:
        self.path = Path(run_dir) / HEARTBEAT_FILE if run_dir is not None else None
        self.clock = clock
        self.every = every
        self.energy = energy
        self._last = -float("inf")

    def beat(self, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.every:
            return
        self._last = now
        line = f"{self.clock.elapsed():.3f}"
        joules = self.energy() if self.energy is not None else None
        if joules is not None:
            line += "".join(" -" if j is None else f" {j:.3f}" for j in joules)
        atomic_write(self.path, line + "\n", sync=False)  # every second


def read_heartbeat(run_dir: Path) -> float | None:
    """The last run-clock reading the run wrote, or None if there is none."""
    try:
        return float((Path(run_dir) / HEARTBEAT_FILE).read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_heartbeat_energy(run_dir: Path) -> tuple[float | None, float | None] | None:
    """The run's (GPU, CPU) energy at the last heartbeat, or None if it holds none."""
    try:
        fields = (Path(run_dir) / HEARTBEAT_FILE).read_text(encoding="ascii").split()[1:3]
        if len(fields) < 2:
            return None
        return tuple(None if f == "-" else float(f) for f in fields)
    except (OSError, ValueError):
        return None


def resume_clock(point: ResumePoint, heartbeat_s: float | None) -> tuple[float, float]:
    """(clock reading to continue from, total lost seconds) for a resume (see module doc)."""
    lost_now = max(0.0, (heartbeat_s or 0.0) - point.elapsed_s)
    return point.elapsed_s + lost_now, point.lost_s + lost_now


def attempt_clock(launch: float, own_start: float, restarted: bool, point: ResumePoint | None,
                  heartbeat_s: float | None, lost_before: float = 0.0,
                  ) -> tuple[float, float, float]:
    """(start, carried seconds, lost seconds) of this attempt's clock: ``Clock(start, carried)``.

    ``launch`` is torchrun's start (``launch_time``), ``own_start`` this process's;
    ``restarted`` says a torchrun restart reopened an existing run folder; ``point`` is its
    checkpoint (None: none yet), ``heartbeat_s`` its last heartbeat and ``lost_before`` the
    lost seconds run.json already counts (see the module doc)."""
    if point is not None:
        carried, lost = resume_clock(point, heartbeat_s)
        return (own_start if restarted else launch), carried, lost
    if not restarted:
        return launch, 0.0, 0.0
    if heartbeat_s is not None:
        # Everything the failed attempts did is redone from epoch 0: all of it is lost.
        return own_start, heartbeat_s, max(heartbeat_s, lost_before)
    return launcher_start(own_start), 0.0, lost_before


def _process_start(pid: int) -> float | None:
    """Wall time at which process ``pid`` started (Linux /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22 of stat: start time since boot, in ticks
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        return time.time() - (since_boot - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def launcher_start(own_start: float) -> float:
    """torchrun's start (this worker's parent), however long ago; ``own_start`` if unknown."""
    if not launcher().torchrun:
        return own_start
    started = _process_start(os.getppid())
    return own_start if started is None or started > own_start else started


def launch_time(own_start: float) -> float:
    """When the run was launched: torchrun's own start if this process is one of its workers
    (so its start-up and rendezvous are timed too), else this process's start."""
    if not launcher().torchrun:
        return own_start
    started = _process_start(os.getppid())
    # Sanity window: a launcher that started long before is not a fresh torchrun.
    if started is None or not 0.0 <= own_start - started <= 600.0:
        return own_start
    return started
