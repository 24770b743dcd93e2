"""Store identity: what store.json records when a build completes, what a run reads of it,
and when a run on the store is not compliant."""

import json
import shutil
from fractions import Fraction

import numpy as np
import pytest

from formats.results import STORE_KEYS
from formats.store import SETTINGS_FILE, index_path, read_settings
from preprocess import dataset_check
from preprocess.encode import encode_mp4
from preprocess.extract import ExtractOptions
from preprocess.frames import build_store
from preprocess.identity import read_store_identity, store_compliance_issues, store_fingerprint
from preprocess.verify import verify_store
from tests.helpers.preprocess import manifest_slice, smooth_frames

WORKLOAD = ExtractOptions("jpg", 320, 90)


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    """Tiny videos named as a slice of the manifest (2 classes, 2 train + 1 val each), and
    that slice as the manifest: the folder is "the benchmark's Kinetics-20" here."""
    root = tmp_path_factory.mktemp("k20")
    manifest, entries = manifest_slice(root, per_class_split=2, classes=2)
    entries = entries[:4] + [entries[4], entries[6]]  # 2 + 2 train, 1 + 1 val
    manifest.write_text("split,class,file\n" + "".join(f"{','.join(e)}\n" for e in entries))
    data = root / "data"
    for i, (split, cls, name) in enumerate(entries):
        (data / split / cls).mkdir(parents=True, exist_ok=True)
        frames = np.ascontiguousarray(smooth_frames(36 + i, 48, 32)[:, :, :: 1 - 2 * (i % 2)])
        encode_mp4(data / split / cls / name, frames, Fraction(30))
    return data, manifest, entries


@pytest.fixture
def dataset(kinetics, tmp_path, monkeypatch):
    data, manifest, entries = kinetics
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    monkeypatch.setattr(dataset_check, "MANIFEST", manifest)
    return copy, entries


def build(data, store, opts=WORKLOAD):
    return build_store(data, store, opts, jobs=1, quiet=True)


def test_a_matching_build_records_its_identity_and_is_compliant(dataset, tmp_path):
    data, entries = dataset
    store = tmp_path / "store"
    build(data, store)
    recorded = read_settings(store).identity
    assert recorded["fingerprint"] == store_fingerprint(store)
    assert recorded["splits"]["train"]["videos"] == 4 and recorded["splits"]["val"]["videos"] == 2
    assert recorded["splits"]["train"]["kept_frames"] == sum(18 + (i + 1) // 2 for i in range(4))
    assert recorded["failed_videos"] == 0
    assert recorded["dataset_check"]["matches_kinetics20"] is True
    assert (store / "dataset_check.csv").read_text() == "split,class,file,difference\n"
    identity = read_store_identity(store)
    assert set(identity) == set(STORE_KEYS) - {"clips"}
    assert identity["videos"] == {"train": 4, "val": 2}
    assert identity["dataset_matches_kinetics20"] is True and identity["failed_videos"] == 0
    assert (identity["format"], identity["short_side"], identity["jpeg_quality"]) == \
        ("jpg", 320, 90)
    assert store_compliance_issues(identity) == []
    json.dumps(identity)  # goes into run.json as is
    assert verify_store(store, jobs=1, quiet=True) == []


def test_a_folder_with_a_file_removed_makes_runs_non_compliant(dataset, tmp_path):
    data, entries = dataset
    data.joinpath(*entries[1]).unlink()
    store = tmp_path / "store"
    build(data, store)
    identity = read_store_identity(store)
    assert identity["dataset_matches_kinetics20"] is False
    assert identity["dataset_check"]["missing"] == 1
    assert store_compliance_issues(identity) == [
        "dataset differs from Kinetics-20: 1 missing, 0 extra (of 6 expected, 5 found)"]
    assert (store / "dataset_check.csv").read_text().splitlines()[1] == \
        ",".join(entries[1]) + ",missing"


def test_videos_that_fail_stay_visible(dataset, tmp_path):
    data, entries = dataset
    data.joinpath(*entries[2]).write_bytes(b"not a video")  # the right name, broken content
    store = tmp_path / "store"
    build(data, store)
    identity = read_store_identity(store)
    assert identity["dataset_matches_kinetics20"] is True and identity["failed_videos"] == 1
    assert read_settings(store).identity["splits"]["train"]["failed"] == 1
    assert store_compliance_issues(identity) == [
        "1 videos failed in the store (see its failures.csv)"]


def test_other_settings_are_named(dataset, tmp_path):
    data, _ = dataset
    store = tmp_path / "store"
    build(data, store, ExtractOptions("jpg", 128, 50))
    issues = store_compliance_issues(read_store_identity(store))
    assert issues == ["store settings differ: short_side 128, jpeg_quality 50 (the workload's: "
                      "short_side 320, jpeg_quality 90)"]


def test_fingerprint_is_the_content_not_the_format_and_a_rebuild_keeps_it(dataset, tmp_path):
    data, _ = dataset
    jpg, hdf5 = tmp_path / "jpg", tmp_path / "hdf5"
    build(data, jpg)
    build(data, hdf5, ExtractOptions("hdf5", 320, 90))
    assert store_fingerprint(jpg) == store_fingerprint(hdf5)
    first = read_settings(jpg).identity
    build(data, jpg)  # a rerun: nothing to do, the same record
    assert read_settings(jpg).identity == first
    other = tmp_path / "q89"
    build(data, other, ExtractOptions("jpg", 320, 89))
    assert store_fingerprint(other) != store_fingerprint(jpg)


def test_a_store_without_a_record_or_changed_since_is_said_so(dataset, tmp_path, capsys):
    data, entries = dataset
    store = tmp_path / "store"
    build(data, store)
    settings = json.loads((store / SETTINGS_FILE).read_text())
    old = {k: v for k, v in settings.items() if k != "identity"}  # an older version's store
    (store / SETTINGS_FILE).write_text(json.dumps(old))
    identity = read_store_identity(store)
    assert identity["dataset_matches_kinetics20"] is None and identity["failed_videos"] is None
    assert identity["fingerprint"] == settings["identity"]["fingerprint"]  # still computable
    assert store_compliance_issues(identity) == [
        "store has no identity record (built by an older version, or its build did not "
        "finish); rebuild with make frames"]
    assert verify_store(store, jobs=1, quiet=False) == []  # a note, not a problem
    assert "no identity record" in capsys.readouterr().out

    (store / SETTINGS_FILE).write_text(json.dumps(settings))
    index = index_path(store, "val")
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:-1]) + "\n")  # a video dropped from the index by hand
    identity = read_store_identity(store)
    assert identity["dataset_check"]["record"] == "stale"
    assert identity["videos"] == {"train": 4, "val": 1}
    assert store_compliance_issues(identity) == [
        "store changed since its identity was recorded (its index has another fingerprint); "
        "rebuild with make frames"]
    problems = verify_store(store, jobs=1, quiet=True)
    assert len(problems) == 1 and "recorded fingerprint" in problems[0]


def test_verify_redoes_the_dataset_check(dataset, tmp_path, capsys):
    data, entries = dataset
    store = tmp_path / "store"
    build(data, store)
    data.joinpath(*entries[0]).unlink()  # the folder changes after the build
    assert verify_store(store, jobs=1) == []  # the store itself is sound
    out = capsys.readouterr().out
    assert "dataset when built: " in out and "matches the benchmark's Kinetics-20" in out
    assert "dataset now: " in out and "1 missing, 0 extra" in out and "run make frames" in out
