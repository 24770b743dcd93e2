"""A whole run: config, processes, data, model, the epoch loop, results and checkpoints.

Per epoch: set the epoch's LR, train, evaluate on every val clip, then (rank 0) append the
epoch's row to epochs.csv, write the checkpoint and rewrite run.json. The run ends after
``epochs`` epochs, or at the first evaluation at or above ``target_top1`` when
``stop_at_target`` is set, or on a NaN/infinite loss (keeping the last good checkpoint).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import opts
from models.speed import SpeedOptionError, apply_channels_last, autocast, compile_model, grad_scaler
from train import TrainError, checkpoint, results, system
from train.data import Data, build_data
from train.distributed import Dist, broadcast_object, gather_objects, launch_time, setup, shutdown
from train.evaluate import evaluate
from train.loop import NonFiniteLoss, loss_function, train_one_epoch
from train.results import RunRecord
from train.resume import resume_config
from train.schedule import build_optimizer, config_lr, set_lr


class RunStopped(Exception):
    """The run stopped before its end (NaN or infinite loss); its results so far are kept."""


@dataclass
class Trainee:
    """The model as trained: ``module`` is the plain network (evaluated and checkpointed),
    ``model`` the same wrapped for training (DDP, compile)."""

    module: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def check_world(config: dict, d: Dist) -> dict:
    """The config with ``gpus`` = the number of processes, which it must match if given."""
    if config["gpus"] is not None and config["gpus"] != d.world_size:
        raise TrainError(
            f"gpus={config['gpus']} but {d.world_size} process(es) are running; launch with "
            f"torchrun --standalone --nproc-per-node={config['gpus']} -m train ..."
        )
    if config["batch_size"] % d.world_size:
        raise TrainError(
            f"global batch_size {config['batch_size']} does not divide across "
            f"{d.world_size} processes; use a process count that divides it"
        )
    try:
        autocast(d.device.type, config["precision"])  # an unusable precision fails here
    except SpeedOptionError as e:
        raise opts.ConfigError(f"config {config['name']}: {e}") from None
    return {**config, "gpus": d.world_size}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed torch's generators (dropout, drop path) from (seed, epoch, rank): each process
    draws different masks, and an epoch's draws do not depend on how many loader workers
    drew seeds before it or on whether the run was resumed."""
    torch.manual_seed(int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0]))


def build_model(config: dict) -> torch.nn.Module:
    import models

    options = {k: config[k] for k in opts.MODEL_OPTIONS[config["model"]]}
    try:
        return models.build(config["model"], config["num_classes"], clip_len=config["clip_len"],
                            crop_size=config["train_crop"], **options)
    except ValueError as e:
        raise opts.ConfigError(f"config {config['name']}: {e}") from None


def build_trainee(config: dict, d: Dist) -> Trainee:
    """Model, optimiser and loss scaler, with identical initial weights on every process."""
    seed_everything(config["seed"])
    module = build_model(config).to(d.device)
    if config["channels_last"]:
        module = apply_channels_last(module)
    model = module
    if d.active:
        model = DistributedDataParallel(
            module, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if config["compile"]:
        model = compile_model(model)
    return Trainee(module, model, build_optimizer(module, config),
                   grad_scaler(d.device.type, config["precision"]))


def run(args: argparse.Namespace, own_start: float) -> None:
    if args.resume is not None:
        config, changed, previous = resume_config(args)
    else:
        config, changed = opts.config_from_args(args)
        previous = None
    d = setup()
    try:
        config = check_world(config, d)
        launch = broadcast_object(d, launch_time(own_start))
        state = _load_checkpoint(args.resume, d) if args.resume is not None else None
        carried_s, lost_s = 0.0, 0.0
        if state is not None:
            carried_s, lost_s = broadcast_object(
                d, checkpoint.resume_clock(state, checkpoint.read_heartbeat(args.resume)))
        clock = checkpoint.Clock(launch, carried_s)
        data = build_data(config, d)
        trainee = build_trainee(config, d)
        if state is not None:
            _restore(trainee, state, d)
        record, run_dir = broadcast_object(
            d, _open_results(config, changed, previous, state, d, lost_s, args.resume))
        _train(config, d, data, trainee, record, run_dir, clock)
    finally:
        shutdown(d)


def _load_checkpoint(run_dir: Path, d: Dist) -> dict:
    state = checkpoint.load(run_dir)
    if state["world_size"] != d.world_size:
        raise TrainError(
            f"{run_dir}: the run used {state['world_size']} process(es); resume it with "
            f"torchrun --standalone --nproc-per-node={state['world_size']}")
    return state


def _restore(trainee: Trainee, state: dict, d: Dist) -> None:
    trainee.module.load_state_dict(state["model"])
    trainee.optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        trainee.scaler.load_state_dict(state["scaler"])
    checkpoint.restore_rng(state["rng"][d.rank])


def _open_results(config, changed, previous, state, d: Dist, lost_s, resume_dir):
    """Rank 0 creates (or, on resume, reopens) the results folder and writes config.yaml,
    system.json and run.json. Returns (record, folder); (None, None) on other ranks."""
    if not d.is_main:
        return None, None
    info = system.describe(d.device, d.world_size)
    if state is None:
        run_dir = results.create_run_dir(Path(config["out"]), config["name"])
        record = RunRecord(config, run_dir.name, changed, info["git_dirty"], info["machine"],
                           info["device"], d.world_size)
    else:
        run_dir = Path(resume_dir)
        for partial in run_dir.glob("*.tmp*"):  # files a killed run was writing
            partial.unlink(missing_ok=True)
        results.keep_epochs_through(run_dir, state["epoch"])
        record = RunRecord(
            config, state["run_id"], changed, previous["git_dirty"] or info["git_dirty"],
            info["machine"], info["device"], d.world_size, resumed=True, lost_s=lost_s,
            reached=state["reached"], t_target_s=state["t_target_s"],
            epochs_done=state["epoch"] + 1)
        print(f"resuming {run_dir} after epoch {state['epoch']} (lost {lost_s:.1f} s "
              "of work to stops so far, counted in the clock)", flush=True)
    results.write_config(run_dir, config)
    results.write_json(run_dir / results.SYSTEM_FILE, info)
    results.write_json(run_dir / results.RUN_FILE, record.to_json())
    return record, run_dir


def _train(config, d: Dist, data: Data, trainee: Trainee, record: RunRecord, run_dir: Path,
           clock: checkpoint.Clock) -> None:
    heartbeat = checkpoint.Heartbeat(run_dir if d.is_main else None, clock)
    heartbeat.beat(force=True)
    criterion = loss_function()
    probabilities = bool(config.get("head_softmax", False))  # X3D-M's head ends in a softmax

    def prepare(clips: torch.Tensor) -> torch.Tensor:
        return data.model_input(clips, d.device)

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
                scaler=trainee.scaler, prepare=prepare)
        except NonFiniteLoss as e:
            if d.is_main:
                results.write_json(run_dir / results.RUN_FILE, record.to_json())
            last = f"epoch {epoch - 1}" if epoch else "none"
            raise RunStopped(f"{e}; run stopped, last good checkpoint ({last}) kept in "
                             f"{run_dir}") from None
        val = evaluate(trainee.module, data.val_loader, d, config["num_classes"],
                       data.num_val_videos, probabilities,
                       autocast=autocast(d.device.type, config["precision"]),
                       prepare=prepare, on_batch=heartbeat.beat)
        elapsed = clock.elapsed()  # the epoch's time stamp: its evaluation just ended
        row = {
            "epoch": epoch, "elapsed_s": elapsed, "train_s": stats.seconds,
            "eval_s": val.seconds, "lr": lr, "train_loss": stats.loss, "train_top1": stats.top1,
            "val_top1": val.top1, "val_top5": val.top5, "val_video_top1": val.video_top1,
            "clips_per_s": stats.clips / max(stats.seconds, 1e-9),
            "data_wait_frac": stats.data_wait_frac, "peak_mem_mb": stats.peak_mem_mb,
        }
        record.epochs_done = epoch + 1
        if val.top1 >= config["target_top1"] and not record.reached:
            record.reached, record.t_target_s = True, round(elapsed, 3)
        record.finished = done()
        rng = gather_objects(d, checkpoint.rng_state())  # every process's generators
        if d.is_main:
            results.append_epoch(run_dir, row)
            _log_epoch(config, row, val)
            checkpoint.save(run_dir, {
                "epoch": epoch, "model": trainee.module.state_dict(),
                "optimizer": trainee.optimizer.state_dict(),
                "scheduler": {"last_epoch": epoch},  # the LR is a function of the epoch
                "scaler": trainee.scaler.state_dict(), "rng": rng,
                "elapsed_s": clock.elapsed(), "lost_s": record.lost_s,
                "reached": record.reached, "t_target_s": record.t_target_s,
                "world_size": d.world_size, "run_id": record.run_id,
            })
            results.write_json(run_dir / results.RUN_FILE, record.to_json())
            heartbeat.beat(force=True)
    record.finished = True
    if d.is_main:
        results.write_json(run_dir / results.RUN_FILE, record.to_json())
        outcome = (f"reached {config['target_top1']} at {record.t_target_s} s"
                   if record.reached else f"did not reach {config['target_top1']}")
        print(f"run {record.run_id}: {outcome}; results in {run_dir}", flush=True)


def _log_epoch(config: dict, row: dict, val) -> None:
    print(
        f"epoch {row['epoch']}/{config['epochs'] - 1} lr {row['lr']:.6f} "
        f"loss {row['train_loss']:.4f} train_top1 {row['train_top1']:.2f} | "
        f"val top1 {row['val_top1']:.2f} top5 {row['val_top5']:.2f} "
        f"video {row['val_video_top1']:.2f} ({val.clips} clips, {val.videos} videos) | "
        f"{row['clips_per_s']:.1f} clips/s, data wait {row['data_wait_frac']:.0%}, "
        f"peak {row['peak_mem_mb']:.0f} MB | elapsed {row['elapsed_s']:.1f} s",
        flush=True,
    )
