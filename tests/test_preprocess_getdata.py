"""make data: Kinetics-20 from a local Kinetics-400 copy, or from a git repository (offline:
a repository made here, reached by a file:// URL)."""

import errno
import os
import subprocess

import pytest

from preprocess import dataset_check, getdata
from preprocess.__main__ import main
from preprocess.getdata import get_data
from tests.helpers.preprocess import manifest_slice


def content(entry):
    return ("video " + "/".join(entry)).encode()


def leftovers(out):
    return [p for p in out.rglob(".*") if p.name.endswith(".part")]


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    path, entries = manifest_slice(tmp_path, per_class_split=2, classes=2)
    monkeypatch.setattr(dataset_check, "MANIFEST", path)  # the CLI's default manifest
    return entries


def k400_copy(root, entries):
    """The manifest's files scattered at several depths, with other Kinetics-400 files."""
    for i, entry in enumerate(entries):
        folder = root / ["", "part1", "part2/deeper/still"][i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / entry[2]).write_bytes(content(entry))
    (root / "part1" / "zzzzzzzzzzz_000001_000011.mp4").write_bytes(b"another class")
    return root


def test_k400_layout_is_found_by_name_and_hard_linked(tmp_path, manifest, capsys):
    k400 = k400_copy(tmp_path / "k400", manifest)
    out = tmp_path / "data" / "kinetics20"
    assert main(["data", "--out", str(out), "--k400", str(k400)]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: 8 files hard-linked, 0 copied, 0 already in place, 0 not found" in printed
    assert f"{out}: matches the benchmark's Kinetics-20 (8 videos)" in printed
    for entry in manifest:
        dst = out.joinpath(*entry)
        assert dst.read_bytes() == content(entry) and dst.stat().st_nlink == 2
    assert dataset_check.check_dataset(out).matches and not leftovers(out)
    assert (tmp_path / "data" / "kinetics20_check.csv").read_text().count("\n") == 1


def test_k400_missing_files_are_listed_and_a_rerun_finishes(tmp_path, manifest, capsys):
    k400 = k400_copy(tmp_path / "k400", manifest)
    absent = manifest[5]
    hidden = tmp_path / "elsewhere" / absent[2]
    hidden.parent.mkdir()
    next(k400.rglob(absent[2])).rename(hidden)
    out = tmp_path / "kinetics20"
    assert main(["data", "--out", str(out), "--k400", str(k400)]) == 1
    printed = capsys.readouterr().out
    assert f"not found in {k400}: 1 files" in printed and "/".join(absent) in printed
    assert "differs from Kinetics-20: 1 missing, 0 extra" in printed
    # An interrupted run's temporary file, and a file already in place, before the rerun.
    stray = out / absent[0] / absent[1] / f".{absent[2]}.part"
    stray.write_bytes(b"half")
    kept = out.joinpath(*manifest[0])
    inode = kept.stat().st_ino
    hidden.rename(k400 / absent[2])
    assert main(["data", "--out", str(out), "--k400", str(k400)]) == 0
    printed = capsys.readouterr().out
    assert "1 files hard-linked, 0 copied, 7 already in place, 0 not found" in printed
    assert kept.stat().st_ino == inode and not leftovers(out)
    assert out.joinpath(*absent).read_bytes() == content(absent)


def test_across_file_systems_files_are_copied(tmp_path, manifest, monkeypatch):
    k400 = k400_copy(tmp_path / "k400", manifest)

    def no_link(src, dst, **kwargs):  # what os.link does across file systems
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "kinetics20"
    assert get_data(out, k400=k400, quiet=True).matches
    for entry in manifest:
        dst = out.joinpath(*entry)
        assert dst.read_bytes() == content(entry) and dst.stat().st_nlink == 1


def git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repository(tmp_path, manifest):
    """A repository in the original's layout: data/kinetics20 plus other folders."""
    repo = tmp_path / "VideoModelBenchmark"
    folder = repo / "data" / "kinetics20"
    for entry in manifest:
        (folder / entry[0] / entry[1]).mkdir(parents=True, exist_ok=True)
        (folder.joinpath(*entry)).write_bytes(content(entry))
    (folder / "train.csv").write_text(",label,youtube_id,time_start,time_end,split,is_cc,"
                                      "video_name\n")
    (repo / "models").mkdir()
    (repo / "models" / "weights.bin").write_bytes(os.urandom(4096))  # must not be fetched
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "data", cwd=repo)
    git("config", "uploadpack.allowFilter", "true", cwd=repo)  # let clones filter blobs
    return repo


def test_git_sparse_checkout_lays_out_the_folder_and_checks_it(tmp_path, repository, manifest,
                                                               capsys):
    out = tmp_path / "data" / "kinetics20"
    url = repository.as_uri()
    assert main(["data", "--out", str(out), "--repo", url]) == 0
    printed = capsys.readouterr().out
    assert "8 files hard-linked" in printed and "matches the benchmark's Kinetics-20" in printed
    for entry in manifest:
        assert out.joinpath(*entry).read_bytes() == content(entry)
    assert (out / "train.csv").is_file()
    assert not (tmp_path / "data" / ".kinetics20.git").exists()  # removed when complete
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["kinetics20",
                                                                      "kinetics20_check.csv"]
    # A second run with everything in place fetches nothing (the URL is not even used).
    out.joinpath(*manifest[2]).unlink()
    (out / manifest[2][0] / manifest[2][1] / f".{manifest[2][2]}.part").write_bytes(b"half")
    assert get_data(out, url=url, quiet=True).matches and not leftovers(out)
    assert get_data(out, url="file:///nowhere", quiet=True).matches


def test_the_clone_is_sparse_and_blob_filtered(tmp_path, repository):
    work = tmp_path / "work"
    folder = getdata.fetch_repo(repository.as_uri(), work, quiet=True)
    assert folder == work / "data" / "kinetics20" and folder.is_dir()
    assert not (work / "models").exists()
    config = subprocess.run(["git", "-C", str(work), "config", "remote.origin.partialclonefilter"],
                            capture_output=True, text=True).stdout.strip()
    assert config == "blob:none"
    blob = subprocess.run(["git", "-C", str(repository), "rev-parse", "HEAD:models/weights.bin"],
                          capture_output=True, text=True).stdout.strip()
    present = subprocess.run(["git", "-C", str(work), "cat-file", "--batch-check",
                              "--batch-all-objects"], capture_output=True, text=True).stdout
    assert blob not in present  # the other folder's content never came over


def test_a_git_failure_is_one_line_saying_what_to_do(tmp_path, manifest, capsys):
    out = tmp_path / "kinetics20"
    assert main(["data", "--out", str(out), "--repo", (tmp_path / "no-repo").as_uri()]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: git clone of ")
    assert "make data K400=/path/to/kinetics-400" in captured.err
    assert not any(out.iterdir())  # nothing half-written
