"""RunFolder: the one owner of a run folder, from opening it to marking it finished.

The trainer's loop says what happened (an epoch's LR, train statistics, evaluation); the folder
decides what is written where and when. Its life, in the order the trainer calls it:

    with RunFolder(config, changed, d, own_start, resume) as folder:  # find, lock, read back
        ... build the data and the model ...
        folder.restore(trainee)       # the checkpoint's weights, optimiser, generators
        folder.commit(clips)          # create the folder if new; config, system, run.json
        while not folder.done():
            ... train and evaluate one epoch ...
            folder.end_epoch(...)     # epochs.csv row, checkpoint, run.json (rank 0)
        folder.finish()               # run.json: finished

Entering locks the folder (a resume, or a torchrun restart finding its launch's folder), reads
the checkpoint and the clock back and holds the frame store for reading; a new run's folder is
created only at ``commit``, after the model was built, so a failing build leaves nothing behind.
Leaving releases the locks; a signal (``train.signals.Interrupted``) on the way out marks
run.json ``interrupted``. Every rank enters, commits and ends epochs at the same points: those
calls hold collectives. Only rank 0 writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

import formats.results as results_format
from formats.files import atomic_write
from formats.results import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    RUN_FILE,
    SYSTEM_DESCRIPTION_FILE,
    EpochRow,
)
from preprocess.lock import store_read_lock
from train import TrainError
from train.distributed import Dist, agreed, any_error, broadcast_object, gather_objects
from train.launch import launcher
from train.rundir import attempts, checkpoint, system
from train.rundir.attempts import write_failure
from train.rundir.clock import Clock, Heartbeat, attempt_clock, launch_time, read_heartbeat
from train.rundir.energy import RunEnergy, attempt_energy, mark_target
from train.rundir.epochs import append_epoch, keep_epochs_through
from train.rundir.record import RunRecord
from train.rundir.reopen import check_checkpoint, check_store, reopen, say_continued
from train.signals import Interrupted


class RunDiverged(Exception):
    """The loss became NaN or infinite; the run stopped, its results so far are kept."""


class RunFolder:
    def __init__(self, config: dict, changed: list[str], d: Dist, own_start: float,
                 resume: Path | None = None) -> None:
        self.config, self.changed, self.d = config, changed, d
        self.own_start, self.resume = own_start, resume
        self.path: Path | None = None  # the folder, on every rank (None until known)
        self.record: RunRecord | None = None  # run.json as it stands (None before commit)
        self.clock: Clock | None = None
        self.energy: RunEnergy | None = None  # the run's energy, read with the clock
        self._held = ExitStack()  # the folder's and the store's locks
        self._heartbeat: Heartbeat | None = None
        self._point: checkpoint.ResumePoint | None = None
        self._state: dict | None = None  # the checkpoint, until restored
        self._previous: dict = {}  # run.json of the folder continued
        self._lost_s = 0.0
        self._store: dict = {}
        self._found: Path | None = None  # the folder continued (None: a new run)
        self._description: dict | None = None  # the user's system description (rank 0)
        self._untimed_before = 0.0  # untimed seconds of earlier attempts

    # ---- opening -----------------------------------------------------------------------------

    def __enter__(self) -> RunFolder:
        try:
            self._open()
        except BaseException:
            self._held.close()
            raise
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        try:
            if isinstance(error, Interrupted) and self.record is not None:
                # Raised only at an agreed point, after the last checkpoint and run.json were
                # written: the record is that of the last checkpoint.
                error.run_dir = self.path
                self._set_state(results_format.STATE_INTERRUPTED)
        finally:
            self._held.close()
        return False

    def _open(self) -> None:
        d, config = self.d, self.config
        restarted = launcher().restart > 0
        launch = broadcast_object(d, launch_time(self.own_start))
        found, self._previous = agreed(d, lambda: self._reopen())
        heartbeat = None
        if found is not None:
            self.path = self._found = found
            has_checkpoint = broadcast_object(d, (found / CHECKPOINT_FILE).is_file())
            if has_checkpoint or not restarted:  # a manual resume needs one: the one-line error
                self._point, self._state = checkpoint.load(found)
                check_checkpoint(found, self._point, self._previous, config, d.world_size)
            heartbeat = broadcast_object(d, read_heartbeat(found))
        # Rank 0's reading, so that every process keeps the same clock (and energy).
        start, carried, self._lost_s, energy = broadcast_object(d, (*attempt_clock(
            launch, self.own_start, restarted, self._point, heartbeat,
            float(self._previous.get("lost_s") or 0.0)), attempt_energy(
            self._point, heartbeat, found, restarted, self._previous)))
        self.energy = RunEnergy(d, energy, self._point)
        self._held.callback(self.energy.close)
        self.clock = Clock(start, carried, self.energy.meter)
        any_error(d, lambda: self._held.enter_context(store_read_lock(Path(config["data"]))))
        self._store = agreed(d, lambda: check_store(config, self._point, self._previous))

    def _reopen(self) -> tuple[Path | None, dict]:
        self._description = system.read_system_description(self.config["system_description"])
        run_dir, fd, previous = reopen(self.resume, self.config, self.own_start)
        if fd is not None:
            self._held.callback(os.close, fd)
        return run_dir, previous

    def restore(self, trainee) -> None:
        """Continue from the checkpoint, if any: weights, optimiser, loss scaler and this
        rank's generators (``trainee`` is train.model.Trainee)."""
        state, self._state = self._state, None
        if state is None:
            return
        try:
            trainee.module.load_state_dict(state["model"])
            trainee.optimizer.load_state_dict(state["optimizer"])
            if state["scaler"]:
                trainee.scaler.load_state_dict(state["scaler"])
            checkpoint.restore_rng(state["rng"][self.d.rank])
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as e:
            # Weights of another model (an older checkpoint without its config's digest).
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise TrainError(f"{self.path / CHECKPOINT_FILE}: does not fit the run's model "
                             f"({first}); put back the run's own checkpoint or start a new "
                             "run") from None

    # ---- the attempt's files -----------------------------------------------------------------

    def commit(self, clips: dict[str, int]) -> None:
        """Create the folder (a new run) or take up the continued one: add this attempt and
        write config.yaml, its system file and run.json. ``clips``: clips per split as this run
        cuts the store. A collective: every rank calls it."""
        nodes = system.gather_nodes(self.d)  # each node's local rank 0 describes it
        record, path = agreed(self.d, lambda: self._write_opening(nodes, clips),
                              "rank 0 opening the results folder")
        self.record, self.path = record, path
        self._untimed_before = record.untimed_s
        self._heartbeat = Heartbeat(path if self.d.is_main else None, self.clock,
                                    energy=self.energy.heartbeat_joules)
        self.beat(force=True)

    def _write_opening(self, nodes: list[dict], clips: dict[str, int]) -> tuple[RunRecord, Path]:
        with self._writing(Path(self.config["out"])):
            return self._open_files(nodes, clips)

    def _open_files(self, nodes: list[dict], clips: dict[str, int]) -> tuple[RunRecord, Path]:
        config, point = self.config, self._point
        info = system.describe(self.d.device, nodes)
        if self._found is None:
            path = attempts.create_run_dir(Path(config["out"]), config["name"])
            self._held.callback(os.close, attempts.lock_run_dir(path))
            attempts.remember_run(Path(config["out"]), path)
            prior = []
        else:
            path = self._found
            prior = attempts.prior_attempts(path, self._previous.get("attempts") or [],
                                            point.attempts if point else [])
            keep_epochs_through(path, point.epoch if point else -1)
        runs = attempts.add_attempt(prior, info, self.own_start, self._store.get("path"))
        record = RunRecord(
            config, point.run_id if point else path.name, self.changed,
            any(bool(a.get("git_dirty")) for a in runs), runs[0].get("machine") or "",
            info["device"], self.d.world_size, nodes=len(nodes), resumed=len(runs) > 1,
            restarts=sum(1 for a in runs if a.get("restart")), lost_s=self._lost_s,
            untimed_s=point.untimed_s if point else 0.0, reached=point.reached if point else False,
            t_target_s=point.t_target_s if point else None,
            epochs_done=point.epoch + 1 if point else 0, store={**self._store, "clips": clips},
            attempts=runs,
            system=system.system_name(config, nodes))
        self.energy.open_record(record, self._previous)
        if self._found is not None:
            say_continued(path, self._point, self._lost_s)
        atomic_write(path / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        atomic_write(path / attempts.system_file(len(runs) - 1), _json(info))
        if self._description is not None:
            atomic_write(path / SYSTEM_DESCRIPTION_FILE, _json(self._description))
        atomic_write(path / RUN_FILE, _json(record.to_json()))
        return record, path

    # ---- epochs ------------------------------------------------------------------------------

    @property
    def next_epoch(self) -> int:
        return self.record.epochs_done

    def done(self) -> bool:
        return self.record.epochs_done >= self.config["epochs"] or (
            self.record.reached and self.config["stop_at_target"])

    def beat(self, force: bool = False) -> None:
        """The run is alive (rank 0 writes the clock at most once a second)."""
        with self._writing(self.path):
            self._heartbeat.beat(force)

    def end_epoch(self, row: EpochRow, trainee) -> EpochRow:
        """Record a finished epoch: its row (returned with its energy), the target if this
        evaluation reached it, the checkpoint and run.json. A collective (every rank's
        generators are gathered, the nodes' energy summed)."""
        record = self.record
        row = self.energy.end_epoch(row, record)  # a collective: the energy of all nodes
        record.untimed_s = row.untimed_s
        record.epochs_done = row.epoch + 1
        if (row.eval == results_format.EVAL_SCHEDULED
                and row.val_top1 >= self.config["target_top1"] and not record.reached):
            record.reached, record.t_target_s = True, round(row.elapsed_s, 3)
            mark_target(record)
        record.finished = self.done()
        if record.finished:
            record.state = results_format.STATE_FINISHED
        rng = gather_objects(self.d, checkpoint.rng_state())  # every process's generators
        if not self.d.is_main:
            return row
        with self._writing(self.path):
            append_epoch(self.path, row)
            point = checkpoint.ResumePoint.of_run(record, row.epoch, self.clock.elapsed())
            checkpoint.save(self.path, point, {
                "model": trainee.module.state_dict(), "optimizer": trainee.optimizer.state_dict(),
                "scheduler": {"last_epoch": row.epoch},  # the LR is a function of the epoch
                "scaler": trainee.scaler.state_dict(), "rng": rng,
            })
            self._write_record()
        self.beat(force=True)
        return row

    def untimed_so_far(self) -> float:
        """Untimed seconds of the whole run (earlier attempts and this one)."""
        return self._untimed_before + self.clock.untimed_s

    # ---- the end -----------------------------------------------------------------------------

    def diverged(self, error: Exception, epoch: int) -> RunDiverged:
        """Mark the run stopped on a NaN/infinite loss; the exception to raise."""
        self._set_state(results_format.STATE_DIVERGED)
        last = f"epoch {epoch - 1}" if epoch else "none"
        return RunDiverged(f"{error}; run stopped, last good checkpoint ({last}) kept in "
                           f"{self.path}")

    def finish(self) -> None:
        self.record.finished = True
        self._set_state(results_format.STATE_FINISHED)
        if self.d.is_main:
            attempts.forget_run(Path(self.config["out"]))
            target = self.config["target_top1"]
            to_target = self.record.energy.get("gpu_target_j")
            outcome = (f"reached {target} at {self.record.t_target_s} s"
                       + ("" if to_target is None else f" ({to_target / 1000:.2f} kJ GPU energy)")
                       if self.record.reached else f"did not reach {target}")
            print(f"run {self.record.run_id}: {outcome}; results in {self.path}", flush=True)

    def _set_state(self, state: str) -> None:
        self.record.state = state
        if self.d.is_main:
            self._write_record()

    def _write_record(self) -> None:
        with self._writing(self.path):
            atomic_write(self.path / RUN_FILE, _json(self.record.to_json()))

    @contextmanager
    def _writing(self, where: Path) -> Iterator[None]:
        """An output that cannot be written (disk full, read-only, no permission) ends the run
        with one line; what was written before stays intact (every file is replaced whole,
        epochs.csv rows are appended whole)."""
        try:
            yield
        except OSError as e:
            raise write_failure(Path(e.filename or where), e, self.path) from None


def _json(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"
