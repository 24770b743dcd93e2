"""The scorer's input: runs at any depth, each run counted once, and nothing in a results tree
(FIFOs, sockets, devices, huge files, unreadable folders, link loops, strings no encoder
writes) can hang or crash it. Each problem is one `warning:` line naming the path."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

from score.__main__ import main
from score.find import MAX_DEPTH, find_run_dirs
from score.load import load_results
from score.readers import MAX_CSV_BYTES, MAX_JSON_BYTES, safe_text
from tests.helpers.faults import run_obeying_file_modes
from tests.helpers.score import reaching_at, write_run

REPO = Path(__file__).resolve().parent.parent


def _score(results: Path, out: Path, **kwargs) -> subprocess.CompletedProcess:
    """`python -m score` in its own process (a hang would end at the timeout, not stall)."""
    args = [sys.executable, "-m", "score", "--results", str(results), "--out", str(out)]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONIOENCODING="utf-8"), **kwargs)


def _one_line_each(err: str) -> list[str]:
    lines = err.splitlines()
    assert lines and all(line.startswith(("warning: ", "error: ")) for line in lines), err
    return lines


def test_runs_of_make_demo_one_level_deeper_are_found(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results / "demo", "demo_X3D_M", **reaching_at(50.0))
    write_run(results, "X3D_M", **reaching_at(1000.0))
    write_run(results / "a" / "b" / "c", "X3D_M", "nested", **reaching_at(900.0))
    assert [p.relative_to(results) for p in find_run_dirs(results, [])] == [
        Path("X3D_M/20261124T151500Z-0001"), Path("a/b/c/X3D_M/nested"),
        Path("demo/demo_X3D_M/20261124T151500Z-0001")]
    assert main(["--results", str(results)]) == 0
    assert "demo_X3D_M" in capsys.readouterr().out


def test_search_depth_is_bounded_with_a_warning(tmp_path):
    deep = tmp_path.joinpath(*["d"] * (MAX_DEPTH + 1))
    write_run(deep, "X3D_M", **reaching_at(50.0))
    warnings: list[str] = []
    assert find_run_dirs(tmp_path, warnings) == []
    [warning] = warnings
    assert f"deeper than {MAX_DEPTH} levels" in warning


def test_a_copied_run_is_counted_once_and_named(tmp_path):
    first = write_run(tmp_path / "results", **reaching_at(1000.0))
    copy = tmp_path / "results" / "backup" / "X3D_M" / first.name
    shutil.copytree(first, copy)
    warnings: list[str] = []
    assert len(load_results(tmp_path / "results", warnings)) == 1
    [warning] = warnings
    assert str(first) in warning and str(copy) in warning and "counted once" in warning


def test_symbolic_link_loops_are_not_followed(tmp_path):
    results = tmp_path / "results"
    folder = write_run(results, **reaching_at(1000.0))
    (results / "X3D_M" / "loop").symlink_to(results, target_is_directory=True)
    (results / "elsewhere").symlink_to(folder.parent, target_is_directory=True)
    warnings: list[str] = []
    assert [run.path for run in load_results(results, warnings)] == [folder]
    assert len(warnings) == 2
    assert all("symbolic link to a folder; not followed" in w for w in warnings)


def test_fifo_socket_device_and_huge_files_are_skipped_unopened(tmp_path):
    results = tmp_path / "results"
    write_run(results, run_id="good", **reaching_at(1000.0))
    fifo = write_run(results, run_id="fifo", **reaching_at(1000.0)) / "run.json"
    fifo.unlink()
    os.mkfifo(fifo)  # a blocking open would wait for a writer for ever
    sock = write_run(results, run_id="socket", **reaching_at(1000.0))
    (sock / "epochs.csv").unlink()
    listener = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(sock)  # a relative name: socket paths are limited to about 100 bytes
    try:
        listener.bind("epochs.csv")
    finally:
        os.chdir(cwd)
    zero = write_run(results, run_id="zero", **reaching_at(1000.0)) / "epochs.csv"
    zero.unlink()
    zero.symlink_to("/dev/zero")  # endless: reading it all would exhaust memory
    big_json = write_run(results, run_id="big-json", **reaching_at(1000.0)) / "run.json"
    record = json.loads(big_json.read_text()) | {"padding": "x" * MAX_JSON_BYTES}
    big_json.write_text(json.dumps(record))
    big_csv = write_run(results, run_id="big-csv", **reaching_at(1000.0)) / "epochs.csv"
    with open(big_csv, "r+b") as f:
        f.truncate(MAX_CSV_BYTES + 1)  # sparse: no disk used
    try:
        done = _score(results, tmp_path / "out")
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr
    warnings = _one_line_each(done.stderr)
    assert len(warnings) == 5
    expected = {fifo: "a FIFO, not a file; not opened",
                sock / "epochs.csv": "a socket, not a file; not opened",
                zero: "a character device, not a file; not opened",
                big_json: f"larger than {MAX_JSON_BYTES >> 20} MB",
                big_csv: f"larger than {MAX_CSV_BYTES >> 20} MB"}
    for path, message in expected.items():
        assert any(f"{path}: {message}" in w and w.endswith("run skipped") for w in warnings), \
            (path, warnings)
    runs = pd.read_csv(tmp_path / "out" / "score.csv").query("row == 'run'")
    assert list(runs.run_id) == ["good"]


def test_unreadable_folders_and_files_are_skipped_with_a_warning(tmp_path):
    results = tmp_path / "results"
    write_run(results, "X3D_M", "good", **reaching_at(1000.0))
    locked = results / "lost+found"
    locked.mkdir()
    write_run(results, "MVIT_B_16x4", "hidden", **reaching_at(1000.0))
    unreadable = write_run(results, "MVIT_B_16x4", "unreadable", **reaching_at(1000.0))
    locked.chmod(0)
    (unreadable / "epochs.csv").chmod(0)
    try:
        done = run_obeying_file_modes(
            [sys.executable, "-m", "score", "--results", str(results), "--out",
             str(tmp_path / "out")], timeout=120)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr
    warnings = _one_line_each(done.stderr)
    assert any(f"{locked}: cannot read folder (Permission denied); skipped" in w
               for w in warnings), warnings
    assert any(f"{unreadable / 'epochs.csv'}: cannot read (Permission denied)" in w
               for w in warnings), warnings
    runs = pd.read_csv(tmp_path / "out" / "score.csv").query("row == 'run'")
    assert sorted(runs.run_id) == ["good", "hidden"]


def test_strings_no_encoder_writes_are_escaped_everywhere(tmp_path):
    results = tmp_path / "results"
    # A lone surrogate from a JSON escape, a newline and a terminal escape in recorded text.
    odd = write_run(results, run_id="odd", **reaching_at(1000.0))
    text = (odd / "run.json").read_text()
    text = text.replace('"machine": "4 x NVIDIA TITAN RTX"',
                        '"machine": "box \\udce9\\n\\u001b[31mred"')
    text = text.replace('"compliance_issues": []', '"system": "bad \\ud800 key"')
    (odd / "run.json").write_text(text)
    # A folder name that is not UTF-8 (bytes path), holding a run without a run_id.
    raw = os.fsencode(results) + b"/X3D_M/caf\xe9"
    os.makedirs(raw)
    source = write_run(tmp_path / "src", run_id="latin", **reaching_at(900.0))
    record = json.loads((source / "run.json").read_text())
    del record["run_id"]
    (source / "run.json").write_text(json.dumps(record))
    for name in os.listdir(source):
        shutil.copy(source / name, os.fsdecode(raw) + "/" + name)

    done = _score(results, tmp_path / "out")
    assert (done.returncode, done.stderr) == (0, "")  # no library warning about glyphs either
    assert "\x1b" not in done.stdout and "caf\\udce9" in done.stdout
    assert "box \\udce9\\x0a\\x1b[31mred" in done.stdout
    assert "bad \\ud800 key" in done.stdout
    csv = (tmp_path / "out" / "score.csv").read_text(encoding="utf-8")
    markdown = (tmp_path / "out" / "score.md").read_text(encoding="utf-8")
    assert "caf\\udce9" in csv and "bad \\ud800 key" in markdown


def test_safe_text():
    assert safe_text("a\udce9b") == "a\\udce9b"
    assert safe_text("tab\there\r\n") == "tab\\x09here\\x0d\\x0a"
    assert safe_text("été 日本\u00a0x") == "été 日本\u00a0x"
    assert safe_text("x" * 50, 10) == "xxxxxxx..."
