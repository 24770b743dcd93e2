"""The per-library table of ``perf/frames.py --codecs``: ms per frame of resizing and
JPEG coding with each library importable in the running venv. Needs only numpy and Pillow,
so it also runs in a venv with Pillow-SIMD in place of Pillow."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def _best_ms(fn, items, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        out = [fn(x) for x in items]
        best = min(best, time.perf_counter() - start)
    _best_ms.last = out
    return best / len(items) * 1e3


def codec_table(frames_path: Path, short_side: int, quality: int) -> None:
    """ms per frame of resizing, JPEG encoding and JPEG decoding with every library that is
    importable here (run it once per venv to compare Pillow with Pillow-SIMD)."""
    import io
    from importlib import metadata

    import PIL
    from PIL import Image

    frames = list(np.load(frames_path))
    h, w = frames[0].shape[:2]
    scale = short_side / min(w, h)
    size = (2 * int(w * scale / 2 + 0.5), short_side) if scale < 1 else (w, h)
    try:
        metadata.distribution("pillow-simd")
        pil = f"Pillow-SIMD {PIL.__version__}"
    except metadata.PackageNotFoundError:
        pil = f"Pillow {PIL.__version__}"
    rows = []
    images = [Image.fromarray(f) for f in frames]
    rows.append((pil, "resize bilinear (antialiased)",
                 _best_ms(lambda im: im.resize(size, Image.BILINEAR), images)))
    rows.append((pil, "resize box (area)", _best_ms(lambda im: im.resize(size, Image.BOX),
                                                   images)))
    small = [np.asarray(im) for im in _best_ms.last]

    def pil_encode(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=quality)
        return buf.getvalue()

    rows.append((pil, f"JPEG encode q{quality}", _best_ms(pil_encode, small)))
    jpegs = _best_ms.last
    rows.append((pil, "JPEG decode", _best_ms(
        lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), jpegs)))
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        name = f"OpenCV {cv2.__version__}"
        cv2.setNumThreads(1)
        rows.append((name, "resize area", _best_ms(
            lambda a: cv2.resize(a, size, interpolation=cv2.INTER_AREA), frames)))
        rows.append((name, "resize bilinear", _best_ms(
            lambda a: cv2.resize(a, size, interpolation=cv2.INTER_LINEAR), frames)))
        rows.append((name, f"JPEG encode q{quality}", _best_ms(
            lambda a: cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], small)))
        rows.append((name, "JPEG decode", _best_ms(
            lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), jpegs)))
    try:
        import simplejpeg
    except ImportError:
        simplejpeg = None
    if simplejpeg is not None:
        name = f"simplejpeg {simplejpeg.__version__}"
        rows.append((name, f"JPEG encode q{quality}", _best_ms(
            lambda a: simplejpeg.encode_jpeg(a, quality, "RGB", "420"), small)))
        rows.append((name, "JPEG decode", _best_ms(
            lambda b: simplejpeg.decode_jpeg(b, "RGB"), jpegs)))
    try:
        import av
    except ImportError:
        av = None
    if av is not None and simplejpeg is not None:
        from preprocess.extract import encode_frame

        yuv = [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
               for f in frames]
        name = f"PyAV {av.__version__} swscale"
        rows.append((name, "resize area, yuv420p -> rgb24", _best_ms(
            lambda f: f.reformat(size[0], size[1], "yuv420p", interpolation="AREA",
                                 threads=1).to_ndarray(format="rgb24"), yuv)))
        rows.append(("ours: swscale + simplejpeg", "resize area + JPEG encode (YUV planes)",
                     _best_ms(lambda f: encode_frame(f, size, quality), yuv)))
    print(f"\n{len(frames)} frames {w}x{h} -> {size[0]}x{size[1]}, 1 thread, best of 3\n")
    print("| library | operation | ms/frame |\n|---|---|---:|")
    for name, op, ms in rows:
        print(f"| {name} | {op} | {ms:.2f} |")
