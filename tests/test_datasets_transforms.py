"""The clip transforms against a straightforward reference: PIL decode, then torchvision's
v2 functional normalize / resize / flip / crop in float32 with the same parameters, in the
workload's order (normalise, scale, flip, crop, as pytorchvideo's recipe runs them)."""

import io

import numpy as np
import pytest
import simplejpeg
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode

from datasets import ClipDataset, TrainTransform, ValTransform, clip_rng, normalize_clips
from preprocess.store import read_frame_bytes
from tests.test_datasets_helpers import encode, make_store, textured_frames

MEAN, STD = (0.45, 0.40, 0.35), (0.225, 0.25, 0.2)
# Our scaling runs on uint8 frames and rounds each output pixel to an integer: within half a
# grey level of the float result, plus OpenCV's 11-bit fixed-point weights (<= 2 x 255 / 2^12
# = 0.13 level). So at most one grey level, i.e. 1 / (255 * std) after normalisation, and
# about a quarter level on average (uniform rounding error).
LEVEL = 1 / 255


def reference_clip(jpegs, params, mean, std, centre_crop: int | None = None) -> torch.Tensor:
    frames = [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255  # T C H W
    x = F.normalize(x, list(mean), list(std))
    x = F.resize(x, [params.short_side], InterpolationMode.BILINEAR, antialias=False)
    if centre_crop is not None:
        return F.center_crop(x, [centre_crop, centre_crop]).permute(1, 0, 2, 3)
    if params.flip:
        x = F.horizontal_flip(x)
    return F.crop(x, params.top, params.left, params.crop, params.crop).permute(1, 0, 2, 3)


def assert_close_to_reference(ours: torch.Tensor, reference: torch.Tensor, std) -> None:
    assert ours.shape == reference.shape
    error = (ours - reference).abs() * torch.tensor(std).view(3, 1, 1, 1)  # in units of 1/255
    assert error.max().item() <= LEVEL + 1e-6
    assert error.mean().item() <= 0.35 * LEVEL


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Landscape and portrait videos, so scaling goes both up and down on either side."""
    videos = {"train": [("drinking", "wide", textured_frames(24, 40, 56, 0)),
                        ("hurdling", "tall", textured_frames(16, 50, 38, 1))]}
    return make_store(tmp_path_factory.mktemp("store"), "jpg", videos)


def test_train_transform_matches_reference(store):
    transform = TrainTransform(short_side_range=(28, 64), crop=24, flip_p=0.5, mean=MEAN, std=STD)
    ds = ClipDataset(store, "train", transform, clip_len=8, seed=7)
    flips = set()
    for epoch in range(4):
        for index in range(len(ds)):
            clip, _, video = ds[(epoch, index)]
            record = ds.records[video]
            jpegs = read_frame_bytes(store, record, ds.clip_frames(index))
            params = transform.params(record.height, record.width, clip_rng(7, epoch, index))
            flips.add(params.flip)
            reference = reference_clip(jpegs, params, MEAN, STD)
            assert_close_to_reference(transform.normalize(clip), reference, STD)
    assert flips == {True, False}


@pytest.mark.parametrize("short_side, crop", [(36, 30), (40, 40), (27, 24)])
def test_val_transform_matches_reference_centre_crop(store, short_side, crop):
    transform = ValTransform(short_side=short_side, crop=crop, mean=MEAN, std=STD)
    ds = ClipDataset(store, "train", transform, clip_len=8)
    for index in range(len(ds)):
        clip, _, video = ds[index]
        record = ds.records[video]
        jpegs = read_frame_bytes(store, record, ds.clip_frames(index))
        params = transform.params(record.height, record.width)
        reference = reference_clip(jpegs, params, MEAN, STD, centre_crop=crop)
        assert_close_to_reference(transform.normalize(clip), reference, STD)
        assert torch.equal(clip, ds[(3, index)][0])  # no randomness in val


def test_train_parameters_cover_their_ranges():
    transform = TrainTransform(short_side_range=(256, 320), crop=224)
    params = [transform.params(320, 427, clip_rng(0, 0, i)) for i in range(2000)]
    sides = {p.short_side for p in params}
    assert sides == set(range(256, 321))  # every integer, both ends included
    assert 0.45 < np.mean([p.flip for p in params]) < 0.55
    # Distance of the crop to the top, bottom, left and right edges of the scaled frame.
    slack = np.array([(p.top, p.short_side - 224 - p.top,
                       p.left, 427 * p.short_side // 320 - 224 - p.left) for p in params])
    assert (slack >= 0).all()  # inside the scaled frame...
    assert (slack.min(axis=0) == 0).all()  # ...and reaching every edge


def test_decoders_agree_and_normalisation_matches_reference():
    frame = textured_frames(1, 40, 56, 3)[0]
    jpeg = encode([frame])[0]
    ours = simplejpeg.decode_jpeg(jpeg, colorspace="RGB")
    assert np.array_equal(ours, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))
    clips = torch.randint(0, 256, (2, 3, 4, 5, 6), dtype=torch.uint8)
    expected = F.normalize(clips.permute(0, 2, 1, 3, 4).float() / 255, list(MEAN), list(STD))
    assert torch.equal(normalize_clips(clips, MEAN, STD), expected.permute(0, 2, 1, 3, 4))


def test_crop_larger_than_scaled_frame_is_an_error(store):
    ds = ClipDataset(store, "train", ValTransform(short_side=20, crop=24), clip_len=8)
    with pytest.raises(ValueError, match="smaller than the 24x24 crop"):
        ds[0]
