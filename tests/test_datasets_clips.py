"""ClipDataset: clip enumeration against torchvision's VideoClips, the frames each clip holds,
determinism of the augmentation, JPEG vs HDF5 stores, and the errors a user can hit."""

import numpy as np
import pytest
import torch

from datasets import ClipDataset, StoreError, TrainTransform, ValTransform
from formats.store import frame_name, read_index
from tests.helpers.datasets import (
    encode,
    flat_frame_number,
    flat_frames,
    make_index_only_store,
    make_store,
    textured_frames,
    torchvision_clips,
    video_id,
)

# (decoded frames n, stream fps): integer and fractional steps, NTSC rates, upsampling
# (fps < 15), a video just long enough for one clip, too short for any, and a long one.
VIDEOS = [
    (300, 30.0), (250, 25.0), (300, 30000 / 1001), (240, 24.0), (150, 15.0), (15, 15.0),
    (47, 30.0), (31, 30.0), (30, 30.0), (400, 24000 / 1001), (100, 10.0), (299, 60.0),
    (9000, 30000 / 1001), (119, 12.5),
]
SMALL_TRAIN = TrainTransform(short_side_range=(28, 60), crop=24)


def test_clips_match_torchvision_video_clips(tmp_path):
    kept = [torchvision_clips(n, fps)[0] for n, fps in VIDEOS]
    store = make_index_only_store(tmp_path, [len(k) for k in kept])
    with pytest.warns(UserWarning, match="give no clip"):
        ds = ClipDataset(store, "train", SMALL_TRAIN)
    position = {r.video_id: i for i, r in enumerate(ds.records)}  # the index is sorted by id
    expected_total = 0
    for i, (n, fps) in enumerate(VIDEOS):
        _, clips = torchvision_clips(n, fps)
        mine = np.flatnonzero(ds.clip_video == position[video_id(i)])
        assert len(mine) == len(clips), (n, fps)
        for c, index in enumerate(mine):
            # Kept-frame numbers of our clip, as source frame numbers.
            source = kept[i][ds.clip_frames(int(index))]
            assert torch.equal(source, clips[c]), (n, fps, c)
        expected_total += len(clips)
    assert len(ds) == expected_total
    assert list(ds.clip_video) == sorted(ds.clip_video)  # numbered video by video


def test_each_clip_holds_its_consecutive_frames(tmp_path):
    store = make_store(tmp_path, "jpg", {"val": [("drinking", "a", flat_frames(37, 32, 40))]})
    ds = ClipDataset(store, "val", ValTransform(short_side=32, crop=32))
    assert len(ds) == 2  # 37 frames: two clips of 16, remainder of 5 dropped
    for index in range(2):
        clip, label, video = ds[index]
        assert (label, video) == (1, 0)
        numbers = [flat_frame_number(clip[t].numpy()) for t in range(16)]
        assert numbers == list(range(16 * index, 16 * index + 16))


def test_short_videos_are_reported_not_fatal(tmp_path):
    store = make_index_only_store(tmp_path, [40, 15, 3, 16])
    with pytest.warns(UserWarning, match="drinking/v001, hurdling/v002"):
        ds = ClipDataset(store, "train", SMALL_TRAIN)
    assert ds.videos_without_clips == ["drinking/v001", "hurdling/v002"]
    # Index order (sorted by id): bending_back/v000, bending_back/v003, drinking/v001, ...
    assert [r.video_id for r in ds.records][:2] == ["bending_back/v000", "bending_back/v003"]
    assert len(ds) == 3 and list(ds.clip_video) == [0, 0, 1]
    assert ds.num_videos == 4 and ds.video_labels == [0, 0, 1, 2]
    assert ds.classes == ["bending_back", "drinking", "hurdling"] and ds.num_classes == 3


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same two videos as a JPEG store and an HDF5 store."""
    root = tmp_path_factory.mktemp("stores")
    videos = {"train": [("drinking", "a", textured_frames(35, 40, 56, 0)),
                        ("hurdling", "b", textured_frames(20, 56, 40, 1))]}
    return {fmt: make_store(root / fmt, fmt, videos) for fmt in ("jpg", "hdf5")}


def test_same_key_same_clip_and_epochs_differ(stores):
    ds = ClipDataset(stores["jpg"], "train", SMALL_TRAIN, seed=3)
    again = ClipDataset(stores["jpg"], "train", SMALL_TRAIN, seed=3)
    for index in range(len(ds)):
        clip, label, video = ds[(2, index)]
        assert torch.equal(clip, again[(2, index)][0])
        assert torch.equal(clip, ds[(2, index)][0])
        assert (label, video) == (again[(2, index)][1], again[(2, index)][2])
    assert torch.equal(ds[1][0], ds[(0, 1)][0])  # a plain index is epoch 0
    # Different epochs or seeds draw different parameters (checked over all clips).
    other_seed = ClipDataset(stores["jpg"], "train", SMALL_TRAIN, seed=4)
    assert any(not torch.equal(ds[(2, i)][0], ds[(5, i)][0]) for i in range(len(ds)))
    assert any(not torch.equal(ds[(2, i)][0], other_seed[(2, i)][0]) for i in range(len(ds)))


def test_jpeg_and_hdf5_stores_give_identical_clips(stores):
    jpg = ClipDataset(stores["jpg"], "train", SMALL_TRAIN)
    h5 = ClipDataset(stores["hdf5"], "train", SMALL_TRAIN)
    assert len(jpg) == len(h5) == 3
    for index in range(len(jpg)):
        a, b = jpg[(1, index)], h5[(1, index)]
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
        assert a[0].shape == (16, 24, 24, 3) and a[0].dtype == torch.uint8


def test_store_settings_and_labels_are_checked(tmp_path):
    with pytest.raises(StoreError, match="no frame store"):
        ClipDataset(tmp_path / "missing", "train", SMALL_TRAIN)
    store = make_index_only_store(tmp_path / "30fps", [32], fps=30)
    with pytest.raises(StoreError, match=r"store\.json.*fps=30 \(expected 15\)"):
        ClipDataset(store, "train", SMALL_TRAIN)
    store = make_index_only_store(tmp_path / "ok", [32])
    with pytest.raises(StoreError, match="no index for split 'val'"):
        ClipDataset(store, "val", SMALL_TRAIN)
    index = store / "train_index.csv"
    index.write_text(index.read_text().replace("bending_back,0", "bending_back,2"))
    with pytest.raises(StoreError, match="bending_back/v000 has label 2"):
        ClipDataset(store, "train", SMALL_TRAIN)


@pytest.mark.parametrize("fmt", ["jpg", "hdf5"])
def test_missing_or_corrupt_frames_name_file_and_video(tmp_path, fmt):
    videos = {"train": [("drinking", "a", textured_frames(16, 40, 56, 0))]}
    store = make_store(tmp_path, fmt, videos)
    ds = ClipDataset(store, "train", SMALL_TRAIN)
    record = read_index(store, "train")[0]
    if fmt == "jpg":
        frame = store / record.location / frame_name(5)
        data = frame.read_bytes()
        frame.write_bytes(data[: len(data) // 2])  # truncated file
        with pytest.raises(StoreError, match=rf"{frame_name(5)}: corrupt JPEG in video drinking/a"):
            ds[0]
        frame.write_bytes(encode(textured_frames(1, 48, 56, 2))[0])  # a different size
        with pytest.raises(StoreError, match=rf"{frame_name(5)}: frame is 56x48, other frames "
                                             r"of video drinking/a are 56x40"):
            ds[0]
        frame.unlink()
        missing = rf"{frame_name(5)}: missing frame 5 of video drinking/a"
        with pytest.raises(StoreError, match=missing):
            ds[0]
    else:
        import h5py

        with h5py.File(store / "train.h5", "r+") as f:
            dataset = f["videos/drinking/a"]
            start, stop = dataset.attrs["offsets"][7:9]
            dataset[start + 200 : stop] = 0  # zeroed scan data
        with pytest.raises(StoreError, match=r"train\.h5:videos/drinking/a \(frame 7\): corrupt "
                                             r"JPEG in video drinking/a"):
            ds[0]
