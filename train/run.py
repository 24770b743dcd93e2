"""A whole run, top to bottom: config, processes, run folder, data, model, restore, loop, finish.

Per epoch: set the epoch's LR, train, evaluate if the epoch has a scheduled evaluation (after
every ``eval_period``-th epoch and the last: epochs 10 and 20 of the workload) or an extra one
(``eval_every``, off the run clock), then hand the epoch to the run folder, which writes its
row, the checkpoint and run.json (train/rundir). The run ends after ``epochs`` epochs, or at the
first scheduled evaluation at or above ``target_top1`` when ``stop_at_target`` is set, or on a
NaN/infinite loss (keeping the last good checkpoint; run.json says so).
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager

import opts
from formats.results import EVAL_NONE, EVAL_SCHEDULED, EpochRow
from models.speed import autocast
from opts.resume import resume_config
from train import signals
from train.data import Data, build_data
from train.distributed import Dist, bound_all_groups, setup, shutdown
from train.evaluate import EvalResult, evaluate
from train.loop import NonFiniteLoss, epoch_summary, loss_function, train_one_epoch
from train.model import Trainee, build_trainee, check_world, seed_epoch
from train.rundir import RunFolder
from train.schedule import config_lr, eval_after, set_lr


def run(args: argparse.Namespace, own_start: float) -> None:
    new = args.resume is None
    config, changed = opts.config_from_args(args) if new else resume_config(args)
    d = setup(config["device"], config["timeout_s"])
    try:
        config = check_world(config, d)
        with RunFolder(config, changed, d, own_start, args.resume) as folder:
            data = build_data(config, d)
            trainee = build_trainee(config, d)
            bound_all_groups(d)  # the model's own process groups too
            folder.restore(trainee)
            signals.defer()  # from here a signal stops all processes together, files complete
            folder.commit({"train": len(data.train_set), "val": len(data.val_set)})
            train(config, d, data, trainee, folder)
            folder.finish()
    finally:
        shutdown(d)


def train(config: dict, d: Dist, data: Data, trainee: Trainee, folder: RunFolder) -> None:
    """The epochs still to run; every file is the folder's business."""
    criterion = loss_function()
    amp = autocast(d.device.type, config["precision"])  # a context entered per step
    while not folder.done():
        epoch = folder.next_epoch
        lr = config_lr(config, epoch)
        set_lr(trainee.optimizer, lr)
        data.set_epoch(epoch)
        seed_epoch(config["seed"], epoch, d.rank)
        try:
            stats = train_one_epoch(
                trainee.model, trainee.optimizer, data.train_loader, d, epoch, criterion,
                on_step=folder.beat, autocast=amp,
                scaler=trainee.scaler, prepare=lambda clips: data.model_input(clips, d.device))
        except NonFiniteLoss as e:
            raise folder.diverged(e, epoch) from None
        kind, val = evaluate_after(config, epoch, d, data, trainee, folder, amp)
        row = EpochRow(
            epoch=epoch, elapsed_s=folder.clock.elapsed(), train_s=stats.seconds, eval=kind,
            eval_s=val and val.seconds, untimed_s=folder.untimed_so_far(), lr=lr,
            train_loss=stats.loss, train_top1=stats.top1, val_top1=val and val.top1,
            val_top1_clips=val and val.top1_clips, val_top5=val and val.top5,
            val_video_top1=val and val.video_top1,
            clips_per_s=stats.clips / max(stats.seconds, 1e-9),
            data_wait_frac=stats.data_wait_frac, peak_mem_mb=stats.peak_mem_mb)
        row = folder.end_epoch(row, trainee)  # with the epoch's energy
        if d.is_main:
            print(epoch_summary(row, config["epochs"], val), flush=True)
        if not folder.done():
            signals.check(d)  # a signal stops every process here, right after a checkpoint


def evaluate_after(config: dict, epoch: int, d: Dist, data: Data, trainee: Trainee,
                   folder: RunFolder, amp: AbstractContextManager) -> tuple[str, EvalResult | None]:
    """The evaluation after ``epoch``, if any: (kind, result). A scheduled one is on the run
    clock; an extra one runs with the clock stopped. Neither changes training: evaluation
    draws no random numbers, the loader's workers take their seeds from its own generator,
    and the model is put back in training mode by the next epoch."""
    kind = eval_after(config, epoch)
    if kind == EVAL_NONE:
        return kind, None

    def score() -> EvalResult:
        return evaluate(
            trainee.module, data.val_loader, d, config["num_classes"], data.num_val_videos,
            bool(config.get("head_softmax", False)),  # X3D-M's head ends in a softmax
            num_clips=len(data.val_set), first_clip=data.val_sampler.start,
            batch_size=config["batch_size"],
            autocast=amp, prepare=lambda clips: data.model_input(clips, d.device),
            on_batch=folder.beat)

    if kind == EVAL_SCHEDULED:
        return kind, score()
    with folder.clock.untimed():
        return kind, score()
