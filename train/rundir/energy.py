"""The run's energy, kept like the run clock (train/rundir/clock.py): what is counted, how a
resumed run carries it, and where it is written.

Each node's local rank 0 reads its GPUs (train/energy.py) over the clock's timed spans only:
the reading starts when the attempt's clock is set up and pauses and resumes with it
(``Clock.untimed``: extra evaluations are not counted). At the end of every epoch all ranks
take part in one sum (the only collective this adds): the run's energy then, over all GPUs of
all nodes; the epoch's row gets the difference from the previous epoch's end.

A resumed run carries its energy as the clock carries time. The checkpoint holds the run's
energy when it was taken, the heartbeat the energy at its last beat; the work a killed run did
after its checkpoint is redone, and its energy is counted and reported as lost
(``energy_lost_j``, like ``lost_s``):

    energy at resume = checkpoint energy + max(0, heartbeat energy - checkpoint energy)

The heartbeat is rank 0's, so it holds the energy only when rank 0 reads every GPU of the run
(one node); a multi-node run that lost work has no figure for the lost part, and its energy is
then not measured (None), never a guess. "Not measured" spreads: a sum with an unknown term is
unknown. The first epoch's energy starts when the reading does, a few seconds after the clock
(Python and PyTorch start-up is on the clock, but before anything can be read).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from formats.results import EpochRow
from train.distributed import Dist, all_reduce_sum
from train.energy import METHOD_COUNTER, METHOD_SAMPLED, Joules, Reader, open_reader
from train.rundir.clock import read_heartbeat_energy

PARTS = ("gpu", "cpu")


def empty() -> dict:
    """A new run's energy: nothing yet, nothing lost, no target reached."""
    return {"gpu_j": 0.0, "cpu_j": 0.0, "gpu_lost_j": 0.0, "cpu_lost_j": 0.0,
            "gpu_target_j": None, "cpu_target_j": None}


def _plus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


class TimedEnergy:
    """This node's energy over the run clock's timed spans: the clock pauses and resumes it
    (train.rundir.clock.Clock.untimed) at the same points where it stops and starts."""

    def __init__(self, reader: Reader | None) -> None:
        self.reader = reader
        self._done: Joules = (0.0, 0.0)
        self._mark: Joules | None = self._read()

    def _read(self) -> Joules:
        return self.reader.read() if self.reader is not None else (0.0, 0.0)

    def pause(self) -> None:
        now = self._read()
        self._done = tuple(_plus(d, _minus(n, m)) for d, n, m in zip(self._done, now,
                                                                      self._mark, strict=True))
        self._mark = None

    def resume(self) -> None:
        self._mark = self._read()

    def so_far(self) -> Joules:
        """(GPU J, CPU J) of the timed spans since the reader was opened."""
        if self._mark is None:
            return self._done
        now = self._read()
        return tuple(_plus(d, _minus(n, m)) for d, n, m in zip(self._done, now, self._mark,
                                                                strict=True))

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def resume_energy(point_energy: dict, point_elapsed_s: float, heartbeat_s: float | None,
                  heartbeat_j: Joules | None) -> dict:
    """The run's energy to continue from after a resume (see the module doc)."""
    energy = {**{k: None for k in empty()}, **(point_energy or {})}
    lost_work = heartbeat_s is not None and heartbeat_s > point_elapsed_s
    if not lost_work:
        return energy
    for part, beat in zip(PARTS, heartbeat_j or (None, None), strict=True):
        at_point = energy[f"{part}_j"]
        lost_now = None if at_point is None or beat is None else max(0.0, beat - at_point)
        energy[f"{part}_j"] = _plus(at_point, lost_now)
        energy[f"{part}_lost_j"] = _plus(energy[f"{part}_lost_j"], lost_now)
    return energy


def attempt_energy(point, heartbeat_s: float | None, run_dir: Path | None, restarted: bool,
                   previous: dict) -> dict:
    """This attempt's starting energy, by the clock's rules (clock.attempt_clock): ``point``
    the checkpoint's ResumePoint (None: none yet), ``heartbeat_s`` the last heartbeat's clock,
    ``run_dir`` the folder continued (None: a new run) and ``previous`` its run.json."""
    heartbeat_j = read_heartbeat_energy(run_dir) if run_dir is not None else None
    if point is not None:
        return resume_energy(point.energy, point.elapsed_s, heartbeat_s, heartbeat_j)
    if not restarted:
        return empty()
    energy = {**empty()}
    for part, beat in zip(PARTS, heartbeat_j or (None, None), strict=True):
        # Everything the failed attempts did is redone from epoch 0: all of it is lost. With
        # no heartbeat the failed attempt's energy is unknown (its time is in the clock).
        before = previous.get(f"{'' if part == 'gpu' else 'cpu_'}energy_lost_j") or 0.0
        energy[f"{part}_j"] = beat if heartbeat_s is not None else None
        energy[f"{part}_lost_j"] = None if energy[f"{part}_j"] is None else max(beat, before)
    return energy


class RunEnergy:
    """This process's part in the run's energy: the reading (local rank 0), the sum at each
    epoch's end, and run.json's, the checkpoint's and the heartbeat's figures."""

    def __init__(self, d: Dist, start: dict, point) -> None:
        self.d = d
        self.reads = d.local_rank == 0
        self.meter = TimedEnergy(open_reader() if self.reads else None)
        self.start = start  # the run's energy when this attempt's reading began
        # The run's energy at the last epoch's end (the checkpoint's; 0 for a new run).
        self.last: Joules = (point.energy.get("gpu_j"), point.energy.get("cpu_j")) \
            if point is not None else (0.0, 0.0)
        self.one_node = d.node_processes == d.world_size

    def heartbeat_joules(self) -> Joules | None:
        """The run's energy now, for rank 0's heartbeat: only when it reads every GPU."""
        if not self.one_node:
            return None
        g, c = self.meter.so_far()
        return _plus(self.start["gpu_j"], g), _plus(self.start["cpu_j"], c)

    def open_record(self, record, previous: dict) -> None:
        """run.json's energy as the attempt starts (``record`` a RunRecord)."""
        record.energy = dict(self.start)
        record.energy_method = previous.get("energy_method")
        record.cpu_energy_method = previous.get("cpu_energy_method")

    def end_epoch(self, row: EpochRow, record) -> EpochRow:
        """The run's energy at the end of ``row``'s epoch, summed over nodes (a collective:
        every rank calls it at the same point); returns the row with its epoch's energy."""
        g, c = self.meter.so_far()
        reader = self.meter.reader
        sampled = reader is not None and reader.method == METHOD_SAMPLED
        mine = [g or 0.0, c or 0.0, float(self.reads and g is None),
                float(self.reads and c is None), float(sampled)]
        total = all_reduce_sum(self.d, torch.tensor(mine, dtype=torch.float64,
                                                    device=self.d.device),
                               f"the energy at the end of epoch {row.epoch}").tolist()
        run_j = (None if total[2] else _plus(self.start["gpu_j"], total[0]),
                 None if total[3] else _plus(self.start["cpu_j"], total[1]))
        epoch_j = tuple(None if now is None or before is None else now - before
                        for now, before in zip(run_j, self.last, strict=True))
        self.last = run_j
        record.energy["gpu_j"], record.energy["cpu_j"] = run_j
        record.energy_method = _methods(
            record.energy_method, None if run_j[0] is None else
            METHOD_SAMPLED if total[4] else METHOD_COUNTER)
        record.cpu_energy_method = _methods(record.cpu_energy_method,
                                            None if run_j[1] is None else "rapl")
        return dataclasses.replace(row, energy_j=epoch_j[0], cpu_energy_j=epoch_j[1])

    def close(self) -> None:
        self.meter.close()


def mark_target(record) -> None:
    """The run just reached its target: its energy to the target is its energy now."""
    record.energy["gpu_target_j"] = record.energy["gpu_j"]
    record.energy["cpu_target_j"] = record.energy["cpu_j"]


def _methods(before: str | None, now: str | None) -> str | None:
    """The methods of the run's attempts: "counter", "sampled" or "counter+sampled"; None
    once any epoch was not measured (the run's energy is then unknown)."""
    if now is None:
        return None
    return "+".join(sorted({*(before.split("+") if before else []), now}))


def record_keys(record) -> dict:
    """run.json's energy keys (formats/results.py)."""
    e = record.energy

    def j(key: str) -> float | None:
        return None if e.get(key) is None else round(e[key], 3)

    return {"energy_method": record.energy_method, "energy_j": j("gpu_j"),
            "energy_lost_j": j("gpu_lost_j"), "energy_to_target_j": j("gpu_target_j"),
            "cpu_energy_method": record.cpu_energy_method, "cpu_energy_j": j("cpu_j"),
            "cpu_energy_lost_j": j("cpu_lost_j"), "cpu_energy_to_target_j": j("cpu_target_j")}
