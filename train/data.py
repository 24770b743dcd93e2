"""The run's data: train and val clip datasets over the frame store, with their loaders."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from datasets import ClipDataset, TrainTransform, ValTransform, make_loader
from train import TrainError
from train.distributed import Dist


@dataclass
class Data:
    train_set: ClipDataset
    val_set: ClipDataset
    train_loader: DataLoader
    val_loader: DataLoader
    train_sampler: object
    val_sampler: object

    @property
    def num_val_videos(self) -> int:
        return self.val_set.num_videos

    def set_epoch(self, epoch: int) -> None:
        """Each epoch's training order and augmentation are keyed by (seed, epoch)."""
        self.train_sampler.set_epoch(epoch)
        self.val_sampler.set_epoch(epoch)

    def model_input(self, clips: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 clips from the loader -> normalised float32 on the device (the normalisation
        runs there: a quarter of the bytes cross the bus). Train and val share mean/std."""
        return self.train_set.transform.normalize(clips.to(device, non_blocking=True))


def build_data(config: dict, d: Dist) -> Data:
    mean, std = tuple(config["mean"]), tuple(config["std"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_set = ClipDataset(
            config["data"], "train",
            TrainTransform(tuple(config["train_short_side"]), config["train_crop"],
                           config["flip_p"], mean, std),
            clip_len=config["clip_len"], seed=config["seed"])
        val_set = ClipDataset(
            config["data"], "val",
            ValTransform(config["val_short_side"], config["val_crop"], mean, std),
            clip_len=config["clip_len"], seed=config["seed"])
    if d.is_main:  # e.g. videos too short for one clip: reported once, as one line each
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr, flush=True)
    if train_set.num_classes != config["num_classes"]:
        raise TrainError(
            f"{config['data']}: the store has {train_set.num_classes} classes but the config "
            f"says num_classes {config['num_classes']}; use a matching store or config")
    for ds in (train_set, val_set):
        if len(ds) == 0:
            raise TrainError(f"{config['data']}: split '{ds.split}' has no clips of "
                             f"{config['clip_len']} frames; rebuild the store")
    per_process = config["batch_size"] // d.world_size
    train_loader, train_sampler = make_loader(
        train_set, per_process, config["workers"], shuffle=True, rank=d.rank,
        world_size=d.world_size, seed=config["seed"])
    val_loader, val_sampler = make_loader(
        val_set, per_process, config["workers"], shuffle=False, rank=d.rank,
        world_size=d.world_size)
    # Loaders draw their workers' base seeds from a generator of their own, not torch's global
    # one, so the dropout masks do not depend on the worker count (or on persistent workers
    # skipping the draw after the first epoch). The clips' randomness is keyed by
    # (seed, epoch, index) and uses neither.
    for i, loader in enumerate((train_loader, val_loader)):
        loader.generator = torch.Generator().manual_seed(config["seed"] * 2 + i)
    return Data(train_set, val_set, train_loader, val_loader, train_sampler, val_sampler)
