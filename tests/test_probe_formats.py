"""``make probe`` knows both store formats: given a JPEG store or the decoded store made from
it, it measures the supply of both, sets the decoded store's size against the memory, and
says which keeps training fed."""

from __future__ import annotations

import json
import re

import pytest

from datasets.decoded_store import build_decoded_store
from probe.__main__ import main
from probe.stores import companion, decoded_bytes, frame_bytes
from tests.helpers.datasets import mark_built
from tests.helpers.train import REPO, build_tiny_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-formats")
    jpeg = mark_built(build_tiny_store(root / "tiny_jpg"))
    build_decoded_store(jpeg, root / "tiny_raw", jobs=1, quiet=True)
    return root, jpeg, root / "tiny_raw"


def test_each_store_finds_the_other(stores):
    root, jpeg, raw = stores
    assert companion(jpeg) == raw and companion(raw) == jpeg.resolve()
    alone = mark_built(build_tiny_store(root / "alone_jpg"))
    assert companion(alone) is None
    assert frame_bytes(raw) == decoded_bytes(jpeg) == sum(
        p.stat().st_size for p in raw.rglob("*.rgb"))


@pytest.mark.parametrize("given", ["jpeg", "raw"])
def test_the_probe_measures_both_formats(stores, capsys, given):
    root, jpeg, raw = stores
    store = jpeg if given == "jpeg" else raw
    results = root / f"results-{given}"
    code = main(["--quick", "--gpus", "1", "--workers", "1", "--store", str(store),
                 "--results", str(results), "--device", "cpu",
                 "--configs", str(REPO / "configs" / "X3D_M.yaml")])
    out = capsys.readouterr().out
    assert code == 0, out
    (line,) = [x for x in out.splitlines() if x.strip().startswith("X3D_M: JPEG store:")]
    assert re.search(r"JPEG store: \w+-bound at 1 processes x 1 workers \(\d+ clips/s", line)
    assert re.search(r"; decoded store: \w+-bound at 1 processes x 1 workers \(\d+ clips/s"
                     r"(; [^)]*)?\), needs [\d.]+ MB, [\d.]+ GB of memory here", line), line
    assert re.search(r"; (either store|neither store|the JPEG store|the decoded store) "
                     r"keeps? the CPU fed", line) or "keeps the CPU fed" in line, line
    record = json.loads((results / "probe.json").read_text())
    (model,) = record["models"]
    assert [e["format"] for e in model["formats"]] == ["jpg", "raw"]
    assert all(e["supply"] > 0 for e in model["formats"])
    assert model["formats"][1]["bytes"] == frame_bytes(raw)
    assert record["memory_bytes"] > 0
