"""The synthetic dataset: Kinetics layout and CSVs, determinism, motion-only classes."""

import hashlib
import math
import os
import re
import subprocess
import sys
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from formats.store import read_index
from preprocess.extract import ExtractOptions
from preprocess.frames import build_store
from preprocess.kinetics import find_videos, missing_on_disk, read_kinetics_csv
from preprocess.synth import (
    MOTION_CLASSES,
    SynthOptions,
    SynthVideo,
    class_colour,
    make_dataset,
    object_pose,
    render_video,
)
from tests.helpers.faults import REPO

# Rows in the exact format of the real Kinetics-20 train.csv (pandas index column first).
REAL_CSV = """\
,label,youtube_id,time_start,time_end,split,is_cc,video_name
0,abseiling,--33Lscn6sk,4,14,train,False,--33Lscn6sk_000004_000014
1,abseiling,-3B32lodo2M,59,69,train,False,-3B32lodo2M_000059_000069
512,exercising with an exercise ball,0YE1H7oqkbw,1,11,train,False,0YE1H7oqkbw_000001_000011
1302,giving or receiving award,zzsnz_C-dtI,63,73,train,False,zzsnz_C-dtI_000063_000073
"""
NAME = re.compile(r"^[A-Za-z0-9_-]{11}_\d{6}_\d{6}\.mp4$")
TINY = SynthOptions(classes=3, train_per_class=2, val_per_class=1, duration=1.2, width=64,
                    height=48, fps=str(Fraction(30000, 1001)), seed=7)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    make_dataset(TINY, out, jobs=1)
    return out


def test_real_kinetics_csv_format_parses(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(REAL_CSV)
    rows = read_kinetics_csv(path)
    assert [r.class_folder for r in rows] == ["abseiling", "abseiling",
                                              "exercising_with_an_exercise_ball",
                                              "giving_or_receiving_award"]
    assert rows[3].video_name == "zzsnz_C-dtI_000063_000073" and rows[3].time_end == 73
    assert rows[0].is_cc is False and rows[2].row_id == "512"


def test_synthetic_dataset_has_the_kinetics_layout_and_csvs(synth):
    classes, videos = find_videos(synth)
    assert classes == sorted(MOTION_CLASSES[:3])
    assert [len(videos["train"]), len(videos["val"])] == [6, 3]
    for split, split_videos in videos.items():
        rows = read_kinetics_csv(synth / f"{split}.csv")  # the same parser as the real CSVs
        assert missing_on_disk(synth, split, split_videos) == []
        by_id = {v.video_id: v for v in split_videos}
        assert len(rows) == len(by_id)
        for row in rows:
            video = by_id[f"{row.class_folder}/{row.video_name}"]
            assert NAME.match(video.path.name)
            assert " " in row.label or "_" not in row.class_folder
            assert row.split == split and row.label.replace(" ", "_") in classes
            assert row.video_name.startswith(row.youtube_id)
            assert (row.time_start, row.time_end) == (int(row.video_name[-13:-7]),
                                                      int(row.video_name[-6:]))


def test_synthetic_videos_are_h264_at_the_requested_rate(synth):
    _, videos = find_videos(synth)
    with av.open(str(videos["val"][0].path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == Fraction(30000, 1001)
        assert (stream.width, stream.height) == (64, 48)
        assert sum(1 for _ in container.decode(stream)) == 36


def test_same_seed_gives_identical_files(synth, tmp_path):
    make_dataset(TINY, tmp_path, jobs=2)
    for path in synth.rglob("*.mp4"):
        again = tmp_path / path.relative_to(synth)
        assert hashlib.md5(again.read_bytes()).digest() == hashlib.md5(path.read_bytes()).digest()
    assert (tmp_path / "train.csv").read_bytes() == (synth / "train.csv").read_bytes()


# Encodes the same frames with the dataset's encoder and the tests' encoder; prints digests.
ENCODE_TWICE = """
import hashlib, sys
from fractions import Fraction
from pathlib import Path
from preprocess.encode import encode_mp4
from tests.helpers.faults import encode_video, gradient_frames
out, frames = Path(sys.argv[1]), gradient_frames(32, 64, 48, 5)
encode_mp4(out / "synth.mp4", frames, Fraction(30))
encode_video(out / "helper.mp4", frames, Fraction(30))
print(*(hashlib.md5((out / n).read_bytes()).hexdigest() for n in ("synth.mp4", "helper.mp4")))
"""


def test_encoded_bytes_do_not_depend_on_leftover_memory(tmp_path):
    """Whatever the heap held before (glibc fills it with a different byte per run under
    MALLOC_PERTURB_), the same frames give the same file. x264's macroblock tree failed
    this on CPUs with AVX-512, which made same-seed datasets and test videos differ."""
    digests = set()
    for perturb in ("0", "165"):
        done = subprocess.run([sys.executable, "-c", ENCODE_TWICE, str(tmp_path)], cwd=REPO,
                              env={**os.environ, "MALLOC_PERTURB_": perturb},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        digests.add(done.stdout.strip())
    assert len(digests) == 1, digests


def test_synthetic_dataset_goes_through_the_frame_store(synth, tmp_path):
    summary = build_store(synth, tmp_path / "store", ExtractOptions(), jobs=1, quiet=True)
    assert (summary.done, summary.failed) == (9, 0)
    # floor(36 * 15 / 29.97) = 18 kept frames: one 16-frame clip per video
    assert {r.kept_frames for r in read_index(tmp_path / "store", "train")} == {18}


@pytest.mark.parametrize("motion", MOTION_CLASSES)
def test_every_class_survives_a_horizontal_flip(motion):
    """The train transform flips clips; a flipped clip of a class must look like a clip of
    the same class: drawing the horizontal sign (and phase) the other way, which is as likely,
    gives the mirror image."""
    width, height = 160, 120
    start = {"x": 50.0, "y": 60.0, "angle": 30.0, "scale": 1.2, "base": 0.9, "phase": 0.4}
    for t in (0.0, 0.3, 1.1, 2.5):
        x, y, angle, scale = object_pose(motion, t, 3.0, height, {**start, "sign": 1})
        mirrored = {**start, "sign": -1, "x": width - start["x"], "angle": -start["angle"]}
        if motion == "circling":  # phases are drawn uniformly, so these are as likely
            mirrored["phase"] = math.pi - start["phase"]
        if motion == "swinging_sideways":
            mirrored["phase"] = math.pi + start["phase"]
        mx, my, mangle, mscale = object_pose(motion, t, 3.0, height, mirrored)
        assert mx == pytest.approx(width - x) and my == pytest.approx(y)
        assert mscale == pytest.approx(scale)
        assert mangle == pytest.approx(-angle)


def test_classes_differ_in_motion_within_eight_frames_at_15_fps():
    p = {"x": 80.0, "y": 60.0, "angle": 0.0, "scale": 1.0, "base": 0.9, "phase": 0.0,
         "sign": 1}
    tracks = {m: np.array([object_pose(m, k / 15, 3.0, 120, p) for k in range(8)])
              for m in MOTION_CLASSES}
    for a in MOTION_CLASSES:
        for b in MOTION_CLASSES:
            if a < b:  # pixels, degrees and 1/100 of scale all differ by more than 1
                diff = np.abs(tracks[a] - tracks[b]) * [1, 1, 1, 100]
                assert diff.max() > 1.0, (a, b)


def test_colour_cue_paints_the_shape_in_its_class_hue_on_grey():
    opts = SynthOptions(classes=5, duration=0.2, width=96, height=64, colour_cue=True)
    hues = []
    for c in range(opts.classes):
        frame = render_video(SynthVideo("train", c, 0, "x" * 11, 0, 1), opts)[0]
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(int)
        saturated = hsv[hsv[:, 1] > 100]  # the grey background has none
        assert len(saturated) > 20, c
        rgb = class_colour(c, opts.classes).astype(np.uint8)[None, None]
        want = int(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)[0, 0, 0])
        distance = np.abs((saturated[:, 0] - want + 128) % 256 - 128)  # hue is circular
        assert np.median(distance) <= 4, (c, want)
        hues.append(want)
    assert min(np.diff(sorted(hues))) >= 40  # 5 classes spread around the hue circle


def test_without_colour_cue_the_background_is_coloured():
    opts = SynthOptions(classes=5, duration=0.2, width=96, height=64)
    frame = render_video(SynthVideo("train", 0, 0, "x" * 11, 0, 1), opts)[0].astype(int)
    assert np.abs(frame[..., 0] - frame[..., 1]).mean() > 10
