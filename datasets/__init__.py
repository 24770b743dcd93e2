"""Frame store -> clip tensors (WORKLOAD.md, "Clips").

Public API::

    from datasets import (ClipDataset, TrainTransform, ValTransform, EpochKeySampler,
                          ShardSampler, make_loader, normalize_clips, StoreError)

    train_ds = ClipDataset(store, "train", TrainTransform(short_side_range=(256, 320),
                           crop=224, flip_p=0.5, mean=(0.45,) * 3, std=(0.225,) * 3),
                           clip_len=16, seed=0)
    val_ds = ClipDataset(store, "val", ValTransform(short_side=256, crop=256))
    len(ds)                     number of clips
    ds[(epoch, index)]          training key; ds[index] == ds[(0, index)]
        -> (clip, label, video_index): clip uint8 clip_len x crop x crop x 3
    ds.classes, ds.num_classes, ds.num_videos, ds.video_labels (per video),
    ds.clip_video (video index per clip, int64 array), ds.clip_start (first kept frame),
    ds.clip_frames(index) (kept-frame indices of a clip), ds.records (index rows, VideoRecord),
    ds.videos_without_clips (video ids shorter than clip_len kept frames; also warned)
    A clip's augmentation comes from clip_rng(seed, epoch, index) alone.
    ClipDataset raises StoreError (one line, names the file) for a missing store or index,
    a store not at 15 fps, labels that disagree with the class list, and a missing or
    corrupt frame (naming the frame file and the video).

    loader, sampler = make_loader(ds, batch_size, workers, shuffle, rank=0, world_size=1,
                                  seed=0, drop_last=False)
        shuffle=True: training (EpochKeySampler); shuffle=False: evaluation (ShardSampler,
        every clip exactly once across ranks, no padding). Call sampler.set_epoch(epoch)
        before each epoch. Batches: (clips uint8 B x T x H x W x 3, labels, video_index).
        The training loader's workers render batches into shared-memory buffers they reuse
        once the training process has dropped a batch (datasets/batches.py).

    A store of any format (JPEG folders, HDF5, decoded frames: formats/store.py) gives the
    same clips; a decoded store's frames are memory-mapped once per process (formats/raw.py).

    On the device, before the model:  x = ds.transform.normalize(clips.to(device))
        == normalize_clips(clips, mean, std): float32 B x 3 x T x H x W, channels moved to
        the front, (x / 255 - mean) / std.
"""

from datasets.clips import ClipDataset, clip_rng
from datasets.loader import EpochKeySampler, ShardSampler, make_loader
from datasets.transforms import ClipParams, TrainTransform, ValTransform, normalize_clips
from formats.store import StoreError

__all__ = [
    "ClipDataset",
    "ClipParams",
    "EpochKeySampler",
    "ShardSampler",
    "StoreError",
    "TrainTransform",
    "ValTransform",
    "clip_rng",
    "make_loader",
    "normalize_clips",
]
