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
568 x 320). The pixels are those of scaling the whole frame but for OpenCV's float32 sample
positions (one grey level apart now and then; both are within the bound). ``warpAffine``
and ``remap``, which compute the window alone, are exact in OpenCV 5 but no faster
(benchmarks/loader.py).

Clips leave the loader as uint8 C x T x H x W; the normalisation runs on the device
(``transform.normalize(batch)``). That gives the model bit for bit the same input as
normalising on the CPU, moves a quarter of the bytes through worker queues, pinned memory
and the PCIe bus, and spares each loader worker the float pass, which would add 40% to 70% to
its time per clip (benchmarks/loader.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

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
    """uint8 clips (..., C, T, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, on the
    clips' device."""
    shape = (-1, 1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=clips.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=clips.device).view(shape)
    return (clips.float() / 255 - m) / s


@dataclass(frozen=True)
class AxisWindow:
    """One axis of a crop window: source pixels ``[start, stop)`` are scaled (after mirroring
    them if ``mirrored``) and the crop begins at index ``offset`` of the result."""

    start: int
    stop: int
    offset: int
    mirrored: bool


def axis_window(
    size: int, new_size: int, first: int, length: int, mirrored: bool = False
) -> AxisWindow:
    """The source slice of an axis of ``size`` pixels scaled to ``new_size`` whose scaling
    gives scaled pixels ``[first, first + length)`` exactly as scaling the whole axis does;
    with ``mirrored``, the slice is taken from the mirrored axis (scaling commutes with
    mirroring), which is shorter when the window lies near the far end."""
    if mirrored:
        w = axis_window(size, new_size, new_size - first - length, length)
        return AxisWindow(size - w.stop, size - w.start, w.offset, True)
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
    # cv2.resize copies a slice whose size it would not change (dsize == ssize) instead of
    # scaling it; lengthen the slice until it changes (at the latest at the end of the axis,
    # where size - start != new_size - anchor whenever the axis is scaled).
    while new_size != size and stop < size and round((stop - start) * new_size / size) == (
        stop - start
    ):
        stop += 1
    return AxisWindow(start, stop, first - anchor, False)


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


def scaled_window(frame: np.ndarray, plan: CropPlan) -> np.ndarray:
    """The crop of one H x W x 3 uint8 frame, before ``plan.flip_crop`` (a view)."""
    rows, cols = plan.rows, plan.cols
    window = frame[rows.start : rows.stop, cols.start : cols.stop]
    if plan.flip_source is not None:
        window = cv2.flip(window, plan.flip_source)
    if plan.scale is not None:
        fx, fy = plan.scale
        # dsize (0, 0) makes OpenCV scale by exactly fx, fy; with an explicit size it would
        # scale by the ratio of the slice's sizes, which is not quite the frame's.
        window = cv2.resize(window, (0, 0), fx=fx, fy=fy, interpolation=cv2.INTER_LINEAR)
    return window[rows.offset : rows.offset + plan.crop, cols.offset : cols.offset + plan.crop]


def render_clip(frames: Iterable[np.ndarray], num_frames: int, params_for) -> torch.Tensor:
    """Scale, flip and crop every frame with one set of parameters.

    ``frames`` are H x W x 3 uint8 arrays of equal shape; ``params_for(height, width)``
    returns the ClipParams. Returns uint8 3 x T x crop x crop."""
    out = None
    for t, frame in enumerate(frames):
        if out is None:
            plan = plan_crop(*frame.shape[:2], params_for(*frame.shape[:2]))
            out = np.empty((3, num_frames, plan.crop, plan.crop), np.uint8)
            crop = np.empty((plan.crop, plan.crop, 3), np.uint8)
        window = scaled_window(frame, plan)
        if plan.flip_crop is None:
            np.copyto(crop, window)
        else:
            cv2.flip(window, plan.flip_crop, dst=crop)
        # Channel planes straight into the C x T x H x W output while the frame is in cache
        # (twice as fast as building T x H x W x C and transposing at the end); cv2.split
        # writes into the given planes.
        cv2.split(crop, [out[0, t], out[1, t], out[2, t]])
    if out is None or t != num_frames - 1:
        raise ValueError(f"expected {num_frames} frames, got {0 if out is None else t + 1}")
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

    def __call__(self, frames, rng: np.random.Generator) -> torch.Tensor:
        """Decoded frames (a sized iterable of H x W x 3 uint8) -> uint8 3 x T x crop x crop."""
        return render_clip(frames, len(frames), lambda h, w: self.params(h, w, rng))

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

    def __call__(self, frames, rng: np.random.Generator | None = None) -> torch.Tensor:
        return render_clip(frames, len(frames), self.params)

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        return normalize_clips(clips, self.mean, self.std)
