"""A synthetic dataset in the Kinetics layout whose classes differ in motion.

Every video shows one textured shape over a cluttered, slowly drifting background. The
shape's look, size, orientation and position are drawn independently of the class, so a
single frame says nothing about the class; what it does over time (direction, speed, kind of
movement) is the class. The classes survive the horizontal flip of the train transform: no
class depends on left versus right or clockwise versus counter-clockwise (that sign is drawn
at random per video), so a flipped clip is still a valid clip of its class.

With ``colour_cue`` the shape is also drawn in its class's own hue over a grey background.
That cue is for the CPU demo: from-scratch X3D-M picks it up within a few hundred steps,
where motion alone takes it far longer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from formats.files import TMP_MARK, atomic_write
from preprocess.encode import encode_mp4
from preprocess.kinetics import SPLITS, CsvRow, video_name, write_kinetics_csv

# Listed most-different first, so that a small --classes keeps clearly different motions.
MOTION_CLASSES = (
    "moving_up_slowly", "moving_down_slowly", "moving_sideways_slowly", "spinning_slowly",
    "growing", "shrinking", "swinging_sideways", "bobbing_up_and_down", "circling",
    "hopping_sideways", "standing_still", "pulsing", "moving_up_quickly",
    "moving_down_quickly", "moving_sideways_quickly", "spinning_quickly",
    "rising_diagonally_slowly", "sinking_diagonally_slowly", "rising_diagonally_quickly",
    "sinking_diagonally_quickly",
)
SLOW, QUICK = 0.2, 0.6  # linear speed, in frame heights per second
SPIN_SLOW, SPIN_QUICK = 90.0, 270.0  # degrees per second
SWING_HZ, CIRCLE_HZ, HOP_HZ, PULSE_HZ = 1.5, 0.75, 1.5, 1.0
SPRITE = 96  # side of the pre-drawn shape, in pixels; shape radius is SPRITE / 4


class SynthError(Exception):
    """Bad options for the synthetic dataset."""


@dataclass(frozen=True)
class SynthOptions:
    classes: int = 20
    train_per_class: int = 8
    val_per_class: int = 4
    duration: float = 3.0
    width: int = 160
    height: int = 120
    fps: str = "30"
    seed: int = 0
    colour_cue: bool = False  # the shape's hue is its class's (see the module docstring)
    clutter: float = 1.0  # background shapes, relative to the default density

    def check(self) -> None:
        if not 1 <= self.classes <= len(MOTION_CLASSES):
            raise SynthError(f"--classes must be 1..{len(MOTION_CLASSES)}, got {self.classes}")
        if self.width % 2 or self.height % 2 or min(self.width, self.height) < 32:
            raise SynthError(f"--width/--height must be even and >= 32, got "
                             f"{self.width}x{self.height}")
        if self.train_per_class < 1 or self.val_per_class < 1 or self.duration <= 0:
            raise SynthError("--train-per-class, --val-per-class and --duration must be positive")
        if self.clutter < 0:
            raise SynthError(f"--clutter must be >= 0, got {self.clutter}")


@dataclass(frozen=True)
class SynthVideo:
    split: str
    class_index: int
    number: int
    youtube_id: str
    start: int
    end: int

    @property
    def class_name(self) -> str:
        return MOTION_CLASSES[self.class_index]

    @property
    def relative_path(self) -> str:
        name = video_name(self.youtube_id, self.start, self.end)
        return f"{self.split}/{self.class_name}/{name}.mp4"


_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def plan_videos(opts: SynthOptions) -> list[SynthVideo]:
    """Every video of the dataset, with its name, fixed by the seed alone."""
    plan = []
    for s, split in enumerate(SPLITS):
        per_class = opts.train_per_class if split == "train" else opts.val_per_class
        for c in range(opts.classes):
            for i in range(per_class):
                rng = np.random.default_rng([opts.seed, s, c, i, 1])
                yid = "".join(rng.choice(list(_ID_CHARS), 11))
                start = int(rng.integers(0, 300))
                plan.append(SynthVideo(split, c, i, yid, start, start + math.ceil(opts.duration)))
    return plan


def _texture(rng: np.random.Generator, h: int, w: int, clutter: int) -> np.ndarray:
    """Smooth colour noise with random shapes on it, float32 RGB in [0, 255]."""
    img = np.zeros((h, w, 3), np.float32)
    for scale in (4, 16):
        noise = rng.random((h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) * (160.0 / scale**0.5)
    img += rng.uniform(20, 90, 3).astype(np.float32)
    for _ in range(clutter):
        colour = rng.uniform(0, 255, 3).tolist()
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(3, max(4, min(h, w) // 8)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(img, (x, y), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(3, 2 * r))), colour, -1)
        else:
            end = (x + int(rng.integers(-3 * r, 3 * r)), y + int(rng.integers(-3 * r, 3 * r)))
            cv2.line(img, (x, y), end, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return np.clip(img, 0, 255)


def class_colour(class_index: int, classes: int) -> np.ndarray:
    """A saturated RGB colour (float, 0..255) whose hue is spread evenly over the classes."""
    hsv = np.uint8([[[round(180 * class_index / classes) % 180, 255, 255]]])  # OpenCV hue: 0..179
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _sprite(rng: np.random.Generator, colour: np.ndarray | None = None) -> np.ndarray:
    """A striped shape with an outline: premultiplied RGBA float32, SPRITE x SPRITE.

    Stripes take two random colours, or ``colour`` at full and half brightness if given."""
    n, c, r = SPRITE, SPRITE // 2, SPRITE // 4
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(5, 12)
    stripes = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)  # drawn either way: same shapes
    if colour is not None:
        a, b = colour, colour / 2
    rgb = np.where(stripes[..., None], a, b).astype(np.float32)
    mask = np.zeros((n, n), np.uint8)
    kind = rng.integers(4)
    if kind == 0:
        axes = (r, int(r * rng.uniform(0.55, 0.9)))
        cv2.ellipse(mask, (c, c), axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    else:
        corners = {1: 4, 2: 3, 3: 10}[int(kind)]
        t = np.arange(corners) * 2 * np.pi / corners
        radius = np.where(np.arange(corners) % 2, 0.5 * r, r) if kind == 3 else np.full(corners, r)
        pts = np.stack([c + radius * np.cos(t), c + radius * np.sin(t)], 1)
        cv2.fillPoly(mask, [pts.round().astype(np.int32)], 255, cv2.LINE_AA)
    outline = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > mask
    rgb[outline] = 255.0 if rng.random() < 0.5 else 0.0
    alpha = cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(np.float32) / 255.0
    return np.dstack([rgb * alpha[..., None], alpha])


def object_pose(motion: str, t: float, duration: float, h: int, p: dict) -> tuple:
    """Centre (x, y), angle (degrees) and scale of the shape at time ``t`` seconds.

    ``p`` holds the per-video random draws (start pose, signs, phases), all class-independent."""
    x, y, angle, scale, sign = p["x"], p["y"], p["angle"], p["scale"], p["sign"]
    wave = 2 * np.pi * t
    if motion.startswith(("moving", "rising", "sinking")):  # wraps around the frame edges
        v = (QUICK if motion.endswith("quickly") else SLOW) * h
        if motion.startswith(("rising", "sinking")):
            v /= math.sqrt(2)
            x += sign * v * t
        if "sideways" in motion:
            x += sign * v * t
        elif "up" in motion or motion.startswith("rising"):
            y -= v * t
        elif "down" in motion or motion.startswith("sinking"):
            y += v * t
    elif motion.startswith("spinning"):
        angle += sign * (SPIN_QUICK if motion.endswith("quickly") else SPIN_SLOW) * t
    elif motion == "growing":
        scale = p["base"] * 2 ** (t / duration)
    elif motion == "shrinking":
        scale = p["base"] * 2 ** (1 - t / duration)
    elif motion == "pulsing":
        scale = p["base"] * 2 ** (0.5 + 0.5 * math.sin(PULSE_HZ * wave + p["phase"]))
    elif motion == "swinging_sideways":
        x += 0.25 * h * math.sin(SWING_HZ * wave + p["phase"])
    elif motion == "bobbing_up_and_down":
        y += 0.25 * h * math.sin(SWING_HZ * wave + p["phase"])
    elif motion == "circling":
        x += 0.2 * h * math.cos(sign * CIRCLE_HZ * wave + p["phase"])
        y += 0.2 * h * math.sin(sign * CIRCLE_HZ * wave + p["phase"])
    elif motion == "hopping_sideways":
        x += sign * SLOW * h * t
        y -= 0.3 * h * abs(math.sin(HOP_HZ * wave / 2 + p["phase"]))
    elif motion != "standing_still":
        raise ValueError(f"unknown motion {motion!r}")
    return x, y, angle, scale


def render_video(video: SynthVideo, opts: SynthOptions) -> np.ndarray:
    """All frames of one video, uint8 array (frames, height, width, 3)."""
    w, h, duration = opts.width, opts.height, opts.duration
    fps = float(Fraction(opts.fps))
    rng = np.random.default_rng([opts.seed, SPLITS.index(video.split), video.class_index,
                                 video.number, 2])
    speed, heading = rng.uniform(0, 0.05 * h), rng.uniform(0, 2 * np.pi)
    drift = speed * np.array([math.cos(heading), math.sin(heading)])
    pad = int(np.abs(drift).max() * duration) + 2
    background = _texture(rng, h + 2 * pad, w + 2 * pad, clutter=int(opts.clutter * w * h / 400))
    colour = None
    if opts.colour_cue:  # the only saturated colour in the frame is the shape's
        colour = class_colour(video.class_index, opts.classes)
        background = np.repeat(background.mean(axis=2, keepdims=True), 3, axis=2)
    sprite = _sprite(rng, colour)
    base = rng.uniform(0.7, 1.1)
    p = {"x": rng.uniform(0, w), "y": rng.uniform(0, h), "angle": rng.uniform(0, 360),
         "base": base, "scale": base * 2 ** rng.uniform(0, 1), "sign": rng.choice([-1, 1]),
         "phase": rng.uniform(0, 2 * np.pi)}
    radius = 0.14 * min(w, h)
    frames = np.empty((round(duration * fps), h, w, 3), np.uint8)
    for i in range(len(frames)):
        t = i / fps
        ox, oy = pad + drift * t
        shift = np.float32([[1, 0, -ox], [0, 1, -oy]])
        frame = cv2.warpAffine(background, shift, (w, h), flags=cv2.INTER_LINEAR)
        x, y, angle, scale = object_pose(video.class_name, t, duration, h, p)
        k = scale * radius / (SPRITE / 4)
        reach = k * (SPRITE / 4 + 4)  # shape radius plus outline
        layer = np.zeros((h, w, 4), np.float32)
        x, y = x % w, y % h
        for dx in (-w, 0, w):
            for dy in (-h, 0, h):
                cx, cy = x + dx, y + dy
                if -reach < cx < w + reach and -reach < cy < h + reach:
                    m = cv2.getRotationMatrix2D((SPRITE / 2, SPRITE / 2), angle, k)
                    m[:, 2] += (cx - SPRITE / 2, cy - SPRITE / 2)
                    layer += cv2.warpAffine(sprite, m, (w, h), flags=cv2.INTER_LINEAR)
        alpha = np.minimum(layer[..., 3:], 1.0)
        frames[i] = np.clip(frame * (1 - alpha) + layer[..., :3], 0, 255).astype(np.uint8)
    return frames


def make_video(video: SynthVideo, opts: SynthOptions, out: Path) -> None:
    path = Path(out) / video.relative_path
    if path.is_file():  # complete: files appear only by rename
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(path, render_video(video, opts), Fraction(opts.fps))


def write_csvs(plan: list[SynthVideo], out: Path) -> None:
    for split in SPLITS:
        rows = [
            CsvRow(str(i), v.class_name.replace("_", " "), v.youtube_id, v.start, v.end, split,
                   False, video_name(v.youtube_id, v.start, v.end))
            for i, v in enumerate(sorted(
                (v for v in plan if v.split == split),
                key=lambda v: (v.class_name, video_name(v.youtube_id, v.start, v.end))))
        ]
        write_kinetics_csv(Path(out) / f"{split}.csv", rows)


def check_out_folder(out: Path, opts: SynthOptions) -> None:
    """Refuse to mix videos made with other options into an existing dataset."""
    path = Path(out) / "synth.json"
    wanted = asdict(opts)
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != wanted:
            raise SynthError(f"{path}: dataset made with other options {found}; "
                             "choose another --out or delete that folder")
    elif Path(out).exists() and any(Path(out).iterdir()):
        raise SynthError(f"{out}: not empty and not a synthetic dataset; choose another --out")
    Path(out).mkdir(parents=True, exist_ok=True)
    for leftover in Path(out).glob(f"*/*/*{TMP_MARK}*"):  # videos of a killed run
        leftover.unlink(missing_ok=True)
    atomic_write(path, json.dumps(wanted, indent=2) + "\n")


def make_dataset(opts: SynthOptions, out: Path, jobs: int = -1) -> list[SynthVideo]:
    """Write the whole dataset (videos already present are kept: they are complete)."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    opts.check()
    check_out_folder(out, opts)
    plan = plan_videos(opts)
    tasks = (delayed(make_video)(v, opts, out) for v in plan)
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks)
    for _ in tqdm(results, total=len(plan), unit="video", desc="synth", smoothing=0.1):
        pass
    write_csvs(plan, out)
    return plan
