"""Shared by the preprocessing tests: natural-looking frames to encode, and small manifests
cut from the shipped Kinetics-20 one."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from preprocess.dataset_check import read_manifest

KINETICS20_CLASSES = [
    "abseiling", "bending_back", "bungee_jumping", "cleaning_floor", "curling_hair",
    "drinking", "exercising_with_an_exercise_ball", "giving_or_receiving_award", "hurdling",
    "laughing", "moving_furniture", "playing_basketball", "playing_paintball", "push_up",
    "roller_skating", "shredding_paper", "sniffing", "swimming_breast_stroke", "tobogganing",
    "washing_feet"]  # WORKLOAD.md


def smooth_frames(count: int, width: int, height: int) -> np.ndarray:
    """Gradients with a moving disc: natural-image-like content for pixel comparisons."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        img = np.dstack([xx / width * 200 + 20, yy / height * 180 + 30,
                         (xx + yy + 4 * i) % 255 * 0.5 + 60])
        cv2.circle(img, (20 + 3 * i, height // 2), height // 5, (230, 40, 40), -1, cv2.LINE_AA)
        frames[i] = cv2.GaussianBlur(img, (5, 5), 1.5).clip(0, 255)
    return frames


def manifest_slice(tmp_path: Path, per_class_split: int = 2,
                   classes: int = 2) -> tuple[Path, list[tuple[str, str, str]]]:
    """A manifest of the real one's first files of the first classes, in both splits."""
    entries, _ = read_manifest()
    keep = [e for e in entries if e[1] in KINETICS20_CLASSES[:classes]]
    picked = []
    for split in ("train", "val"):
        for cls in KINETICS20_CLASSES[:classes]:
            picked += [e for e in keep if e[:2] == (split, cls)][:per_class_split]
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["split", "class", "file"], *picked])
    return path, picked
