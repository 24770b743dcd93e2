"""Evaluation on every val clip: the original's top-1, clip-weighted top-1/top-5 and video
accuracy.

Each process evaluates its own contiguous block of the val clips (ShardSampler: no padding,
every clip scored exactly once across processes). Per-clip results are then put back at their
global clip index and summed over processes, so every figure is computed from the whole val
set in dataset order, whatever the number of processes or loader workers:

- ``top1``, the metric the targets were measured with (WORKLOAD.md, "Evaluation and the
  score"): the clips in dataset order cut into consecutive batches of the global batch size,
  the unweighted mean of the per-batch top-1 (the last, partial batch counts as much as a full
  one: the original's meter weighted every batch alike);
- ``top1_clips`` and ``top5``: the fraction of all clips;
- ``video_top1``: the class probabilities of a video's clips averaged, then the argmax.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from train.distributed import Dist, all_reduce_max, all_reduce_sum


@dataclass(frozen=True)
class EvalResult:
    top1: float  # percent: mean of per-batch top-1 over global batches (the original's metric)
    top1_clips: float  # percent of clips
    top5: float
    video_top1: float  # percent of videos
    clips: int  # clips scored, over all processes
    videos: int
    seconds: float


def class_probabilities(outputs: torch.Tensor, outputs_are_probabilities: bool) -> torch.Tensor:
    """Per-clip class probabilities: X3D-M's head already applies a softmax, MViT-B's does not."""
    return outputs if outputs_are_probabilities else outputs.softmax(dim=1)


def batch_mean_top1(hits: torch.Tensor, batch_size: int) -> float:
    """The original's top-1 (percent): ``hits`` (1/0 per clip, in dataset order) cut into
    consecutive batches of ``batch_size``, the unweighted mean of the batches' accuracies."""
    if len(hits) == 0:
        return 0.0
    per_batch = torch.stack([b.double().mean() for b in hits.split(batch_size)])
    return 100.0 * float(per_batch.mean())


def sync_buffers(module: torch.nn.Module, d: Dist) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics), so that every
    process evaluates the same model: the one rank 0 checkpoints."""
    if d.active:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


@torch.no_grad()
def evaluate(
    module: torch.nn.Module,
    batches: Iterable,
    d: Dist,
    num_classes: int,
    num_videos: int,
    outputs_are_probabilities: bool,
    num_clips: int,
    first_clip: int,
    batch_size: int,
    autocast: AbstractContextManager | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_batch: Callable[[], None] = lambda: None,
) -> EvalResult:
    """Score ``module`` (unwrapped, not DDP: processes may see different batch counts) on the
    batches ``(clips, labels, video_index)`` of this process, which are the val clips
    ``first_clip, first_clip + 1, ...`` in order; ``num_clips`` is the val set's clip count
    and ``batch_size`` the global batch size (the metric's batches)."""
    start = time.perf_counter()
    device = d.device
    sync_buffers(module, d)
    module.eval()
    k = min(5, num_classes)
    top1_hits = torch.zeros(num_clips, dtype=torch.float64, device=device)
    top5_hits = torch.zeros(num_clips, dtype=torch.float64, device=device)
    video_probs = torch.zeros(num_videos, num_classes, dtype=torch.float64, device=device)
    video_clips = torch.zeros(num_videos, dtype=torch.float64, device=device)
    video_label = torch.full((num_videos,), -1, dtype=torch.int64, device=device)
    position = first_clip
    for clips, labels, video_index in batches:
        clips = prepare(clips) if prepare else clips.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        video_index = video_index.to(device, non_blocking=True)
        with autocast or nullcontext():
            outputs = module(clips)
        outputs = outputs.float()
        hits = outputs.topk(k, dim=1).indices == labels[:, None]
        n = len(labels)
        top1_hits[position:position + n] = hits[:, 0].double()
        top5_hits[position:position + n] = hits.any(dim=1).double()
        position += n
        probs = class_probabilities(outputs, outputs_are_probabilities).to(torch.float64)
        video_probs.index_add_(0, video_index, probs)
        video_clips.index_add_(0, video_index, torch.ones_like(video_index, dtype=torch.float64))
        video_label[video_index] = labels
        on_batch()
    all_reduce_sum(d, top1_hits)
    all_reduce_sum(d, top5_hits)
    all_reduce_sum(d, video_probs)
    all_reduce_sum(d, video_clips)
    all_reduce_max(d, video_label)
    seen = video_clips > 0
    video_hits = (video_probs.argmax(dim=1) == video_label)[seen]
    videos = int(seen.sum())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return EvalResult(
        top1=batch_mean_top1(top1_hits.cpu(), batch_size),
        top1_clips=100.0 * float(top1_hits.sum()) / max(num_clips, 1),
        top5=100.0 * float(top5_hits.sum()) / max(num_clips, 1),
        video_top1=100.0 * float(video_hits.sum()) / max(videos, 1),
        clips=num_clips,
        videos=videos,
        seconds=time.perf_counter() - start,
    )
