"""Hostile archives given as packages: each bad member refused with one warning line, nothing
written outside a fresh temporary folder, the good members still read."""

import tarfile
from pathlib import Path

import pytest

import score.unpack as unpack
from score.__main__ import main as score_main
from score.compare import load_inputs
from score.package import main as package_main
from tests.helpers.compare import hostile_archive, member, unpack_plain, write_system


@pytest.fixture
def good(tmp_path):
    """An unpacked, intact package of node-a (its top folder)."""
    write_system(tmp_path / "results", "node-a", 300.0, runs=1)
    archive = tmp_path / "node-a.tar.gz"
    assert package_main(["--results", str(tmp_path / "results"), "--system", "node-a",
                         "--out", str(archive)]) == 0
    return unpack_plain(archive, tmp_path / "plain")


def _read(archive):
    warnings: list[str] = []
    runs = load_inputs([archive], warnings)
    return runs, [w for w in warnings if "refused" in w]


@pytest.mark.parametrize("name, bad, why", [
    ("absolute", member("/tmp/vmb-escaped-absolute.txt"), "absolute path"),
    ("dotdot", member("node-a/../../vmb-escaped-dotdot.txt"), "'..' in its path"),
    ("symlink", member("node-a/runs/link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
     "a link"),
    ("hardlink", member("node-a/runs/hard", kind=tarfile.LNKTYPE, link="/etc/passwd"),
     "a link"),
    ("device", member("node-a/runs/null", kind=tarfile.CHRTYPE), "device"),
    ("fifo", member("node-a/runs/pipe", kind=tarfile.FIFOTYPE), "device, fifo"),
])
def test_each_hostile_member_is_refused_with_one_line(good, tmp_path, name, bad, why):
    archive = hostile_archive(tmp_path / f"{name}.tar.gz", [bad], good)
    runs, refused = _read(archive)
    assert len(refused) == 1 and why in refused[0] and bad[0].name in refused[0]
    assert len(runs) == 2  # the good members are still read, and labelled
    assert all(any("refused" in issue or "extra" in issue for issue in run.compliance_issues)
               for run in runs)
    assert not (tmp_path.parent / "vmb-escaped-dotdot.txt").exists()
    assert not (tmp_path / "vmb-escaped-dotdot.txt").exists()
    assert not Path("/tmp/vmb-escaped-absolute.txt").exists()


def test_huge_members_too_many_members_and_total_size_are_bounded(good, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(unpack, "MAX_MEMBER_BYTES", 1_000_000)  # over the plots
    archive = hostile_archive(tmp_path / "huge.tar.gz",
                              [member("node-a/big.bin", b"\0" * 2_000_000)], good)
    _, refused = _read(archive)
    assert len(refused) == 1 and "over" in refused[0] and "node-a/big.bin" in refused[0]

    monkeypatch.setattr(unpack, "MAX_MEMBERS", 30)
    many = [member(f"node-a/junk/{i}.txt") for i in range(50)]
    _, refused = _read(hostile_archive(tmp_path / "many.tar.gz", many, good))
    assert len(refused) == 1 and "more than 30 members" in refused[0]

    monkeypatch.setattr(unpack, "MAX_MEMBERS", 20_000)
    monkeypatch.setattr(unpack, "MAX_TOTAL_BYTES", 150_000)
    parts = [member(f"node-a/part{i}.bin", b"\1" * 60_000) for i in range(4)]
    _, refused = _read(hostile_archive(tmp_path / "total.tar.gz", parts, good))
    assert len(refused) >= 2 and all("in all" in line for line in refused)


def test_a_compression_bomb_stops_at_the_bound(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(unpack, "MAX_STREAM_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.tar.gz"
    # 8 MiB of zeros in one member: a few KiB compressed.
    hostile_archive(bomb, [member("node-a/zeros.bin", b"\0" * (8 << 20))])
    assert bomb.stat().st_size < 100_000
    assert score_main(["--results", str(bomb), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("compression bomb" in line for line in err)
    assert all(line.startswith(("warning: ", "error: ")) for line in err)


def test_not_an_archive_is_one_line(tmp_path, capsys):
    fake = tmp_path / "fake.tar.gz"
    fake.write_text("hello")
    assert score_main(["--results", str(fake), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("not a readable package" in line for line in err)
    assert all(line.startswith(("warning: ", "error: ")) for line in err)
