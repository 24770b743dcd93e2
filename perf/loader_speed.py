"""Clip loading speed of one loader worker: our ClipDataset on JPEG and HDF5 frame stores
against decoding the mp4 on the fly (the original benchmark), a PIL-per-frame loader (as
3D-ResNets-PyTorch does) and the bare JPEG decode of the same frames.

    .venv/bin/python -m perf.loader_speed [--quick] [--data DIR] [--clips N] [--rounds N]

Every method loads the same training clips with the same transform parameters (short side
in [256, 320], flip, 224 crop), single-threaded like a DataLoader worker, timed in CPU time;
two more tables compare JPEG decoders and ways to scale and crop a frame. By default the
videos are a small synthetic set with Kinetics-like frames (480x360, 10 s, 30 fps, H.264
with 250-frame GOPs) made once with ``python -m preprocess synth``, and the stores are built
from them with ``python -m preprocess frames`` (short side 320, JPEG quality 90: 426x320).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import simplejpeg
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from datasets import ClipDataset, TrainTransform, clip_rng, normalize_clips
from datasets.decode import ClipFrames
from datasets.loader import init_worker
from datasets.transforms import ArrayFrames, ClipParams, crop_taps, render_clip, resized_size
from formats.store import StoreError, frame_name
from perf.loader_choices import decoder_table, plain_c, resize_table, time_methods
from preprocess.frame_bytes import read_frame_bytes
from preprocess.resample import kept_frame_indices

DEFAULT_DATA = Path("data/bench/loader_videos")
SYNTH_ARGS = ["--classes", "2", "--train-per-class", "3", "--val-per-class", "1",
              "--duration", "10", "--width", "480", "--height", "360", "--fps", "30"]


class BenchError(Exception):
    """Bad benchmark options or data."""


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise BenchError(f"command failed: {' '.join(cmd)}")


def prepare(data: Path, work: Path) -> dict[str, Path]:
    """The jpg and hdf5 stores of ``data``: the Makefile's (data/frames/<name>_<fmt>) if
    present, else built under ``work``. Makes the default videos if they are missing."""
    if not (data / "train").is_dir():
        if data != DEFAULT_DATA:
            raise BenchError(f"{data}: no train/ folder; give a dataset in Kinetics layout")
        run([sys.executable, "-m", "preprocess", "synth", "--out", str(data), *SYNTH_ARGS])
    stores = {}
    for fmt in ("jpg", "hdf5"):
        store = Path("data/frames") / f"{data.name}_{fmt}"
        if not (store / "train_index.csv").is_file():
            store = work / f"{data.name}_{fmt}"
            if not (store / "train_index.csv").is_file():
                run([sys.executable, "-m", "preprocess", "frames", "--data", str(data),
                     "--out", str(store), "--format", fmt])
        stores[fmt] = store
    return stores


def pick_clips(ds: ClipDataset, count: int) -> list[int]:
    """``count`` clip indices spread evenly over the split."""
    return np.linspace(0, len(ds) - 1, min(count, len(ds))).round().astype(int).tolist()


def pyav_frames(ds: ClipDataset, data: Path, index: int) -> list[np.ndarray]:
    """Decode a clip's frames from the mp4 as torchvision's read_video did: seek to the key
    frame before the clip, decode, convert every frame in the clip's time range to RGB, then
    keep the 15-fps frames (VideoClips)."""
    record = ds.records[int(ds.clip_video[index])]
    kept = kept_frame_indices(record.source_frames, record.source_fps)
    wanted = kept[ds.clip_frames(index)].tolist()
    first, last = wanted[0], wanted[-1]
    rgb = {}
    with av.open(str(data / ds.split / f"{record.video_id}.mp4")) as container:
        stream = container.streams.video[0]
        fps, base, start = record.source_fps, stream.time_base, stream.start_time or 0
        container.seek(int(first / fps / base) + start, backward=True, any_frame=False,
                       stream=stream)
        for frame in container.decode(stream):
            i = round(float((frame.pts - start) * base) * fps)
            if i > last:
                break
            if i >= first:
                rgb[i] = frame.to_ndarray(format="rgb24")
    return [rgb[i] for i in wanted]


def pyav_clip(ds: ClipDataset, data: Path, index: int, transform: TrainTransform):
    """(a) The original pipeline: PyAV decode, then the transform on float tensors in
    pytorchvideo's order (/255, normalise, short-side scale, crop, flip)."""
    video = torch.from_numpy(np.stack(pyav_frames(ds, data, index)))  # T H W C
    params = transform.params(video.shape[1], video.shape[2], clip_rng(ds.seed, 0, index))
    x = video.permute(3, 0, 1, 2).float() / 255  # C T H W
    mean = torch.tensor(transform.mean).view(3, 1, 1, 1)
    x = (x - mean) / torch.tensor(transform.std).view(3, 1, 1, 1)
    new_h, new_w = resized_size(x.shape[2], x.shape[3], params.short_side)
    x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear",
                                        align_corners=False)
    x = x.flip(-1) if params.flip else x
    return x[..., params.top : params.top + params.crop, params.left : params.left + params.crop]


def pyav_ours(ds: ClipDataset, data: Path, index: int, transform: TrainTransform):
    """(a') PyAV decode as in (a), then our uint8 transform."""
    frames = ArrayFrames(pyav_frames(ds, data, index))
    rng = clip_rng(ds.seed, 0, index)
    return render_clip(frames, lambda h, w: transform.params(h, w, rng))


def pil_clip(ds: ClipDataset, index: int, transform: TrainTransform, mean, std):
    """(b) 3D-ResNets-PyTorch style: PIL.Image.open per frame file, torchvision transforms
    per frame (resize, flip, crop, to_tensor, normalize), stack to C x T x H x W."""
    record = ds.records[int(ds.clip_video[index])]
    params = transform.params(record.height, record.width, clip_rng(ds.seed, 0, index))
    out = []
    for i in ds.clip_frames(index):
        with open(ds.store / record.location / frame_name(i), "rb") as f:
            with Image.open(f) as img:
                img = img.convert("RGB")
        img = TF.resize(img, params.short_side)
        if params.flip:
            img = TF.hflip(img)
        img = TF.crop(img, params.top, params.left, params.crop, params.crop)
        out.append(TF.normalize(TF.to_tensor(img), mean, std))
    return torch.stack(out, 0).permute(1, 0, 2, 3)


def read_and_decode(ds: ClipDataset, index: int) -> list[np.ndarray]:
    record = ds.records[int(ds.clip_video[index])]
    jpegs = read_frame_bytes(ds.store, record, ds.clip_frames(index))
    return [simplejpeg.decode_jpeg(b, colorspace="RGB") for b in jpegs]


def clip_params(ds: ClipDataset, index: int) -> ClipParams:
    """The parameters ``ds[index]`` draws for clip ``index`` (epoch 0)."""
    record = ds.records[int(ds.clip_video[index])]
    return ds.transform.params(record.height, record.width, clip_rng(ds.seed, 0, index))


def decode_windows(ds: ClipDataset, index: int, jpegs: list[bytes]) -> list[np.ndarray]:
    """(c') Our decoder on the same bytes: only the window each frame's crop needs."""
    record = ds.records[int(ds.clip_video[index])]
    rows, cols = crop_taps(record.height, record.width, clip_params(ds, index))
    frames = ClipFrames(jpegs, ds.store, record, ds.clip_frames(index))
    return list(frames.windows((rows.start, rows.stop), (cols.start, cols.stop)))


class WholeFrames(ClipFrames):
    """Frames decoded whole with simplejpeg and then cut, as the loader did before it
    decoded windows (still one frame at a time, so each is scaled while in cache)."""

    def windows(self, rows, cols):
        for data in self.jpegs:
            yield simplejpeg.decode_jpeg(data, colorspace="RGB")[rows[0] : rows[1],
                                                                 cols[0] : cols[1]]


def read_and_transform(ds: ClipDataset, index: int, frames_type=ClipFrames) -> torch.Tensor:
    """(d) The part of our loader that makes the pixels: read the files, decode the windows,
    scale them into the clip (``ds[index]`` without the dataset's bookkeeping); with
    ``WholeFrames``, the same with whole-frame decoding (what decoding windows saves)."""
    record = ds.records[int(ds.clip_video[index])]
    jpegs = read_frame_bytes(ds.store, record, ds.clip_frames(index))
    return ds.transform(frames_type(jpegs, ds.store, record, ds.clip_frames(index)),
                        clip_rng(ds.seed, 0, index))


def read_decode_resize_whole(ds: ClipDataset, index: int) -> list[np.ndarray]:
    """(e) Decode and scale the whole frame with OpenCV (no crop), as the first loader did."""
    record = ds.records[int(ds.clip_video[index])]
    jpegs = read_frame_bytes(ds.store, record, ds.clip_frames(index))
    new_h, new_w = resized_size(record.height, record.width, clip_params(ds, index).short_side)
    return [cv2.resize(simplejpeg.decode_jpeg(b, colorspace="RGB"), (new_w, new_h),
                       interpolation=cv2.INTER_LINEAR) for b in jpegs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.loader_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="videos in Kinetics layout (default: made with preprocess synth)")
    parser.add_argument("--work", type=Path, default=Path("data/bench"),
                        help="where stores are built if data/frames has none")
    parser.add_argument("--clips", type=int, default=48, help="train clips per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each clip's best counts)")
    parser.add_argument("--quick", action="store_true",
                        help="16 clips, 2 rounds (too few to judge the goals closely)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.rounds = 16, 2
    if args.clips < 1 or args.rounds < 1:
        parser.error(f"--clips and --rounds must be at least 1, got {args.clips} and "
                     f"{args.rounds}")
    # Every method runs in a process set up as our DataLoader workers are (one thread, freed
    # memory kept for reuse): the same conditions for all.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # for the methods that scale with OpenCV, as a worker would
    init_worker(0)
    try:
        stores = prepare(args.data, args.work)
        transform = TrainTransform()
        ds = {fmt: ClipDataset(s, "train", transform) for fmt, s in stores.items()}
        if len(ds["jpg"]) == 0:
            raise BenchError(f"{stores['jpg']}: no training clips to load")
    except (BenchError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    jpg = ds["jpg"]
    clips = pick_clips(jpg, args.clips)
    frames = {i: read_frame_bytes(jpg.store, jpg.records[int(jpg.clip_video[i])],
                                  jpg.clip_frames(i)) for i in clips}
    mean, std = list(transform.mean), list(transform.std)
    A, B, C = ("(a) PyAV decode of the mp4, float ops", "(b) PIL per frame + torchvision",
               "(c) bare JPEG decode (simplejpeg)")
    methods = {
        "ours, JPEG store": lambda i: jpg[i],
        "ours, HDF5 store": lambda i: ds["hdf5"][i],
        "ours, JPEG, + float normalise on CPU": lambda i: normalize_clips(jpg[i][0]),
        "ours, JPEG, whole-frame decode": lambda i: read_and_transform(jpg, i, WholeFrames),
        "ours, JPEG, plain C scaling (no AVX2)": plain_c(lambda i: jpg[i]),
        A: lambda i: pyav_clip(jpg, args.data, i, transform),
        "(a') PyAV decode, our uint8 transform": lambda i: pyav_ours(jpg, args.data, i,
                                                                    transform),
        B: lambda i: pil_clip(jpg, i, transform, mean, std),
        C: lambda i: [simplejpeg.decode_jpeg(b, colorspace="RGB") for b in frames[i]],
        "(c) + reading the JPEG files": lambda i: read_and_decode(jpg, i),
        "(c') window decode (ours) of the same frames": lambda i: decode_windows(jpg, i,
                                                                                frames[i]),
        "(d) read + window decode + window scaling": lambda i: read_and_transform(jpg, i),
        "(e) read + whole decode + whole-frame scaling": lambda i: read_decode_resize_whole(
            jpg, i),
    }
    times = time_methods(methods, clips, args.rounds)
    record = jpg.records[0]
    print(f"\nOne loader process, {len(clips)} train clips, each clip's best of {args.rounds} "
          f"rounds, {record.width}x{record.height} frames, 16 per clip, store {stores['jpg']}")
    print("| method | ms/clip | clips/s | speed-up vs (a) | vs (b) | time / (c) |")
    print("|---|---:|---:|---:|---:|---:|")
    a, b, c = times[A], times[B], times[C]
    for name, s in times.items():
        print(f"| {name} | {s * 1e3:.1f} | {1 / s:.1f} | {a / s:.1f} | {b / s:.2f} | {s / c:.2f} |")
    ours = max(times["ours, JPEG store"], times["ours, HDF5 store"])
    print(f"\ngoals (slower store): >= 10x (a): {a / ours:.1f}x; >= 1.5x (b): {b / ours:.2f}x; "
          f"<= 1.30 x (c): {ours / c:.2f}x")
    decoder_table([j for i in clips[:4] for j in frames[i]], args.rounds)
    resize_table([j for i in clips[:4] for j in frames[i]],
                 [clip_params(jpg, i) for i in clips[:4] for _ in frames[i]], args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
