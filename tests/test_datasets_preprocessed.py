"""ClipDataset over stores made by the preprocessing command line from real mp4 files: clip
counts per video equal torchvision's VideoClips count for the decoded frame count and rate,
and the JPEG and HDF5 stores give identical clips."""

import av
import numpy as np
import pytest
import torch

from datasets import ClipDataset, ValTransform
from preprocess.__main__ import main as preprocess_main
from tests.helpers.datasets import torchvision_clips


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("preprocessed")
    videos = root / "videos"
    synth = ["synth", "--out", str(videos), "--classes", "2", "--train-per-class", "1",
             "--val-per-class", "1", "--duration", "2.2", "--width", "64", "--height", "48",
             "--fps", "29.97", "--jobs", "1"]
    assert preprocess_main(synth) == 0
    for fmt in ("jpg", "hdf5"):
        frames = ["frames", "--data", str(videos), "--out", str(root / fmt), "--format", fmt,
                  "--jobs", "1"]
        assert preprocess_main(frames) == 0
    return videos, root / "jpg", root / "hdf5"


def decoded_count_and_rate(path) -> tuple[int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), float(stream.average_rate)


@pytest.mark.parametrize("split", ["train", "val"])
def test_preprocessed_store_clips(stores, split):
    videos, jpg_store, hdf5_store = stores
    transform = ValTransform(short_side=48, crop=40)
    jpg = ClipDataset(jpg_store, split, transform)
    hdf5 = ClipDataset(hdf5_store, split, transform)
    assert jpg.num_videos == 2 and jpg.num_classes == 2
    for video, record in enumerate(jpg.records):
        n, fps = decoded_count_and_rate(videos / split / f"{record.video_id}.mp4")
        _, clips = torchvision_clips(n, fps)
        assert len(clips) == 2  # 66 frames at 29.97 fps: 33 kept, so two clips
        assert int(np.sum(jpg.clip_video == video)) == len(clips)
    assert len(jpg) == len(hdf5) == 4
    for index in range(len(jpg)):
        a, b = jpg[index], hdf5[index]
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
        assert a[0].shape == (16, 40, 40, 3)
