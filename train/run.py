"""A whole run: config, processes, data, model, the epoch loop, results and checkpoints.

Per epoch: set the epoch's LR, train, evaluate if the epoch has a scheduled evaluation (after
every ``eval_period``-th epoch and the last: epochs 10 and 20 of the workload) or an extra one
(``eval_every``, off the run clock), then (rank 0) append the epoch's row to epochs.csv, write
the checkpoint and rewrite run.json. The run ends after ``epochs`` epochs, or at the first
scheduled evaluation at or above ``target_top1`` when ``stop_at_target`` is set, or on a
NaN/infinite loss (keeping the last good checkpoint; run.json says "stopped").
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

import formats.results as results_format
import opts
from models.speed import autocast
from train import checkpoint, results, signals
from train.clock import Clock, Heartbeat
from train.data import Data, build_data
from train.distributed import (
    Dist,
    bound_all_groups,
    broadcast_object,
    gather_objects,
    setup,
    shutdown,
)
from train.evaluate import EvalResult, evaluate
from train.loop import NonFiniteLoss, loss_function, train_one_epoch
from train.model import Trainee, build_trainee, check_world, restore, seed_epoch
from train.results import RunRecord, is_extra_eval, is_scheduled_eval
from train.resume import open_attempt, resume_config
from train.rundir import open_results
from train.schedule import config_lr, set_lr


class RunStopped(Exception):
    """The run stopped before its end (NaN or infinite loss); its results so far are kept."""


def run(args: argparse.Namespace, own_start: float) -> None:
    if args.resume is not None:
        config, changed, previous = resume_config(args)
    else:
        config, changed = opts.config_from_args(args)
        previous = None
    d = setup(config["device"], config["timeout_s"])
    try:
        with ExitStack() as held:  # the run folder's lock and the store's read lock
            config = check_world(config, d)
            opening = open_attempt(args.resume, config, previous, d, own_start, held)
            clock = Clock(opening.start, opening.carried_s)
            data = build_data(config, d)
            trainee = build_trainee(config, d)
            bound_all_groups(d)  # the model's own process groups too
            if opening.state is not None:
                restore(trainee, opening.state, d)
            signals.defer()  # from here a signal stops all processes together, files complete
            clips = {"train": len(data.train_set), "val": len(data.val_set)}
            record, run_dir = broadcast_object(
                d, open_results(config, changed, opening, clips, d, own_start, held),
                "rank 0 opening the results folder")
            try:
                _train(config, d, data, trainee, record, run_dir, clock)
            except signals.Interrupted as e:
                # Raised only at an agreed point, after the last checkpoint and run.json
                # were written: the record is that of the last checkpoint.
                e.run_dir = run_dir
                if d.is_main:
                    record.state = results_format.STATE_INTERRUPTED
                    results.write_json(run_dir / results.RUN_FILE, record.to_json())
                raise
    finally:
        shutdown(d)


def _train(config, d: Dist, data: Data, trainee: Trainee, record: RunRecord, run_dir: Path,
           clock: Clock) -> None:
    heartbeat = Heartbeat(run_dir if d.is_main else None, clock)
    heartbeat.beat(force=True)
    criterion = loss_function()
    untimed_before = record.untimed_s  # untimed seconds of earlier attempts

    def done() -> bool:
        return record.epochs_done >= config["epochs"] or (
            record.reached and config["stop_at_target"])

    while not done():
        epoch = record.epochs_done
        lr = config_lr(config, epoch)
        set_lr(trainee.optimizer, lr)
        data.set_epoch(epoch)
        seed_epoch(config["seed"], epoch, d.rank)
        try:
            stats = train_one_epoch(
                trainee.model, trainee.optimizer, data.train_loader, d, epoch, criterion,
                on_step=heartbeat.beat, autocast=autocast(d.device.type, config["precision"]),
                scaler=trainee.scaler, prepare=lambda clips: data.model_input(clips, d.device))
        except NonFiniteLoss as e:
            record.state = results_format.STATE_STOPPED
            if d.is_main:
                results.write_json(run_dir / results.RUN_FILE, record.to_json())
            last = f"epoch {epoch - 1}" if epoch else "none"
            raise RunStopped(f"{e}; run stopped, last good checkpoint ({last}) kept in "
                             f"{run_dir}") from None
        kind, val = _evaluate_after(config, epoch, d, data, trainee, clock, heartbeat)
        elapsed = clock.elapsed()  # the epoch's time stamp: training and any timed evaluation
        record.untimed_s = untimed_before + clock.untimed_s
        row = {
            "epoch": epoch, "elapsed_s": elapsed, "train_s": stats.seconds, "eval": kind,
            "eval_s": val.seconds if val else None, "untimed_s": record.untimed_s, "lr": lr,
            "train_loss": stats.loss, "train_top1": stats.top1,
            "val_top1": val.top1 if val else None,
            "val_top1_clips": val.top1_clips if val else None,
            "val_top5": val.top5 if val else None,
            "val_video_top1": val.video_top1 if val else None,
            "clips_per_s": stats.clips / max(stats.seconds, 1e-9),
            "data_wait_frac": stats.data_wait_frac, "peak_mem_mb": stats.peak_mem_mb,
        }
        record.epochs_done = epoch + 1
        if (kind == results_format.EVAL_SCHEDULED and val.top1 >= config["target_top1"]
                and not record.reached):
            record.reached, record.t_target_s = True, round(elapsed, 3)
        record.finished = done()
        if record.finished:
            record.state = results_format.STATE_FINISHED
        rng = gather_objects(d, checkpoint.rng_state())  # every process's generators
        if d.is_main:
            results.append_epoch(run_dir, row)
            _log_epoch(config, row, val)
            point = checkpoint.ResumePoint.of_run(record, epoch, clock.elapsed())
            checkpoint.save(run_dir, point, {
                "model": trainee.module.state_dict(),
                "optimizer": trainee.optimizer.state_dict(),
                "scheduler": {"last_epoch": epoch},  # the LR is a function of the epoch
                "scaler": trainee.scaler.state_dict(), "rng": rng,
            })
            results.write_json(run_dir / results.RUN_FILE, record.to_json())
            heartbeat.beat(force=True)
        if not done():
            signals.check(d)  # a signal stops every process here, right after a checkpoint
    record.finished = True
    record.state = results_format.STATE_FINISHED
    if d.is_main:
        results.write_json(run_dir / results.RUN_FILE, record.to_json())
        outcome = (f"reached {config['target_top1']} at {record.t_target_s} s"
                   if record.reached else f"did not reach {config['target_top1']}")
        print(f"run {record.run_id}: {outcome}; results in {run_dir}", flush=True)


def _evaluate_after(config: dict, epoch: int, d: Dist, data: Data, trainee: Trainee,
                    clock: Clock, heartbeat: Heartbeat) -> tuple[str, EvalResult | None]:
    """The evaluation after ``epoch``, if any: (kind, result). A scheduled one is on the run
    clock; an extra one runs with the clock stopped. Neither changes training: evaluation
    draws no random numbers, the loader's workers take their seeds from its own generator,
    and the model is put back in training mode by the next epoch."""
    if is_scheduled_eval(config, epoch):
        kind = results_format.EVAL_SCHEDULED
    elif is_extra_eval(config, epoch):
        kind = results_format.EVAL_EXTRA
    else:
        return results_format.EVAL_NONE, None
    sampler = data.val_sampler

    def score() -> EvalResult:
        return evaluate(
            trainee.module, data.val_loader, d, config["num_classes"], data.num_val_videos,
            bool(config.get("head_softmax", False)),  # X3D-M's head ends in a softmax
            num_clips=len(data.val_set), first_clip=sampler.start,
            batch_size=config["batch_size"],
            autocast=autocast(d.device.type, config["precision"]),
            prepare=lambda clips: data.model_input(clips, d.device), on_batch=heartbeat.beat)

    if kind == results_format.EVAL_SCHEDULED:
        return kind, score()
    with clock.untimed():
        return kind, score()


def _log_epoch(config: dict, row: dict, val: EvalResult | None) -> None:
    evaluation = "no evaluation" if val is None else (
        f"val top1 {row['val_top1']:.2f} ({row['eval']}) clips {row['val_top1_clips']:.2f} "
        f"top5 {row['val_top5']:.2f} video {row['val_video_top1']:.2f} "
        f"({val.clips} clips, {val.videos} videos)")
    print(
        f"epoch {row['epoch']}/{config['epochs'] - 1} lr {row['lr']:.6f} "
        f"loss {row['train_loss']:.4f} train_top1 {row['train_top1']:.2f} | {evaluation} | "
        f"{row['clips_per_s']:.1f} clips/s, data wait {row['data_wait_frac']:.0%}, "
        f"peak {row['peak_mem_mb']:.0f} MB | elapsed {row['elapsed_s']:.1f} s",
        flush=True,
    )
