"""The workload's clip transforms (WORKLOAD.md, "Clips"), one set of parameters per clip.

Train: scale so the short side is a random integer in [256, 320], random horizontal flip
(p = 0.5), random 224 x 224 crop, normalise (x / 255 - 0.45) / 0.225.
Val: short side 256, centre crop (256 for X3D-M, 224 for MViT-B), same normalisation.

Scaling is bilinear with half-pixel centres and no antialiasing, i.e. what
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` computes, the
resize of pytorchvideo's ``ShortSideScale`` / ``RandomShortSideScale`` that these transforms
describe. It runs on uint8 frames (``datasets.bilinear``), so each output pixel is rounded to
an integer: within 0.57 of a grey level of the float computation, and equal to it rounded
for all but about 0.2% of pixels, far below the JPEG error of the stored frames (tests).

Only the crop is computed: ``crop_taps`` gives the source pixels and weights of its rows
and columns (the columns reversed for a flipped crop), only the window those taps read is
decoded (``Frames.windows``: rows above and below it are skipped, columns beyond it are not
upsampled or colour-converted), and each window is scaled straight into its frame of the
clip (the window is 0.46 of a 426 x 320 frame's area, on average over the training
parameters).

Clips leave the loader as uint8 T x H x W x C, the layout in which the scaled frames come
out of the scaling; the normalisation runs on the device (``transform.normalize(batch)``), and
so does the move of the channels to the front (C x T x H x W, what the models take), which
costs the device one uint8 copy of the batch and spares each loader worker the split into
colour planes, 0.7 ms per clip (docs/perf/loader.md). That gives the model bit
for bit the same input as normalising on the CPU, moves a quarter of the bytes through worker
queues, pinned memory and the PCIe bus, and spares each loader worker the float pass, which
would add 65% to 85% to its time per clip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from datasets.bilinear import CropScaler, Taps, axis_taps

MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class ClipParams:
    """One clip's spatial parameters, in the workload's order: scale, flip, crop.
    ``top``/``left`` place the crop in the scaled frame after the flip."""

    short_side: int
    flip: bool
    top: int
    left: int
    crop: int


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after scaling the short side to ``short_side``, keeping the aspect
    ratio with the long side rounded down, as torchvision's and pytorchvideo's resizes do."""
    if height <= width:
        return short_side, width * short_side // height
    return height * short_side // width, short_side


def normalize_clips(clips: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 clips (..., T, H, W, C) -> float32 (..., C, T, H, W), ``(x / 255 - mean) / std``
    per channel, on the clips' device: the channels-first layout the models take, made
    contiguous before the float operations."""
    shape = (-1, 1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=clips.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=clips.device).view(shape)
    return (clips.movedim(-1, -4).contiguous().float() / 255 - m) / s


def crop_taps(height: int, width: int, p: ClipParams) -> tuple[Taps, Taps]:
    """The row and column taps of the crop of ``p`` in a ``height`` x ``width`` frame: scale
    to short side ``p.short_side``, flip if ``p.flip``, crop at ``p.top``, ``p.left``."""
    new_h, new_w = resized_size(height, width, p.short_side)
    return (axis_taps(height, new_h, p.top, p.crop),
            axis_taps(width, new_w, p.left, p.crop, mirrored=p.flip))


class Frames(Protocol):
    """The frames of one clip, all of one size: ``ArrayFrames`` for decoded frames,
    ``datasets.decode.ClipFrames`` for JPEG frames decoded only where a crop needs them."""

    def __len__(self) -> int: ...

    def size(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        ...

    def windows(self, rows: tuple[int, int], cols: tuple[int, int]) -> Iterator[np.ndarray]:
        """Rows ``[top, bottom)`` and columns ``[left, right)`` of each frame, as H x W x 3
        uint8 arrays, in order."""
        ...


class ArrayFrames:
    """Frames already decoded (H x W x 3 uint8 arrays of equal shape)."""

    def __init__(self, frames: Sequence[np.ndarray]):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[:2]

    def windows(self, rows: tuple[int, int], cols: tuple[int, int]) -> Iterator[np.ndarray]:
        size = self.size()
        for frame in self.frames:
            if frame.shape[:2] != size:
                raise ValueError(f"frames of {frame.shape[:2]} and {size} in one clip")
            yield frame[rows[0] : rows[1], cols[0] : cols[1]]


def render_clip(frames: Frames, params_for, out: np.ndarray | None = None) -> torch.Tensor:
    """Scale, flip and crop every frame with one set of parameters.

    ``params_for(height, width)`` returns the ClipParams. Only each frame's window is
    asked for (``frames.windows``). Returns uint8 T x crop x crop x 3: ``out`` if given (a
    clip of a batch being filled), else a new array."""
    num_frames = len(frames)
    if num_frames == 0:
        raise ValueError("a clip needs at least one frame")
    height, width = frames.size()
    params = params_for(height, width)
    rows, cols = crop_taps(height, width, params)
    scale = CropScaler(rows, cols)
    shape = (num_frames, params.crop, params.crop, 3)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape:
        raise ValueError(f"clip of shape {shape} into an output of shape {out.shape}")
    # Each window is scaled into the clip while it is still in the CPU cache.
    for t, window in enumerate(frames.windows((rows.start, rows.stop), (cols.start, cols.stop))):
        scale(window, out[t])
    return torch.from_numpy(out)


def _check_fits(height: int, width: int, short_side: int, crop: int) -> tuple[int, int]:
    new_h, new_w = resized_size(height, width, short_side)
    if min(new_h, new_w) < crop:
        raise ValueError(
            f"a {width}x{height} frame scaled to short side {short_side} is {new_w}x{new_h}, "
            f"smaller than the {crop}x{crop} crop"
        )
    return new_h, new_w


@dataclass(frozen=True)
class TrainTransform:
    """Random short-side scale, flip and crop; ``rng`` draws one set per clip."""

    short_side_range: tuple[int, int] = (256, 320)
    crop: int = 224
    flip_p: float = 0.5
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD

    def params(self, height: int, width: int, rng: np.random.Generator) -> ClipParams:
        lo, hi = self.short_side_range
        short_side = int(rng.integers(lo, hi + 1))
        flip = bool(rng.random() < self.flip_p)
        new_h, new_w = _check_fits(height, width, short_side, self.crop)
        top = int(rng.integers(0, new_h - self.crop + 1))
        left = int(rng.integers(0, new_w - self.crop + 1))
        return ClipParams(short_side, flip, top, left, self.crop)

    def __call__(self, frames: Frames, rng: np.random.Generator,
                 out: np.ndarray | None = None) -> torch.Tensor:
        """A clip's frames -> uint8 T x crop x crop x 3 (into ``out`` if given)."""
        return render_clip(frames, lambda h, w: self.params(h, w, rng), out)

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        return normalize_clips(clips, self.mean, self.std)


@dataclass(frozen=True)
class ValTransform:
    """Short side ``short_side``, centre crop ``crop``; deterministic."""

    short_side: int = 256
    crop: int = 256
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD

    def params(self, height: int, width: int, rng: np.random.Generator | None = None) -> ClipParams:
        new_h, new_w = _check_fits(height, width, self.short_side, self.crop)
        # torchvision's center_crop offsets (Python round: half to even).
        top = int(round((new_h - self.crop) / 2.0))
        left = int(round((new_w - self.crop) / 2.0))
        return ClipParams(self.short_side, False, top, left, self.crop)

    def __call__(self, frames: Frames, rng: np.random.Generator | None = None,
                 out: np.ndarray | None = None) -> torch.Tensor:
        return render_clip(frames, self.params, out)

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        return normalize_clips(clips, self.mean, self.std)
