"""Settings and inputs shared by the whole suite, the inputs built once per session.

Tests only read the inputs; a test that damages or edits one takes a copy
(``tiny_store_copy``, or ``shutil.copytree`` of its own) instead of building another. Each is
checked at the end of the session: a test that changed a shared input fails there, naming
it, rather than making a later test pass or fail by chance."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from preprocess.extract import ExtractOptions
from preprocess.frames import build_store
from preprocess.synth import SynthOptions, make_dataset
from tests.helpers.faults import tree
from tests.helpers.train import build_tiny_store, one_thread


@pytest.fixture(autouse=True, scope="session")
def one_compute_thread() -> Iterator[None]:
    """One intra-op thread in the test process: on a small shared CPU (2 cores here, shared
    with other work), OpenMP threads that wait for each other at every operation make the
    in-process computations several times slower. The processes a test starts keep the
    settings that test gives them."""
    with one_thread():
        yield


# Lock files a reader creates in a store it reads (training holds the writer lock shared):
# reading leaves them behind, and they hold no data.
LOCKS = (".lock", ".writer.lock")


def _unchanged(folder: Path, what: str) -> Iterator[Path]:
    """Yield ``folder``, then check that nothing under it changed (lock files aside)."""
    before = tree(folder, LOCKS)
    yield folder
    after = tree(folder, LOCKS)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, (f"{what} at {folder} is shared by the session and must only be read; "
                         f"changed: {changed[:10]} (take a copy to change it)")


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Iterator[Path]:
    """The trainer tests' tiny jpg store (tests/helpers/train.py: 3 classes, 12 train and 7
    val clips of 4 frames)."""
    yield from _unchanged(build_tiny_store(tmp_path_factory.mktemp("tiny") / "store"),
                          "the tiny store")


@pytest.fixture
def tiny_store_copy(tiny_store: Path, tmp_path: Path) -> Path:
    """A copy of the tiny store that the test may damage or edit."""
    return Path(shutil.copytree(tiny_store, tmp_path / "store"))


# Small synthetic videos (2 classes, 4 train and 1 val video each: 10 videos) for the tests
# of ``preprocess frames`` under stress (full disk, locks, signals).
SYNTH_2X4 = SynthOptions(classes=2, train_per_class=4, val_per_class=1, duration=1.2, width=96,
                         height=64)


@pytest.fixture(scope="session")
def synth_videos(tmp_path_factory) -> Iterator[Path]:
    """A dataset folder of SYNTH_2X4's videos."""
    root = tmp_path_factory.mktemp("synth") / "data"
    make_dataset(SYNTH_2X4, root, jobs=2)
    yield from _unchanged(root, "the synthetic dataset")


@pytest.fixture(scope="session")
def synth_jpg_store(synth_videos: Path, tmp_path_factory) -> Iterator[Path]:
    """The jpg store of ``synth_videos`` built without interruption: the reference a store
    built under stress must equal."""
    store = tmp_path_factory.mktemp("synth_store") / "store"
    build_store(synth_videos, store, ExtractOptions(), jobs=2, quiet=True)
    yield from _unchanged(store, "the synthetic dataset's jpg store")
