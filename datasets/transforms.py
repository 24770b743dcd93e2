"""The workload's clip transforms (WORKLOAD.md, "Clips"), one set of parameters per clip.

Train: scale so the short side is a random integer in [256, 320], random horizontal flip
(p = 0.5), random 224 x 224 crop, normalise (x / 255 - 0.45) / 0.225.
Val: short side 256, centre crop (256 for X3D-M, 224 for MViT-B), same normalisation.

Scaling is bilinear with half-pixel centres and no antialiasing, i.e. what
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` computes, the
resize of pytorchvideo's ``ShortSideScale`` / ``RandomShortSideScale`` that these transforms
describe. It runs on uint8 frames with OpenCV (``INTER_LINEAR`` has exactly that sampling
grid), so each output pixel is rounded to an integer: at most one grey level (1/255) from the
float computation, far below the JPEG error of the stored frames (tests check the bound).

Only the crop window is scaled (``plan_crop``). ``cv2.resize`` of a slice of the frame,
with the frame's scale factors, computes the scaled frame's own sample positions when the
slice starts at a source pixel that falls exactly on a scaled pixel; so the slice runs from
the nearest such pixel before the window (or after it, on the mirrored frame) to the last
pixel that the window's bilinear taps read. On average over the training parameters that
scales 1.3 crops' worth of pixels instead of the whole frame's 2.2 (426 x 320; 3.0 for
568 x 320); and only that window is decoded (``Frames.windows``: rows above and below it
are skipped, columns beyond it are not upsampled or colour-converted). The pixels are those
of scaling the whole frame but for OpenCV's float32 sample positions (one grey level apart
now and then; both are within the bound). ``warpAffine``
and ``remap``, which compute the window alone, are exact in OpenCV 5 but no faster
(benchmarks/loader.py).

Clips leave the loader as uint8 T x H x W x C, the layout in which the scaled frames come
out of OpenCV; the normalisation runs on the device (``transform.normalize(batch)``), and
so does the move of the channels to the front (C x T x H x W, what the models take), which
costs the device one uint8 copy of the batch and spares each loader worker the split into
colour planes, 0.7 ms of its 10 ms per clip (benchmarks/loader.py). That gives the model bit
for bit the same input as normalising on the CPU, moves a quarter of the bytes through worker
queues, pinned memory and the PCIe bus, and spares each loader worker the float pass, which
would add 65% to 85% to its time per clip.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

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


@dataclass(frozen=True)
class AxisWindow:
    """One axis of a crop window: source pixels ``[start, stop)`` are scaled (after mirroring
    them if ``mirrored``) and the crop begins at index ``offset`` of the result. Only pixels
    ``[valid_start, valid_stop)`` are read by the crop's bilinear taps (with a pixel of margin
    for OpenCV's float32 positions); the others only make scaled pixels outside the crop, so
    they need not be decoded."""

    start: int
    stop: int
    offset: int
    mirrored: bool
    valid_start: int
    valid_stop: int


def axis_window(
    size: int, new_size: int, first: int, length: int, mirrored: bool = False
) -> AxisWindow:
    """The source slice of an axis of ``size`` pixels scaled to ``new_size`` whose scaling
    gives scaled pixels ``[first, first + length)`` exactly as scaling the whole axis does;
    with ``mirrored``, the slice is taken from the mirrored axis (scaling commutes with
    mirroring), which is shorter when the window lies near the far end."""
    if mirrored:
        w = axis_window(size, new_size, new_size - first - length, length)
        return AxisWindow(size - w.stop, size - w.start, w.offset, True, size - w.valid_stop,
                          size - w.valid_start)
    # cv2.resize(fx=new_size/size) maps output j of a slice starting at source pixel x0 to
    # x0 + (j + 0.5) * size / new_size - 0.5: scaled pixel j + a of the whole axis when
    # x0 = a * size / new_size. So the slice starts at an anchor a, a multiple of `step`.
    step = new_size // math.gcd(size, new_size)
    # When enlarging, the first `lead` outputs of a slice have their left tap before the
    # slice (OpenCV clamps it to the slice's first pixel): right only at the axis' start.
    lead = (new_size + size - 1) // (2 * size)
    anchor = max(0, (first - lead) // step * step)
    # Left tap of the last scaled pixel, floor((first + length - 0.5) * size / new_size - 0.5);
    # the slice holds its right tap and one more pixel, as OpenCV's float32 coordinates may
    # round up to the next pixel.
    last = ((2 * (first + length) - 1) * size - new_size) // (2 * new_size)
    start, stop = anchor * size // new_size, min(size, last + 3)
    # Left tap of the first scaled pixel, less one pixel (float32 may round down).
    valid_start = max(start, ((2 * first + 1) * size - new_size) // (2 * new_size) - 1)
    valid_stop = stop
    # cv2.resize copies a slice whose size it would not change (dsize == ssize) instead of
    # scaling it; lengthen the slice until it changes (at the latest at the end of the axis,
    # where size - start != new_size - anchor whenever the axis is scaled).
    while new_size != size and stop < size and round((stop - start) * new_size / size) == (
        stop - start
    ):
        stop += 1
    return AxisWindow(start, stop, first - anchor, False, valid_start, valid_stop)


# cv2.flip's code for mirroring (rows, columns); None: no flip.
FLIP_CODES = {(False, False): None, (True, False): 0, (False, True): 1, (True, True): -1}


@dataclass(frozen=True)
class CropPlan:
    """How every frame of a clip becomes its crop (``plan_crop``): the source window is
    mirrored by ``flip_source`` (a cv2.flip code, or None), scaled by ``scale`` (cv2.resize's
    fx, fy; None at scale 1), cut at the offsets, and the crop mirrored by ``flip_crop``."""

    rows: AxisWindow
    cols: AxisWindow
    scale: tuple[float, float] | None
    flip_source: int | None
    flip_crop: int | None
    crop: int


def plan_crop(height: int, width: int, p: ClipParams) -> CropPlan:
    """The cheapest exact way to get the crop of ``p`` from a ``height`` x ``width`` frame."""
    new_h, new_w = resized_size(height, width, p.short_side)
    # The window in the unflipped scaled frame (flip-then-crop = crop mirrored, then flip).
    left = new_w - p.crop - p.left if p.flip else p.left
    scaled = (new_h, new_w) != (height, width)

    def work(rows: AxisWindow, cols: AxisWindow) -> float:
        # cv2.resize makes a horizontal pass over the source rows and a vertical one over the
        # output rows, both as wide as the output; mirroring the source slice first (one
        # cv2.flip pass) costs about a quarter of a resize pass per pixel (measured).
        in_h, in_w = rows.stop - rows.start, cols.stop - cols.start
        out_h, out_w = round(in_h * new_h / height), round(in_w * new_w / width)
        return out_w * (in_h + out_h) + (in_h * in_w / 4 if rows.mirrored or cols.mirrored else 0)

    mirror = (False, True) if scaled else (False,)
    row_windows = [axis_window(height, new_h, p.top, p.crop, m) for m in mirror]
    col_windows = [axis_window(width, new_w, left, p.crop, m) for m in mirror]
    rows, cols = min(itertools.product(row_windows, col_windows), key=lambda rc: work(*rc))
    return CropPlan(
        rows,
        cols,
        (new_w / width, new_h / height) if scaled else None,
        FLIP_CODES[rows.mirrored, cols.mirrored],
        FLIP_CODES[rows.mirrored, cols.mirrored != p.flip],
        p.crop,
    )


class Frames(Protocol):
    """The frames of one clip, all of one size: ``ArrayFrames`` for decoded frames,
    ``datasets.decode.ClipFrames`` for JPEG frames decoded only where a crop needs them."""

    def __len__(self) -> int: ...

    def size(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        ...

    def windows(self, rows: AxisWindow, cols: AxisWindow) -> Iterator[np.ndarray]:
        """Rows ``rows.start:stop`` and columns ``cols.start:stop`` of each frame, as H x W x 3
        uint8 arrays, in order; pixels outside the valid rows and columns may hold anything."""
        ...


class ArrayFrames:
    """Frames already decoded (H x W x 3 uint8 arrays of equal shape)."""

    def __init__(self, frames: Sequence[np.ndarray]):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[:2]

    def windows(self, rows: AxisWindow, cols: AxisWindow) -> Iterator[np.ndarray]:
        size = self.size()
        for frame in self.frames:
            if frame.shape[:2] != size:
                raise ValueError(f"frames of {frame.shape[:2]} and {size} in one clip")
            yield source_window(frame, rows, cols)


def source_window(frame: np.ndarray, rows: AxisWindow, cols: AxisWindow) -> np.ndarray:
    """The source slice of a decoded frame that ``rows`` and ``cols`` scale (a view)."""
    return frame[rows.start : rows.stop, cols.start : cols.stop]


def scale_window(window: np.ndarray, plan: CropPlan) -> np.ndarray:
    """The crop, before ``plan.flip_crop``, of a frame's source window (rows
    ``plan.rows.start:stop``, columns ``plan.cols.start:stop``); may be a view."""
    if plan.flip_source is not None:
        window = cv2.flip(window, plan.flip_source)
    if plan.scale is not None:
        fx, fy = plan.scale
        # dsize (0, 0) makes OpenCV scale by exactly fx, fy; with an explicit size it would
        # scale by the ratio of the slice's sizes, which is not quite the frame's.
        window = cv2.resize(window, (0, 0), fx=fx, fy=fy, interpolation=cv2.INTER_LINEAR)
    rows, cols = plan.rows, plan.cols
    return window[rows.offset : rows.offset + plan.crop, cols.offset : cols.offset + plan.crop]


def render_clip(frames: Frames, params_for) -> torch.Tensor:
    """Scale, flip and crop every frame with one set of parameters.

    ``params_for(height, width)`` returns the ClipParams. Only each frame's source window is
    asked for (``frames.windows``). Returns uint8 T x crop x crop x 3."""
    num_frames = len(frames)
    if num_frames == 0:
        raise ValueError("a clip needs at least one frame")
    height, width = frames.size()
    plan = plan_crop(height, width, params_for(height, width))
    out = np.empty((num_frames, plan.crop, plan.crop, 3), np.uint8)
    for t, window in enumerate(frames.windows(plan.rows, plan.cols)):
        # Each frame goes into the clip while it is still in the CPU cache.
        scaled = scale_window(window, plan)
        if plan.flip_crop is None:
            np.copyto(out[t], scaled)
        else:
            cv2.flip(scaled, plan.flip_crop, dst=out[t])
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

    def __call__(self, frames: Frames, rng: np.random.Generator) -> torch.Tensor:
        """A clip's frames -> uint8 T x crop x crop x 3."""
        return render_clip(frames, lambda h, w: self.params(h, w, rng))

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

    def __call__(self, frames: Frames, rng: np.random.Generator | None = None) -> torch.Tensor:
        return render_clip(frames, self.params)

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        return normalize_clips(clips, self.mean, self.std)
