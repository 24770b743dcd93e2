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

Clips leave the loader as uint8 C x T x H x W; the normalisation runs on the device
(``transform.normalize(batch)``). That gives the model bit for bit the same input as
normalising on the CPU, moves a quarter of the bytes through worker queues, pinned memory
and the PCIe bus, and spares each loader worker the float pass, which would add 40% to 70% to
its time per clip (benchmarks/loader.py).
"""

from __future__ import annotations

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


def render_clip(frames: Iterable[np.ndarray], num_frames: int, params_for) -> torch.Tensor:
    """Scale, flip and crop every frame with one set of parameters.

    ``frames`` are H x W x 3 uint8 arrays of equal shape; ``params_for(height, width)``
    returns the ClipParams. Returns uint8 3 x T x crop x crop."""
    out = None
    for t, frame in enumerate(frames):
        if out is None:
            height, width = frame.shape[:2]
            p = params_for(height, width)
            new_h, new_w = resized_size(height, width, p.short_side)
            # Flip-then-crop at `left` == crop at the mirrored offset, then flip.
            left = new_w - p.crop - p.left if p.flip else p.left
            rows, cols = slice(p.top, p.top + p.crop), slice(left, left + p.crop)
            out = np.empty((3, num_frames, p.crop, p.crop), np.uint8)
        if (new_h, new_w) != (height, width):
            frame = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        # Channel planes straight into the C x T x H x W output while the frame is in cache
        # (twice as fast as building T x H x W x C and transposing at the end).
        for c, plane in enumerate(cv2.split(frame[rows, cols])):
            if p.flip:
                cv2.flip(plane, 1, dst=out[c, t])
            else:
                out[c, t] = plane
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
