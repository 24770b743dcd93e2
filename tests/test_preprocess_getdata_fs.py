"""make data over a real file system: links of every kind in a Kinetics-400 copy, special
files under a video's name, a read-only, unwritable or full destination."""

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from preprocess import dataset_check, placing
from preprocess.__main__ import main
from tests.helpers.faults import run_obeying_file_modes
from tests.helpers.train import small_tmpfs
from tests.test_preprocess_dataset_check import manifest_slice

REPO = Path(__file__).resolve().parent.parent


def content(entry, size=0):
    text = ("video " + "/".join(entry)).encode()
    return text + b"\0" * size


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    path, entries = manifest_slice(tmp_path, per_class_split=2, classes=2)  # 8 files
    monkeypatch.setattr(dataset_check, "MANIFEST", path)
    return entries


def regular(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.endswith(".part")]


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one error line (the progress bars share stderr), with no traceback anywhere."""
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.stderr.endswith(line + "\n")
    return line


def data_cli(*args: str, obey_modes: bool = False) -> subprocess.CompletedProcess:
    """``python -m preprocess data ...`` in its own process (bounded: a FIFO opened by
    mistake would block for ever)."""
    command = [sys.executable, "-m", "preprocess", "data", *args]
    if obey_modes:
        return run_obeying_file_modes(command, timeout=120)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_links_give_real_files_or_are_reported_missing(tmp_path, manifest, capsys):
    k400, outside = tmp_path / "k400", tmp_path / "outside"
    for folder in (k400 / "store", k400 / "links" / "deep", outside / "more"):
        folder.mkdir(parents=True)
    e = manifest
    (k400 / "store" / "r0").write_bytes(content(e[0]))
    (k400 / "links" / "deep" / e[0][2]).symlink_to("../../store/r0")  # relative, inside
    (outside / "r1").write_bytes(content(e[1]))
    (k400 / "links" / e[1][2]).symlink_to(outside / "r1")  # absolute, outside
    (outside / "r2").write_bytes(content(e[2]))
    (k400 / "links" / e[2][2]).symlink_to("../../outside/r2")  # relative, outside
    (k400 / "store" / "r3").write_bytes(content(e[3]))
    (k400 / "store" / "hop").symlink_to("r3")
    (k400 / e[3][2]).symlink_to(k400 / "store" / "hop")  # a link to a link
    (k400 / "links" / e[4][2]).symlink_to("../gone.mp4")  # dangling, no other copy
    (k400 / "links" / e[5][2]).symlink_to(e[5][2])  # a loop onto itself
    (k400 / "a_first").mkdir()
    (k400 / "a_first" / e[6][2]).symlink_to("nowhere")  # dangling, but a real copy later
    (k400 / "store" / e[6][2]).write_bytes(content(e[6]))
    (outside / "more" / e[7][2]).write_bytes(content(e[7]))
    (k400 / "linked_folder").symlink_to(outside / "more")  # a folder link, searched
    (k400 / "links" / "loop").symlink_to(k400)  # a loop of folders: searched once
    out = tmp_path / "data" / "kinetics20"

    assert main(["data", "--out", str(out), "--k400", str(k400)]) == 1
    printed = capsys.readouterr().out
    for i in (0, 1, 2, 3, 6, 7):
        dst = out.joinpath(*e[i])
        assert regular(dst) and dst.read_bytes() == content(e[i]), dst
    for i in (4, 5):
        assert not os.path.lexists(out.joinpath(*e[i]))
    assert f"{'/'.join(e[4])}: {k400 / 'links' / e[4][2]}: a broken symbolic link (to " \
           "../gone.mp4)" in printed
    assert f"{'/'.join(e[5])}: {k400 / 'links' / e[5][2]}: a symbolic link loop" in printed
    assert "6 files hard-linked, 0 copied, 0 already in place, 2 not found" in printed
    assert "differs from Kinetics-20: 2 missing, 0 extra" in printed
    assert not leftovers(out)


def test_a_folder_link_to_the_whole_machine_ends_the_search_in_one_line(tmp_path, manifest,
                                                                        monkeypatch, capsys):
    k400 = tmp_path / "k400"
    k400.mkdir()
    (k400 / "root").symlink_to("/")
    monkeypatch.setattr(placing, "MAX_FOLDERS", 2000)  # 100 000 in use; / holds more
    assert main(["data", "--out", str(tmp_path / "out"), "--k400", str(k400)]) == 2
    err = capsys.readouterr().err.split("\n")[-2]  # after the search's progress bar
    assert err.startswith(f"error: {k400}: more than 2000 folders searched (the last ")
    assert err.endswith("does a folder link lead out of the Kinetics-400 copy, to / say?; give "
                        "K400= a folder holding only the copy")


def test_a_broken_link_left_in_the_dataset_is_never_a_match(tmp_path, manifest, capsys):
    """What the earlier ``os.link`` of a relative link left: a link dangling in the dataset
    folder. The check alone goes by names; make data replaces it, or counts it missing."""
    k400 = tmp_path / "k400"
    k400.mkdir()
    for entry in manifest:
        (k400 / entry[2]).write_bytes(content(entry))
    out = tmp_path / "kinetics20"
    for i, entry in enumerate(manifest):
        out.joinpath(*entry[:2]).mkdir(parents=True, exist_ok=True)
        if i < 2:
            out.joinpath(*entry).symlink_to(entry[2] + ".real")  # dangles here
        else:
            out.joinpath(*entry).write_bytes(content(entry))
    (k400 / manifest[1][2]).unlink()  # no source left for this one
    assert dataset_check.check_dataset(out).matches  # by names alone
    assert main(["data", "--out", str(out), "--k400", str(k400)]) == 1
    printed = capsys.readouterr().out
    assert "1 files hard-linked, 0 copied, 6 already in place, 1 not found" in printed
    assert regular(out.joinpath(*manifest[0]))
    assert out.joinpath(*manifest[0]).read_bytes() == content(manifest[0])
    assert f"{out.joinpath(*manifest[1])}: a broken symbolic link" in printed
    assert "differs from Kinetics-20: 1 missing, 0 extra" in printed
    assert (tmp_path / "kinetics20_check.csv").read_text().count("missing") == 1


def test_special_files_are_reported_per_file_and_never_opened(tmp_path, manifest):
    k400 = tmp_path / "k400"
    k400.mkdir()
    for entry in manifest[4:]:
        (k400 / entry[2]).write_bytes(content(entry))
    os.mkfifo(k400 / manifest[0][2])  # opening it would wait for a writer for ever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(k400 / manifest[1][2]))
    (k400 / manifest[2][2]).symlink_to("/dev/zero")  # once copied until the disk was full
    os.mknod(k400 / manifest[3][2], 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    out = tmp_path / "kinetics20"
    done = data_cli("--out", str(out), "--k400", str(k400), "--manifest",
                    str(tmp_path / "manifest.csv"))
    assert done.returncode == 1, done.stderr
    for entry, what in zip(manifest[:4], ("a FIFO", "a socket", "a character device",
                                      "a character device"), strict=True):
        assert f"{'/'.join(entry)}: {k400 / entry[2]}: {what}, not a video file; not opened" \
            in done.stdout
        assert not os.path.lexists(out.joinpath(*entry))
    assert "4 files hard-linked, 0 copied, 0 already in place, 4 not found" in done.stdout
    assert not leftovers(out)


def test_a_read_only_destination_is_one_line(tmp_path, manifest):
    k400 = tmp_path / "k400"
    k400.mkdir()
    for entry in manifest:
        (k400 / entry[2]).write_bytes(content(entry))
    with small_tmpfs(tmp_path / "mnt", "1m") as mnt:
        out = mnt / "kinetics20"
        kept = out.joinpath(*manifest[0])
        kept.parent.mkdir(parents=True)
        kept.write_bytes(content(manifest[0]))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        done = data_cli("--out", str(out), "--k400", str(k400), "--manifest",
                        str(tmp_path / "manifest.csv"))
        assert done.returncode == 2
        assert error_line(done) == (f"error: {out.joinpath(*manifest[1])}: read-only file "
                                    "system while writing the dataset; give a folder you can "
                                    "write: make data DATA=<folder> (or --out)")
        assert sorted(p.relative_to(mnt) for p in mnt.rglob("*")) == sorted(
            p.relative_to(mnt) for p in (out, kept.parent.parent, kept.parent, kept))


def test_an_unwritable_destination_is_one_line_for_root_too(tmp_path, manifest):
    k400 = tmp_path / "k400"
    k400.mkdir()
    for entry in manifest:
        (k400 / entry[2]).write_bytes(content(entry))
    parent = tmp_path / "data"
    parent.mkdir(mode=0o555)
    done = data_cli("--out", str(parent / "kinetics20"), "--k400", str(k400), "--manifest",
                    str(tmp_path / "manifest.csv"), obey_modes=True)
    assert done.returncode == 2, done.stderr
    assert error_line(done) == (f"error: {parent / 'kinetics20'}: permission denied while "
                                "writing the dataset; give a folder you can write: make data "
                                "DATA=<folder> (or --out)")
    assert not any(parent.iterdir())


def test_a_full_disk_leaves_nothing_half_written_and_a_rerun_finishes(tmp_path, manifest):
    k400 = tmp_path / "k400"  # another file system than the tmpfs: files are copied
    k400.mkdir()
    for entry in manifest:
        (k400 / entry[2]).write_bytes(content(entry, 40_000))
    with small_tmpfs(tmp_path / "mnt", "128k") as mnt:
        out = mnt / "kinetics20"
        args = ("--out", str(out), "--k400", str(k400), "--manifest",
                str(tmp_path / "manifest.csv"))
        done = data_cli(*args)
        assert done.returncode == 2, done.stderr
        assert error_line(done).endswith(": disk full while writing the dataset; free space "
                                         "and run the same command again (files in place are "
                                         "kept)")
        placed = [e for e in manifest if os.path.lexists(out.joinpath(*e))]
        assert 0 < len(placed) < len(manifest) and not leftovers(mnt)
        for entry in placed:  # complete, never cut
            assert out.joinpath(*entry).read_bytes() == content(entry, 40_000)
        subprocess.run(["mount", "-o", "remount,size=2m", str(mnt)], check=True)
        done = data_cli(*args)
        assert done.returncode == 0, done.stderr
        assert f"{len(manifest) - len(placed)} copied, {len(placed)} already in place" \
            in done.stdout
        for entry in manifest:
            assert out.joinpath(*entry).read_bytes() == content(entry, 40_000)
        assert not leftovers(mnt)


def test_a_clone_on_a_full_disk_is_one_line_and_leaves_no_clone(tmp_path, manifest):
    repo = tmp_path / "VideoModelBenchmark"
    for entry in manifest:  # random bytes: git cannot compress them below the tmpfs size
        path = repo.joinpath("data", "kinetics20", *entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(40_000))
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t",
                                               "commit", "-q", "-m", "data"],
                 ["config", "uploadpack.allowFilter", "true"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    with small_tmpfs(tmp_path / "mnt", "128k") as mnt:
        done = data_cli("--out", str(mnt / "kinetics20"), "--repo", repo.as_uri(),
                        "--manifest", str(tmp_path / "manifest.csv"))
        assert done.returncode == 2, done.stderr
        line = error_line(done)
        assert line.startswith("error: git ") and ": disk full (" in line, line
        assert line.endswith("free space and run the same command again (files in place "
                             "are kept)")
        assert not any(p.name.endswith((".git", ".tmp", ".part")) for p in mnt.rglob("*"))
