"""The loader's C code, loaded through ctypes: the JPEG window decoder
(``datasets/jpeg_window.c``) and the crop scaling (``datasets/bilinear.c``).

The Makefile compiles both into ``datasets/_native.so`` against the system's libjpeg-turbo
(``make native``; every target that loads clips depends on it). Plain C, no Python headers,
so it does not depend on the Python version.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from formats.store import StoreError

LIBRARY = Path(__file__).with_name("_native.so")
BUILD_HINT = (
    "build it with `make native` (needs a C compiler and libjpeg-turbo's headers; "
    "Debian/Ubuntu: apt-get install gcc libjpeg-dev)"
)
_lib: ctypes.CDLL | None = None


class NativeMissing(StoreError):
    """The compiled library is not there or does not load. A StoreError, so that every
    command that loads clips reports it as one line, like a missing store."""


def load() -> ctypes.CDLL:
    """The compiled library, its functions' argument types declared (loaded once per
    process)."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL(str(LIBRARY))
        except OSError as e:
            raise NativeMissing(f"{LIBRARY}: cannot load the loader's C code ({e}); "
                                f"{BUILD_HINT}") from None
        pointer, size, number = ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int
        stride = ctypes.c_long
        lib.jpeg_window_size.argtypes = [ctypes.c_char_p, size, pointer, pointer, pointer,
                                         number]
        lib.jpeg_window_decode.argtypes = [ctypes.c_char_p, size, pointer, *[number] * 4,
                                           pointer, size, pointer, size, pointer, number]
        lib.bilinear_crop.argtypes = [pointer, stride, number, number, pointer, pointer,
                                      number, pointer, pointer, number, pointer, stride,
                                      pointer]
        lib.bilinear_scratch_bytes.argtypes = [number]
        lib.bilinear_scratch_bytes.restype = ctypes.c_long
        lib.bilinear_avx2.argtypes = [number]
        for function in (lib.jpeg_window_size, lib.jpeg_window_decode, lib.bilinear_crop,
                         lib.bilinear_avx2):
            function.restype = number
        _lib = lib
    return _lib
