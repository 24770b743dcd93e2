"""The dataset check: a folder against the Kinetics-20 manifest (names only)."""

import csv

import pytest

from preprocess import dataset_check
from preprocess.__main__ import main
from preprocess.dataset_check import (
    MANIFEST,
    check_dataset,
    read_manifest,
    summary_lines,
    write_differences,
)
from tests.helpers.preprocess import KINETICS20_CLASSES as CLASSES
from tests.helpers.preprocess import manifest_slice


def make_folder(root, entries):
    for split, cls, name in entries:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / name).write_bytes(b"not decoded by the check")
    return root


def test_the_shipped_manifest_is_the_benchmarks_kinetics20():
    entries, digest = read_manifest(MANIFEST)
    assert len(entries) == len(set(entries)) == 1376 and len(digest) == 64
    assert entries == sorted(entries)
    assert sum(e[0] == "train" for e in entries) == 1276
    assert sum(e[0] == "val" for e in entries) == 100
    assert sorted({e[1] for e in entries}) == CLASSES
    for cls in CLASSES:  # 5 val videos per class
        assert sum(e[:2] == ("val", cls) for e in entries) == 5
    assert all(e[2].endswith(".mp4") for e in entries)
    assert len({e[2] for e in entries}) == 1376  # names are unique: found by name in K400


def test_a_folder_with_exactly_the_manifests_files_matches(tmp_path):
    manifest, entries = manifest_slice(tmp_path)
    data = make_folder(tmp_path / "data", entries)
    (data / "train.csv").write_text("lists are not videos\n")
    (data / "train" / CLASSES[0] / ".DS_Store").write_text("hidden")
    (data / "train" / CLASSES[0] / "notes.txt").write_text("not a video")
    check = check_dataset(data, manifest)
    assert check.matches and check.found == check.expected == len(entries) == 8
    assert summary_lines(check) == [f"{data}: matches the benchmark's Kinetics-20 (8 videos)"]
    record = check.record()
    assert record["matches_kinetics20"] is True and (record["missing"], record["extra"]) == (0, 0)


def test_missing_and_extra_files_are_reported_per_split_and_class(tmp_path):
    manifest, entries = manifest_slice(tmp_path)
    data = make_folder(tmp_path / "data", entries[1:])  # the first train file missing
    make_folder(data, [("val", CLASSES[1], "zzzzzzzzzzz_000000_000010.mp4"),
                       ("train", "yodelling", "aaaaaaaaaaa_000000_000010.mp4")])
    check = check_dataset(data, manifest)
    assert not check.matches
    assert check.missing == [entries[0]]
    assert check.extra == [("train", "yodelling", "aaaaaaaaaaa_000000_000010.mp4"),
                           ("val", CLASSES[1], "zzzzzzzzzzz_000000_000010.mp4")]
    lines = summary_lines(check, tmp_path / "diff.csv")
    assert lines[0] == (f"{data}: differs from Kinetics-20: 1 missing, 2 extra "
                        "(of 8 expected, 9 found)")
    assert f"  train/{CLASSES[0]}: 1 missing" in lines
    assert "  train/yodelling: 1 extra" in lines and f"  val/{CLASSES[1]}: 1 extra" in lines
    write_differences(check, tmp_path / "diff.csv")
    with open(tmp_path / "diff.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["split", "class", "file", "difference"],
                    ["train", CLASSES[0], entries[0][2], "missing"],
                    ["train", "yodelling", "aaaaaaaaaaa_000000_000010.mp4", "extra"],
                    ["val", CLASSES[1], "zzzzzzzzzzz_000000_000010.mp4", "extra"]]


def test_another_dataset_does_not_match_and_is_said_so_briefly(tmp_path):
    data = make_folder(tmp_path / "synth", [("train", "circles", f"v{i}.mp4") for i in range(3)]
                       + [("val", "circles", "w.mp4")])
    check = check_dataset(data)  # the real manifest
    assert (len(check.missing), len(check.extra)) == (1376, 4)
    lines = summary_lines(check)
    assert lines[0].endswith("differs from Kinetics-20: 1376 missing, 4 extra "
                             "(of 1376 expected, 4 found)")
    assert len(lines) == 2 and "another dataset" in lines[1]


def test_a_missing_split_folder_means_all_its_files_are_missing(tmp_path):
    manifest, entries = manifest_slice(tmp_path)
    data = make_folder(tmp_path / "data", [e for e in entries if e[0] == "train"])
    check = check_dataset(data, manifest)
    assert check.missing == [e for e in entries if e[0] == "val"] and not check.extra


def test_cli_check_exit_status_csv_and_one_line_errors(tmp_path, capsys, monkeypatch):
    manifest, entries = manifest_slice(tmp_path)
    data = make_folder(tmp_path / "data", entries)
    assert main(["check", "--data", str(data), "--manifest", str(manifest)]) == 0
    default = tmp_path / "data_check.csv"  # beside the folder
    assert default.read_text() == "split,class,file,difference\n"
    (data / entries[3][0] / entries[3][1] / entries[3][2]).unlink()
    # The default manifest is the module's; a test points it at the slice.
    monkeypatch.setattr(dataset_check, "MANIFEST", manifest)
    assert main(["check", "--data", str(data), "--csv", str(tmp_path / "x" / "d.csv")]) == 1
    out = capsys.readouterr().out
    assert "differs from Kinetics-20: 1 missing, 0 extra" in out
    assert f"every difference is listed in {tmp_path / 'x' / 'd.csv'}" in out
    assert (tmp_path / "x" / "d.csv").read_text().count("\n") == 2
    assert main(["check", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "make data" in err


def test_a_damaged_manifest_is_one_line(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("split,class\ntrain,a\n")
    with pytest.raises(dataset_check.LayoutError, match="not a manifest"):
        read_manifest(bad)
