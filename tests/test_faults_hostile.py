"""Hostile files. A checkpoint or a weights file carrying a pickled object that runs code when
unpickled is refused with one line, and the code never runs. Hand-edited result folders
(garbage, missing columns, duplicate epochs, binary junk, huge numbers, empty files, random
mutations) never crash ``python -m score``: exit 0 or 2, one line per message."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest
import torch

from models.convert import ConvertError, load_state_dict
from models.convert import main as convert_main
from score import ScoreError
from score.__main__ import main as score_main
from score.load import load_run
from tests.helpers.faults import FAULT_ROUNDS, FAULT_SEED, fault_rng
from tests.helpers.score import EPOCH_HEADER, reaching_at, write_run
from tests.helpers.train import TINY
from train import TrainError
from train.__main__ import main as train_main
from train.rundir import checkpoint


class Payload:
    """Unpickling this touches ``marker``: the stand-in for any code a file could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def hostile(tmp_path) -> tuple[Path, Path]:
    """(a checkpoint-shaped file with a code-running object inside, its marker path)."""
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoint.FORMAT, "epoch": 0, "world_size": 1,
                "model": {"w": torch.zeros(2)}, "extra": Payload(marker)}, path)
    # The payload is live: a loader that unpickles anything runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_checkpoint_with_a_pickled_object_is_refused_and_runs_nothing(hostile, tiny_store,
                                                                      capsys):
    path, marker = hostile
    run_dir = path.parent
    with pytest.raises(TrainError, match=r"checkpoint\.pt: unreadable checkpoint "
                                         r"\(UnpicklingError\); start a new run"):
        checkpoint.load(run_dir)
    assert not marker.exists()
    # Through the command line, as `make resume` does.
    (run_dir / "run.json").write_text(json.dumps({"finished": False, "changed_keys": []}))
    (run_dir / "config.yaml").write_text(TINY.read_text())
    assert train_main(["--resume", str(run_dir), "--data", str(tiny_store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "UnpicklingError" in err
    assert not marker.exists()


def test_weights_file_with_a_pickled_object_is_refused_and_runs_nothing(hostile, tmp_path,
                                                                        capsys):
    path, marker = hostile
    with pytest.raises(ConvertError, match="not a readable PyTorch checkpoint"):
        load_state_dict(str(path))
    assert convert_main(["import", "--model", "x3d_m", "--src", str(path), "--out",
                         str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


# ---- hand-edited result folders ------------------------------------------------------------

GOOD = reaching_at(1000.0)


def _csv(*rows: str, header: str = EPOCH_HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


ROW = "0,500,1,1,0.01,2,20,25.0,40,25,50,0.5,1"
HUGE = "9" * 400
EPOCHS_CSV: dict[str, str | bytes] = {
    "empty file": "",
    "header only": _csv(),
    "binary junk": random.Random(0).randbytes(4096),
    "NUL bytes": _csv(ROW, "1,\x00\x00,1,1,0.01,2,20,\x0030,40,25,50,0.5,1"),
    "garbage cells": _csv("zero,five,hundred,x,y,z,?,!,@,#,$,%,^"),
    "missing columns": "epoch,lr,train_loss\n0,0.01,2.0\n",
    "only val_top1": "val_top1\n25\n",
    "duplicate epochs": _csv(ROW, "0,400,1,1,0.01,2,20,30.0,40,25,50,0.5,1", ROW,
                             "1,600,1,1,0.01,2,20,30.0,40,25,50,0.5,1"),
    "huge numbers": _csv("0,1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308,"
                         "1e308,1e308", f"1,{HUGE},1,1,0.01,2,20,{HUGE},40,25,{HUGE},0.5,1",
                         "2,1e400,1,1,0.01,2,20,-1e400,40,25,50,0.5,1",
                         f"3,-{HUGE},1,1,0.01,2,20,25,40,25,50,0.5,1"),
    "tiny numbers": _csv("0,1e-320,1,1,0.01,2,20,5e-324,40,25,50,0.5,1"),
    "duplicate column names": "epoch,epoch,elapsed_s,elapsed_s,val_top1,val_top1\n"
                              "0,1,100,200,25,30\n",
    "unterminated quote": _csv('0,"500,1,1,0.01,2,20,25.0,40,25,50,0.5,1'),
    "latin-1 bytes": _csv(ROW).encode() + b"1,600,\xe9\xe8,1,0.01,2,20,30,40,25,50,0.5,1\n",
    "BOM and CRLF": "\ufeff" + _csv(ROW).replace("\n", "\r\n"),
    "a 2 MB cell": _csv(ROW, "1," + "7" * 2_000_000 + ",1,1,0.01,2,20,25,40,25,50,0.5,1"),
    "20000 rows": _csv(*(f"{i},{i + 1},1,1,0.01,2,20,{i % 100},40,25,50,0.5,1"
                         for i in range(20000))),
    "fewer fields": _csv("0,500,1", "1,600"),
    "blank lines and spaces": "\n\n" + _csv(" 0 , 500 ,1,1,0.01,2,20, 25 ,40,25,50,0.5,1", ""),
}
RUN_JSON: dict[str, str | bytes] = {
    "empty": "",
    "binary junk": random.Random(1).randbytes(600),
    "a list": "[1, 2, 3]",
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "huge integers": json.dumps({"config": "X3D_M", "target_top1": 20.11, "gpus": 10**400,
                                 "lost_s": 10**400, "t_target_s": 10**400}),
    "huge target": '{"config": "X3D_M", "target_top1": 1e999, "gpus": 4}',
    "NaN values": '{"config": "X3D_M", "target_top1": NaN, "gpus": NaN}',
    "wrong types": json.dumps({"config": ["X3D_M"], "target_top1": "20", "gpus": True}),
    "odd but usable": json.dumps({"config": "X3D_M", "target_top1": 20.11, "gpus": 4,
                                  "machine": {"a": [1, {"b": None}]}, "run_id": [1, 2],
                                  "changed_keys": {"lr": 1}, "compliant": "yes",
                                  "lost_s": -5, "t_target_s": 10**400, "reached": True,
                                  "finished": "true"}),
}
SYSTEM_JSON: dict[str, str | bytes] = {
    "binary junk": random.Random(2).randbytes(300),
    "deep nesting": "{\"a\":" * 50_000 + "1" + "}" * 50_000,
    "a string": '"machine"',
}


def _write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _hostile_runs(results: Path) -> list[Path]:
    folders = []
    for files, name in ((EPOCHS_CSV, "epochs.csv"), (RUN_JSON, "run.json"),
                        (SYSTEM_JSON, "system.json")):
        for i, content in enumerate(files.values()):
            folder = write_run(results, run_id=f"{name}-{i:02d}", **GOOD)
            _write(folder / name, content)
            folders.append(folder)
    folder = write_run(results, run_id="epochs-is-a-folder", **GOOD)
    (folder / "epochs.csv").unlink()
    (folder / "epochs.csv").mkdir()
    folders.append(folder)
    return folders


def _check_messages(err: str) -> None:
    assert "Traceback" not in err
    for line in err.splitlines():
        assert line.startswith(("warning: ", "error: ")), line[:300]


def _load_each(folders: list[Path]) -> int:
    """Load every run on its own: a Run or a ScoreError, each message one line."""
    readable = 0
    for folder in folders:
        warnings: list[str] = []
        try:
            load_run(folder, warnings)
            readable += 1
        except ScoreError as e:
            assert "\n" not in str(e), str(e)
        assert all("\n" not in w for w in warnings), warnings
    return readable


def test_hand_edited_results_never_crash_the_scorer(tmp_path, capsys):
    results = tmp_path / "results"
    folders = _hostile_runs(results)
    readable = _load_each(folders)
    assert 0 < readable < len(folders)  # some are usable, some are not

    write_run(results, run_id="good", **GOOD)
    with warnings.catch_warnings(record=True) as stray:  # would print more than our lines
        warnings.simplefilter("always")
        assert score_main(["--results", str(results), "--out", str(tmp_path / "score")]) == 0
    assert not stray, [str(w.message) for w in stray]
    out, err = capsys.readouterr()
    _check_messages(err)
    assert "X3D_M" in out and (tmp_path / "score" / "score.csv").is_file()

    # Nothing readable at all: exit 2, the last line says why.
    hopeless = tmp_path / "hopeless"
    for kind in ("empty", "binary junk", "deep nesting", "a list"):
        folder = write_run(hopeless, run_id=kind.replace(" ", "-"), **GOOD)
        _write(folder / "run.json", RUN_JSON[kind])
    assert score_main(["--results", str(hopeless), "--out", str(tmp_path / "s2")]) == 2
    err = capsys.readouterr().err
    _check_messages(err)
    assert err.splitlines()[-1].startswith("error: ")


HOSTILE_TOKENS = ["", " ", "nan", "-inf", "1e999", "-1e-999", HUGE, "0x1F", "1,5", '"', "'",
                  "\x00", "\xff", "épоch", "None", "true", "[]", "{}", "\\N", "1_000",
                  "١٢٣", "∞", "-0", "+5", "5.", ".5", "1e5e5"]


def _mutate(text: str, rng: random.Random) -> str | bytes:
    """One random edit of the kind a hand or a bad disk makes."""
    lines = text.splitlines()
    op = rng.randrange(8)
    if op == 0:  # a cell replaced by a hostile token
        i = rng.randrange(len(lines))
        cells = lines[i].split(",")
        cells[rng.randrange(len(cells))] = rng.choice(HOSTILE_TOKENS)
        lines[i] = ",".join(cells)
    elif op == 1:  # a line repeated
        i = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    elif op == 2:  # lines swapped
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:  # a line removed (maybe the header)
        del lines[rng.randrange(len(lines))]
    elif op == 4:  # a column dropped from the header
        cells = lines[0].split(",")
        del cells[rng.randrange(len(cells))]
        lines[0] = ",".join(cells)
    elif op == 5:  # cut short anywhere
        return text[: rng.randrange(len(text) + 1)]
    elif op == 6:  # random bytes written over a span
        data = bytearray(text.encode())
        at = rng.randrange(len(data))
        data[at : at + 16] = rng.randbytes(16)
        return bytes(data)
    else:  # a column's values swapped with another's
        a, b = rng.randrange(13), rng.randrange(13)
        rows = [line.split(",") for line in lines]
        for cells in rows:
            if max(a, b) < len(cells):
                cells[a], cells[b] = cells[b], cells[a]
        lines = [",".join(cells) for cells in rows]
    return "\n".join(lines) + "\n"


def test_randomly_mutated_results_never_crash_the_scorer(tmp_path, capsys):
    """FAULT_ROUNDS x 30 runs, each with 1 to 4 random edits of epochs.csv or run.json."""
    rng = fault_rng("score fuzz")
    results = tmp_path / "results"
    folders = []
    for i in range(30 * FAULT_ROUNDS):
        folder = write_run(results, run_id=f"fuzz-{i:03d}", **GOOD)
        name = rng.choice(["epochs.csv", "epochs.csv", "epochs.csv", "run.json"])
        content: str | bytes = (folder / name).read_text()
        for _ in range(rng.randint(1, 4)):
            text = content if isinstance(content, str) else content.decode("utf-8", "replace")
            content = _mutate(text, rng) if text else text
        _write(folder / name, content)
        folders.append(folder)
    _load_each(folders)
    with warnings.catch_warnings(record=True) as stray:
        warnings.simplefilter("always")
        code = score_main(["--results", str(results), "--out", str(tmp_path / "score")])
    assert not stray, [str(w.message) for w in stray]
    out, err = capsys.readouterr()
    assert code in (0, 2), f"seed {FAULT_SEED}"
    _check_messages(err)
