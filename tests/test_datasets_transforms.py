"""The clip transforms against a straightforward reference: PIL decode, then torchvision's
v2 functional normalize / resize / flip / crop in float32 with the same parameters, in the
workload's order (normalise, scale, flip, crop, as pytorchvideo's recipe runs them)."""

import io
import itertools

import numpy as np
import pytest
import simplejpeg
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode

from datasets import ClipDataset, TrainTransform, ValTransform, clip_rng, normalize_clips
from datasets.bilinear import use_avx2
from datasets.transforms import ArrayFrames, ClipParams, crop_taps, render_clip, resized_size
from preprocess.frame_bytes import read_frame_bytes
from tests.helpers.datasets import encode, make_store, textured_frames

MEAN, STD = (0.45, 0.40, 0.35), (0.225, 0.25, 0.2)
# Our scaling runs on uint8 frames and rounds each output pixel to an integer: within half a
# grey level of the float result, plus its fixed-point weights and intermediate (< 0.07
# level). The JPEG-decoded reference also passes through float normalisation, so the bound
# here is one grey level, 1 / (255 * std) after normalisation, and about a quarter level on
# average (uniform rounding error); the window tests below hold the scaling to 0.57.
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
    clips = torch.randint(0, 256, (2, 4, 5, 6, 3), dtype=torch.uint8)  # B T H W C
    expected = F.normalize(clips.permute(0, 1, 4, 2, 3).float() / 255, list(MEAN), list(STD))
    normalized = normalize_clips(clips, MEAN, STD)
    assert torch.equal(normalized, expected.permute(0, 2, 1, 3, 4))  # B C T H W
    assert normalized.is_contiguous()


def test_crop_larger_than_scaled_frame_is_an_error(store):
    ds = ClipDataset(store, "train", ValTransform(short_side=20, crop=24), clip_len=8)
    with pytest.raises(ValueError, match="smaller than the 24x24 crop"):
        ds[0]


def reference_crop(frame: np.ndarray, params: ClipParams) -> torch.Tensor:
    """Float scale of the whole frame (torchvision, bilinear, no antialias), flip, crop."""
    x = torch.from_numpy(frame).permute(2, 0, 1).float()
    x = F.resize(x, [params.short_side], InterpolationMode.BILINEAR, antialias=False)
    if params.flip:
        x = F.horizontal_flip(x)
    return F.crop(x, params.top, params.left, params.crop, params.crop)


# (height, width, short sides): shrinking and enlarging both orientations, by small and large
# factors, down to 2-pixel crops and up to the whole scaled frame.
WINDOW_CASES = [(40, 56, (27, 31, 39, 48, 64)), (50, 38, (23, 37, 40, 71)), (17, 23, (16, 30)),
                (320, 426, (256, 283, 320))]


def crop_cases(height: int, width: int, short_sides, seed: int):
    """Crops at the corners, edges and centre and at random places, flipped or not."""
    rng = np.random.default_rng(seed)
    for short_side in short_sides:
        new_h, new_w = resized_size(height, width, short_side)
        for crop in sorted({2, 7, min(new_h, new_w) // 2, min(new_h, new_w)}):
            spots = ({0, (new_h - crop) // 3, new_h - crop, int(rng.integers(0, new_h - crop + 1))},
                     {0, (new_w - crop) // 2, new_w - crop, int(rng.integers(0, new_w - crop + 1))})
            for top, left, flip in itertools.product(*spots, (False, True)):
                yield ClipParams(short_side, flip, top, left, crop)


@pytest.mark.parametrize("height, width, short_sides", WINDOW_CASES)
@pytest.mark.parametrize("avx2", [True, False])
def test_crop_scaling_matches_float_reference_everywhere(height, width, short_sides, avx2):
    """Every crop pixel is the float bilinear value of torchvision's resize of the whole
    frame, rounded, but for pixels within 0.07 of a rounding tie (at most 0.57 away); with
    the CPU's vector code and without it."""
    frames = [textured_frames(1, height, width, 5)[0],
              np.random.default_rng(height).integers(0, 256, (height, width, 3), np.uint8)]
    previous = use_avx2(avx2)
    try:
        for params in crop_cases(height, width, short_sides, seed=width):
            clip = render_clip(ArrayFrames(frames), lambda h, w, p=params: p)
            for t in range(2):
                reference = reference_crop(frames[t], params)
                ours = clip[t].permute(2, 0, 1).float()
                error = (ours - reference).abs()
                assert error.max().item() <= 0.57, params
                off = ours != reference.round()
                assert ((reference - reference.floor() - 0.5).abs()[off] <= 0.07).all(), params
    finally:
        use_avx2(previous)


def test_scale_one_is_a_plain_crop():
    frames = textured_frames(3, 40, 56, 6)
    for flip in (False, True):
        params = ClipParams(40, flip, 5, 9, 30)
        clip = render_clip(ArrayFrames(frames), lambda h, w, p=params: p)
        for t, frame in enumerate(frames):
            expected = (frame[:, ::-1] if flip else frame)[5:35, 9:39]
            assert np.array_equal(clip[t].numpy(), expected)


@pytest.mark.parametrize("height, width, short_sides", WINDOW_CASES)
def test_pixels_outside_the_window_never_reach_the_crop(height, width, short_sides):
    """The crop is the same when every source pixel outside its window is garbage: those
    are the pixels the decoder skips. And the window is no larger than the taps need."""
    frame = textured_frames(1, height, width, 12)[0]
    rng = np.random.default_rng(height)
    for params in crop_cases(height, width, short_sides, seed=height):
        rows, cols = crop_taps(height, width, params)
        for taps, size in ((rows, height), (cols, width)):
            assert 0 <= taps.start < taps.stop <= size
            used = taps.start + taps.offsets
            assert used.min() == taps.start and used.max() + 2 == taps.stop
        poisoned = rng.integers(0, 256, frame.shape, dtype=np.uint8)
        window = np.s_[rows.start : rows.stop, cols.start : cols.stop]
        poisoned[window] = frame[window]
        clean = render_clip(ArrayFrames([frame]), lambda h, w, p=params: p)
        dirty = render_clip(ArrayFrames([poisoned]), lambda h, w, p=params: p)
        assert torch.equal(clean, dirty), params


def test_loader_clips_equal_rendering_fully_decoded_frames(store):
    """ClipDataset (window decoding) gives exactly the clip that the same transform gives
    from frames decoded whole by PIL."""
    transform = TrainTransform(short_side_range=(28, 64), crop=24)
    ds = ClipDataset(store, "train", transform, clip_len=8, seed=3)
    for epoch in range(3):
        for index in range(len(ds)):
            clip, _, video = ds[(epoch, index)]
            record = ds.records[video]
            jpegs = read_frame_bytes(store, record, ds.clip_frames(index))
            frames = ArrayFrames([np.asarray(Image.open(io.BytesIO(j)).convert("RGB"))
                                  for j in jpegs])
            assert torch.equal(clip, transform(frames, clip_rng(3, epoch, index)))
