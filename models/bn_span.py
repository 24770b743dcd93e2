"""BatchNorm over a fixed span of clips, whatever the process count (WORKLOAD.md, "BatchNorm span").

The reference trained X3D-M with DataParallel on 4 GPUs at a global batch of 16: every
BatchNorm took its batch statistics over one GPU's contiguous chunk of 4 clips, and only
GPU 0's replica kept its running statistics. ``apply_bn_span`` gives the same statistics for
any layout of P processes holding b = B / P clips each:

- b >= span: each process cuts its clips into b / span contiguous chunks, ``torch.chunk``
  style as DataParallel's scatter does (a short batch of n clips gives chunks of
  ceil(n / (b / span)) clips, possibly fewer chunks), and normalises each chunk with its own
  statistics: one native batch-norm kernel per chunk, each writing its slice of the output.
- b < span: the statistics are those of a group of span / b consecutive ranks (ranks 0-1,
  2-3, ... for span 4 and b 2), gathered with an autograd-aware all-reduce so that the
  gradients are those of the group's joint statistics (as SyncBatchNorm, which refuses CPU
  tensors). A short last batch holds the same number of clips on every rank (the training
  sampler pads the epoch to a multiple of P), so a group's statistic covers all its clips.
- The running statistics used in evaluation are updated by rank 0 only, from its first chunk
  (or its group's statistics): the first chunk of the global batch, as in the reference.
  Other ranks leave theirs unchanged; DistributedDataParallel's buffer broadcast (on by
  default) and the trainer's broadcast before evaluating give them rank 0's.

In evaluation mode the layers are plain BatchNorm with their running statistics. Only the
class of each ``nn.BatchNorm3d`` changes, so parameters, buffers and state-dict keys stay
exactly those of the plain model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class SpanLayout:
    """How one process computes BatchNorm statistics.

    ``chunks``: contiguous chunks of its batch, each with its own statistics; None means
    chunks of ``span`` clips (the per-process batch is unknown). ``group``: the ranks whose
    clips share one statistic (empty: none). ``updates_running``: this process updates the
    running statistics. ``rank``: this process."""

    span: int
    chunks: int | None
    group: tuple[int, ...]
    updates_running: bool
    rank: int = 0


# Process groups by member ranks, created by ``apply_bn_span``. Kept out of the modules so
# that they can be copied and pickled.
_GROUPS: dict[tuple[int, ...], dist.ProcessGroup] = {}


def plan_bn_span(span: int, per_process_batch: int | None, rank: int = 0,
                 world_size: int = 1) -> SpanLayout:
    """The layout of process ``rank`` of ``world_size``, each holding ``per_process_batch`` clips.
    Raises ValueError (one line) for a layout that cannot keep the span."""
    if span < 1:
        raise ValueError(f"bn_span must be at least 1, got {span}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
    if per_process_batch is None:
        if world_size > 1:
            raise ValueError("bn_span with several processes needs the per-process batch size")
        return SpanLayout(span, None, (), True, rank)
    b = per_process_batch
    if b < 1:
        raise ValueError(f"per-process batch must be at least 1, got {b}")
    if b >= span:
        if b % span:
            raise ValueError(f"per-process batch {b} is not a multiple of bn_span {span}; "
                             "use a batch or process count that makes it one")
        return SpanLayout(span, b // span, (), rank == 0, rank)
    if world_size == 1:  # fewer clips than the span in the only process: plain BatchNorm
        return SpanLayout(span, 1, (), True, rank)
    if span % b:
        raise ValueError(f"bn_span {span} is not a multiple of the per-process batch {b}; "
                         "use a process count that makes it one")
    size = min(span // b, world_size)  # a span beyond the global batch: the whole world
    if world_size % size:
        raise ValueError(f"{world_size} processes do not split into groups of {size} "
                         f"(bn_span {span} / per-process batch {b}); change the process count")
    start = rank // size * size
    return SpanLayout(span, 1, tuple(range(start, start + size)), rank == 0, rank)


class SpanBatchNorm3d(nn.BatchNorm3d):
    """``nn.BatchNorm3d`` whose training statistics follow a ``SpanLayout`` (set
    ``span_layout``; ``apply_bn_span`` does). Same parameters and buffers."""

    span_layout: SpanLayout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = self.span_layout
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        update = layout.updates_running and self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if update:
            # nn.BatchNorm's bookkeeping: momentum None means a cumulative average.
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        if layout.group:
            return self._group_forward(x, update, momentum)
        sizes = [len(part) for part in (
            x.split(layout.span) if layout.chunks is None else x.chunk(layout.chunks))]
        running = (self.running_mean, self.running_var) if update else (None, None)
        if len(sizes) == 1:
            return F.batch_norm(x, *running, self.weight, self.bias, True, momentum, self.eps)
        return _ChunkedBatchNorm.apply(x, self.weight, self.bias, *running, sizes, momentum,
                                       self.eps)

    def _group_forward(self, x: torch.Tensor, update: bool, momentum: float) -> torch.Tensor:
        """Statistics over the clips of every rank in the group (Chan's parallel variance:
        each rank contributes count, mean and centred sum of squares, in its own row)."""
        group = self.span_layout.group
        channels = x.size(1)
        dims = [0, *range(2, x.dim())]
        count = x.numel() // channels
        # Statistics in float32 at least (a half-precision count overflows at 65504).
        wide = x if x.dtype in (torch.float32, torch.float64) else x.float()
        var, mean = torch.var_mean(wide, dim=dims, correction=0)
        row = torch.cat([x.new_full((1,), float(count)), mean, var * count])
        rows = [row if r == self.span_layout.rank else torch.zeros_like(row) for r in group]
        gathered = funcol.all_reduce(torch.stack(rows), "sum", _GROUPS[group])
        counts, means, m2s = gathered.split([1, channels, channels], dim=1)
        total = counts.sum()
        mean = (counts * means).sum(dim=0) / total
        var = (m2s.sum(dim=0) + (counts * (means - mean) ** 2).sum(dim=0)) / total
        if update:
            with torch.no_grad():
                n = float(total)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * (n / max(n - 1.0, 1.0)), momentum)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        shape = (1, channels) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype))


class _ChunkedBatchNorm(torch.autograd.Function):
    """Training-mode batch norm with statistics per contiguous chunk of the batch: one native
    kernel per chunk, each writing its slice of one output (no concatenation), so the forward
    moves the same bytes as plain BatchNorm; the backward adds one concatenation of the
    chunks' input gradients. The running statistics, if given, are updated by chunk 0."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, sizes, momentum, eps):
        out = torch.empty_like(x)  # x's memory format (contiguous or channels last)
        channels = x.size(1)
        # The kernels keep mean and 1/std in the accumulation type: float for half inputs.
        stat_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        means = x.new_empty((len(sizes), channels), dtype=stat_dtype)
        invstds = torch.empty_like(means)
        for i, (part, part_out) in enumerate(zip(x.split(sizes), out.split(sizes), strict=True)):
            first = i == 0
            torch.ops.aten.native_batch_norm.out(
                part, weight, bias, running_mean if first else None,
                running_var if first else None, True, momentum, eps,
                out=part_out, save_mean=means[i], save_invstd=invstds[i])
        ctx.save_for_backward(x, weight, means, invstds)
        ctx.sizes, ctx.eps = sizes, eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, means, invstds = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
                ctx.needs_input_grad[2]]
        grads_in, grad_weight, grad_bias = [], None, None
        for i, (part, grad) in enumerate(zip(x.split(ctx.sizes),
                                             grad_out.split(ctx.sizes),
                                             strict=True)):
            grad_in, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
                grad, part, weight, None, None, means[i], invstds[i], True, ctx.eps, mask)
            grads_in.append(grad_in)
            if mask[1]:
                grad_weight = grad_w if grad_weight is None else grad_weight + grad_w
            if mask[2]:
                grad_bias = grad_b if grad_bias is None else grad_bias + grad_b
        grad_x = torch.cat(grads_in) if mask[0] else None
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


def apply_bn_span(module: nn.Module, span: int | None, per_process_batch: int | None = None,
                  rank: int = 0, world_size: int = 1) -> nn.Module:
    """Make every ``nn.BatchNorm3d`` of ``module`` take its training statistics over ``span``
    clips (see the module docstring); ``span`` None or 0 restores plain BatchNorm.

    With several processes call it on every rank, in the same order, after
    ``torch.distributed`` is initialised and before wrapping the model: it creates the
    process groups (all of them, on every rank; no random numbers drawn). Without
    ``per_process_batch`` (one process only) the chunks are of ``span`` clips. Returns
    ``module``, changed in place; raises ValueError for a layout that cannot keep the span.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm3d)]
    if not span:
        for norm in norms:
            norm.__class__ = nn.BatchNorm3d
            norm.__dict__.pop("span_layout", None)
        return module
    layout = plan_bn_span(span, per_process_batch, rank, world_size)
    if layout.group and norms:
        size = len(layout.group)
        for start in range(0, world_size, size):
            ranks = tuple(range(start, start + size))
            created = dist.new_group(list(ranks))  # every rank creates every group
            if rank in ranks:
                _GROUPS[ranks] = created
    for norm in norms:
        norm.__class__ = SpanBatchNorm3d
        norm.span_layout = layout
    return module
