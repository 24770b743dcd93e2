"""Kinetics-like videos for the store benchmarks: a photograph panned and zoomed slowly, so
the store's 426x320 JPEGs at quality 90 are 35-60 KB as Kinetics frames are (the synthetic
dataset's smooth backgrounds give about 30 KB, which flatters JPEG decoding).

The photograph is matplotlib's sample image ``grace_hopper.jpg`` (installed with the
environment), made into a collage; each video pans along its own path, with sensor noise. The videos
are H.264 at a high quality (crf 12), 30 fps, 480x360, in the Kinetics layout.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from preprocess.encode import encode_mp4
from preprocess.kinetics import video_name

WIDTH, HEIGHT, FPS = 480, 360, 30
GRAIN = 3.0  # standard deviation of the sensor noise, grey levels


def canvas(seed: int = 0) -> np.ndarray:
    """A 4 x 4 collage of the photograph at half size (RGB uint8, 1200 x 1024), each copy
    flipped and tinted at random: as much detail per pixel as a camera's frames."""
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    small = cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(4):
        tiles = []
        for _ in range(4):
            tile = small[:, ::-1] if rng.random() < 0.5 else small
            tile = tile[::-1] if rng.random() < 0.3 else tile
            tint = rng.integers(-40, 40, 3)
            tiles.append(np.clip(tile.astype(np.int16) + tint, 0, 255).astype(np.uint8))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def video_frames(big: np.ndarray, seed: int, seconds: float) -> np.ndarray:
    """A pan with a slow zoom over ``big``, frames x HEIGHT x WIDTH x 3."""
    rng = np.random.default_rng(seed)
    count = round(seconds * FPS)
    h, w = big.shape[:2]
    x0, y0 = rng.uniform(0, w - 1.6 * WIDTH), rng.uniform(0, h - 1.6 * HEIGHT)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(1.0, 3.0)  # pixels per frame
    frames = np.empty((count, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(count):
        zoom = 1.3 + 0.3 * i / count
        x = (x0 + speed * i * np.cos(angle)) % (w - zoom * WIDTH)
        y = (y0 + speed * i * np.sin(angle)) % (h - zoom * HEIGHT)
        window = big[int(y): int(y + zoom * HEIGHT), int(x): int(x + zoom * WIDTH)]
        frame = cv2.resize(window, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        grain = rng.normal(0, GRAIN, frame.shape).astype(np.float32)  # a camera's noise
        frames[i] = np.clip(frame + grain, 0, 255).astype(np.uint8)
    return frames


def make_videos(data: Path, classes: int = 2, train: int = 2, val: int = 1,
                seconds: float = 10.0) -> None:
    """The dataset folder ``data`` (Kinetics layout), ``train``/``val`` videos per class."""
    big = canvas()
    seed = 0
    for split, per_class in (("train", train), ("val", val)):
        for c in range(classes):
            folder = data / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                seed += 1
                name = video_name(f"pan{seed:08d}", 10 * i, 10 * i + int(seconds))
                encode_mp4(folder / f"{name}.mp4", video_frames(big, seed, seconds),
                           Fraction(FPS), crf=12)
