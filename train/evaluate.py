"""Evaluation on every val clip: top-1 / top-5 clip accuracy and video accuracy.

Each process evaluates its own share of the clips (the eval sampler pads nothing, so every clip
is scored exactly once across processes, even when the clip count does not divide by the
process count). The counts are then summed over processes, so the accuracy is weighted by clip
count exactly as on one process. Video accuracy averages the class probabilities of a video's
clips and takes the argmax.
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
    top1: float  # percent of clips
    top5: float
    video_top1: float  # percent of videos
    clips: int  # clips scored, over all processes
    videos: int
    seconds: float


def class_probabilities(outputs: torch.Tensor, outputs_are_probabilities: bool) -> torch.Tensor:
    """Per-clip class probabilities: X3D-M's head already applies a softmax, MViT-B's does not."""
    return outputs if outputs_are_probabilities else outputs.softmax(dim=1)


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
    autocast: AbstractContextManager | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_batch: Callable[[], None] = lambda: None,
) -> EvalResult:
    """Score ``module`` (unwrapped, not DDP: processes may see different batch counts) on the
    batches ``(clips, labels, video_index)`` of this process, then combine all processes."""
    start = time.perf_counter()
    device = d.device
    sync_buffers(module, d)
    module.eval()
    k = min(5, num_classes)
    counts = torch.zeros(3, dtype=torch.float64, device=device)  # top-1 hits, top-5 hits, clips
    video_probs = torch.zeros(num_videos, num_classes, dtype=torch.float64, device=device)
    video_clips = torch.zeros(num_videos, dtype=torch.float64, device=device)
    video_label = torch.full((num_videos,), -1, dtype=torch.int64, device=device)
    for clips, labels, video_index in batches:
        clips = prepare(clips) if prepare else clips.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        video_index = video_index.to(device, non_blocking=True)
        with autocast or nullcontext():
            outputs = module(clips)
        outputs = outputs.float()
        hits = outputs.topk(k, dim=1).indices == labels[:, None]
        counts[0] += hits[:, 0].sum()
        counts[1] += hits.any(dim=1).sum()
        counts[2] += len(labels)
        probs = class_probabilities(outputs, outputs_are_probabilities).to(torch.float64)
        video_probs.index_add_(0, video_index, probs)
        video_clips.index_add_(0, video_index, torch.ones_like(video_index, dtype=torch.float64))
        video_label[video_index] = labels
        on_batch()
    all_reduce_sum(d, counts)
    all_reduce_sum(d, video_probs)
    all_reduce_sum(d, video_clips)
    all_reduce_max(d, video_label)
    seen = video_clips > 0
    video_hits = (video_probs.argmax(dim=1) == video_label)[seen]
    top1_hits, top5_hits, clips = counts.tolist()
    videos = int(seen.sum())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return EvalResult(
        top1=100.0 * top1_hits / max(clips, 1),
        top5=100.0 * top5_hits / max(clips, 1),
        video_top1=100.0 * float(video_hits.sum()) / max(videos, 1),
        clips=int(clips),
        videos=videos,
        seconds=time.perf_counter() - start,
    )
