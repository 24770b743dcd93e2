"""The loader benchmark's timing, and its tables of choices: JPEG decoders, and ways to get
a clip's scaled, flipped crop from a decoded frame (``python -m perf.loader_speed`` prints
them after its main table; docs/perf/loader.md)."""

from __future__ import annotations

import io
import sys
import time

import cv2
import numpy as np
import simplejpeg
import torch
from PIL import Image
from torchvision.io import decode_jpeg
from tqdm import tqdm

from datasets.bilinear import CropScaler, use_avx2
from datasets.jpeg_window import decode_window
from datasets.transforms import ClipParams, crop_taps, resized_size


def plain_c(fn):
    """``fn`` with bilinear.c's plain C instead of its AVX2 code (CPUs without AVX2)."""
    def call(*args):
        previous = use_avx2(False)
        try:
            return fn(*args)
        finally:
            use_avx2(previous)
    return call


def time_methods(methods: dict, items: list[int], rounds: int) -> dict[str, float]:
    """CPU seconds per item of each method: every item's best of ``rounds`` runs, averaged
    over the items. The methods take turns round by round, so that load from other
    processes hits them alike, and each item's best drops the runs that other processes
    interrupted (a pass's best keeps every interruption of that pass). CPU time (of the
    whole process; every method is single-threaded) leaves out the time that other
    processes hold the core, which wall time on a shared machine does not."""
    best = {name: [float("inf")] * len(items) for name in methods}
    for fn in methods.values():  # warm-up (imports, file cache, h5 handles)
        fn(items[0])
    for _ in tqdm(range(rounds), desc="rounds", file=sys.stderr):
        for name, fn in methods.items():
            times = best[name]
            for k, item in enumerate(items):
                t0 = time.process_time()
                fn(item)
                times[k] = min(times[k], time.process_time() - t0)
    return {name: sum(times) / len(times) for name, times in best.items()}


def decoder_table(jpegs: list[bytes], rounds: int) -> None:
    """Per-frame decode time of each JPEG decoder, and what a 7/8 DCT-scaled decode changes."""
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    h, w = simplejpeg.decode_jpeg(jpegs[0], colorspace="RGB").shape[:2]
    decoders = {
        "simplejpeg (libjpeg-turbo)": lambda k: simplejpeg.decode_jpeg(jpegs[k], colorspace="RGB"),
        "simplejpeg to RGBX": lambda k: simplejpeg.decode_jpeg(jpegs[k], colorspace="RGBX"),
        "cv2.imdecode": lambda k: cv2.imdecode(np.frombuffer(jpegs[k], np.uint8),
                                               cv2.IMREAD_COLOR_RGB),
        "PIL Image.open+convert": lambda k: np.asarray(
            Image.open(io.BytesIO(jpegs[k])).convert("RGB")),
        "torchvision.io.decode_jpeg": lambda k: decode_jpeg(tensors[k]),
        "simplejpeg DCT-scaled 7/8": lambda k: simplejpeg.decode_jpeg(
            jpegs[k], colorspace="RGB", min_width=w * 7 // 8, min_height=h * 7 // 8),
        "window decoder (ours), whole frame": lambda k: decode_window(
            jpegs[k], (h, w), (0, h), (0, w)),
        "window decoder (ours), 1x1 window: entropy decoding alone": lambda k: decode_window(
            jpegs[k], (h, w), (0, 1), (0, 1)),
    }
    times = time_methods(decoders, list(range(len(jpegs))), rounds)
    print(f"\n| JPEG decoder, one {w}x{h} frame | ms |\n|---|---:|")
    for name, s in times.items():
        print(f"| {name} | {s * 1e3:.3f} |")
    # A val-size (short side 256) frame from a 7/8 decode vs from the full decode.
    full = simplejpeg.decode_jpeg(jpegs[0], colorspace="RGB")
    scaled = simplejpeg.decode_jpeg(jpegs[0], colorspace="RGB", min_width=w * 7 // 8,
                                    min_height=h * 7 // 8)
    size = (w * 256 // h, 256)
    diff = np.abs(cv2.resize(full, size, interpolation=cv2.INTER_LINEAR).astype(int)
                  - cv2.resize(scaled, size, interpolation=cv2.INTER_LINEAR))
    print(f"\n7/8 decode then resize to short side 256 vs full decode then resize: "
          f"max {diff.max()}, mean {diff.mean():.2f} grey levels")


def window_matrix(height: int, width: int, p: ClipParams) -> np.ndarray:
    """warpAffine's output-to-source map of the crop window, the flip included."""
    new_h, new_w = resized_size(height, width, p.short_side)
    sx, sy = width / new_w, height / new_h
    if p.flip:  # output column j is scaled column new_w - 1 - (left + j)
        row_x = [-sx, 0, (new_w - p.left - 0.5) * sx - 0.5]
    else:
        row_x = [sx, 0, (p.left + 0.5) * sx - 0.5]
    return np.array([row_x, [0, sy, (p.top + 0.5) * sy - 0.5]])


def resize_table(jpegs: list[bytes], params: list[ClipParams], rounds: int) -> None:
    """Ways to get a clip's scaled, flipped crop from a decoded frame (the clips' own
    parameters): time per frame and difference from float bilinear (F.interpolate,
    align_corners=False) of the whole frame."""
    frames = [simplejpeg.decode_jpeg(j, colorspace="RGB") for j in jpegs]
    rgbx = [simplejpeg.decode_jpeg(j, colorspace="RGBX") for j in jpegs]
    h, w = frames[0].shape[:2]
    scalers = [CropScaler(*crop_taps(h, w, p)) for p in params]
    matrices = [window_matrix(h, w, p) for p in params]
    float_maps = []
    for m, p in zip(matrices, params, strict=True):
        grid = np.meshgrid(m[0, 0] * np.arange(p.crop) + m[0, 2],
                           m[1, 1] * np.arange(p.crop) + m[1, 2])
        float_maps.append([g.astype(np.float32) for g in grid])
    fixed_maps = [cv2.convertMaps(*maps, cv2.CV_16SC2) for maps in float_maps]
    tensors = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in frames]
    affine = dict(flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    remap = dict(interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def whole_frame(k: int, interpolation: int | None) -> np.ndarray:
        """Scale the whole frame (None: torch's uint8 interpolate), then flip and crop."""
        p, size = params[k], resized_size(h, w, params[k].short_side)
        if interpolation is None:
            scaled = torch.nn.functional.interpolate(tensors[k], size=size, mode="bilinear")
            scaled = scaled[0].permute(1, 2, 0).numpy()
        else:
            scaled = cv2.resize(frames[k], size[::-1], interpolation=interpolation)
        left = size[1] - p.crop - p.left if p.flip else p.left
        window = scaled[p.top : p.top + p.crop, left : left + p.crop]
        return cv2.flip(window, 1) if p.flip else window.copy()

    def crop_only(k: int) -> np.ndarray:
        rows, cols = scalers[k].rows, scalers[k].cols
        window = frames[k][rows.start : rows.stop, cols.start : cols.stop]
        return scalers[k](window, np.empty((len(rows.offsets), len(cols.offsets), 3), np.uint8))

    crop = params[0].crop
    ways = {
        "cv2.resize INTER_LINEAR of the whole frame, then crop": lambda k: whole_frame(
            k, cv2.INTER_LINEAR),
        "bilinear.c, the crop only (ours, AVX2)": crop_only,
        "bilinear.c, the crop only (ours, plain C)": plain_c(crop_only),
        "cv2.resize INTER_LINEAR_EXACT of the whole frame": lambda k: whole_frame(
            k, cv2.INTER_LINEAR_EXACT),
        "torch interpolate uint8 of the whole frame": lambda k: whole_frame(k, None),
        "cv2.warpAffine of the window": lambda k: cv2.warpAffine(
            frames[k], matrices[k], (crop, crop), **affine),
        "cv2.warpAffine of the window, RGBX frame": lambda k: cv2.warpAffine(
            rgbx[k], matrices[k], (crop, crop), **affine)[..., :3],
        "cv2.remap of the window, float maps": lambda k: cv2.remap(
            frames[k], *float_maps[k], **remap),
        "cv2.remap of the window, fixed-point maps": lambda k: cv2.remap(
            frames[k], *fixed_maps[k], **remap),
    }
    times = time_methods(ways, list(range(len(frames))), rounds)
    errors = {name: [] for name in ways}
    for k, p in enumerate(params):
        size = resized_size(h, w, p.short_side)
        exact = torch.nn.functional.interpolate(tensors[k].float(), size=size, mode="bilinear")
        exact = exact[0].flip(-1) if p.flip else exact[0]
        exact = exact[:, p.top : p.top + p.crop, p.left : p.left + p.crop].permute(1, 2, 0)
        for name, way in ways.items():
            errors[name].append((torch.from_numpy(np.asarray(way(k))).float() - exact).abs())
    sides = sorted({p.short_side for p in params})
    print(f"\n| {w}x{h} frame -> scaled, flipped {crop} crop ({len(frames)} frames, short sides "
          f"{sides[0]}-{sides[-1]}) | ms/frame | max error | mean error |")
    print("|---|---:|---:|---:|")
    for name, s in times.items():
        error = torch.stack(errors[name])
        print(f"| {name} | {s * 1e3:.3f} | {error.max():.2f} | {error.mean():.3f} |")
