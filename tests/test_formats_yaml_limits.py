"""YAML with bounded size, alias expansion, nesting and numbers (formats/yaml_limits.py), and
every reader that uses it: presets, --set values, reference files."""

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml

import opts
from formats.yaml_limits import MAX_BYTES, YamlRefused, load_yaml_file, load_yaml_text
from score import ScoreError
from score.reference import read_reference_file

REPO = Path(__file__).resolve().parent.parent
HUGE = "9" * 400


def alias_bomb(levels: int = 9, prefix: str = "") -> str:
    """The "billion laughs": each level a list of 9 aliases of the one before (9^9 strings)."""
    lines = [prefix + 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"{prefix}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def peak_bytes(call) -> int:
    """Peak Python memory while ``call()`` runs (it is expected to raise)."""
    tracemalloc.start()
    try:
        with pytest.raises(Exception) as error:
            call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert "\n" not in str(error.value)
    return peak


def preset(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text("name: X\nmodel: x3d_m\ntarget_top1: 20\nval_crop: 256\n" + extra)
    return path


def test_shipped_configs_load_as_plain_safe_load_reads_them():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert load_yaml_file(path) == yaml.safe_load(path.read_text()), path


def test_plain_yaml_features_still_work():
    text = "a: &a {k: 1, l: [1, 2]}\nb: {<<: *a, j: 0x10}\nc: *a\nd: 1_000\ne: .inf\nf: 1:30\n"
    assert load_yaml_text(text) == {"a": {"k": 1, "l": [1, 2]}, "b": {"k": 1, "l": [1, 2],
                                    "j": 16}, "c": {"k": 1, "l": [1, 2]}, "d": 1000,
                                    "e": float("inf"), "f": 90}
    assert load_yaml_text(f"x: {2**63 - 1}\ny: {-(2**63)}\n") == {"x": 2**63 - 1, "y": -(2**63)}
    with pytest.raises(yaml.YAMLError):  # not YAML: PyYAML's own error, as before
        load_yaml_text("x: [1\n")


def test_an_alias_bomb_is_refused_while_it_is_composed():
    # Plain safe_load returns it in milliseconds, as shared lists; walking it would not end.
    with pytest.raises(YamlRefused, match=r"^over 20000 values with aliases expanded "
                       r"\(line 5\); an alias bomb\?$"):
        load_yaml_text(alias_bomb())
    assert peak_bytes(lambda: load_yaml_text(alias_bomb())) < 5_000_000
    # Aliases used within the limit are fine, and counted at their expanded size.
    walked = json.dumps(load_yaml_text(alias_bomb(levels=3)))
    assert walked.count("lol") == 9 + 9**2 + 9**3 + 9**4
    with pytest.raises(YamlRefused, match="over 100 values"):
        load_yaml_text(alias_bomb(levels=2), max_nodes=100)


def test_recursive_and_deep_structures_are_refused():
    with pytest.raises(YamlRefused, match=r"alias \*a \(line 1\) is inside the node it names"):
        load_yaml_text("a: &a [1, *a]\n")
    with pytest.raises(YamlRefused, match="nested more than 64 levels deep"):
        load_yaml_text("[" * 100_000)  # plain safe_load: RecursionError
    # Each alias is shallow, but it names a deep node: refused once expanded too deep.
    deep = "[" * 40 + "1" + "]" * 40
    with pytest.raises(YamlRefused, match=r"nested more than 64 levels deep.*\(line 2\)"):
        load_yaml_text(f"a: &a {deep}\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n")


@pytest.mark.parametrize("text, message", [
    (f"gpus: {HUGE}\n", "line 1: an integer of 400 characters is beyond 64 bits"),
    (f"gpus: -{HUGE}\n", "line 1: an integer of 401 characters is beyond 64 bits"),
    (f"seed: {2**63}\n", "line 1: the integer 9223372036854775808 is beyond 64 bits"),
    ("x: 0x" + "f" * 17 + "\n", "line 1: the integer 0xfffffffffffffffff is beyond 64 bits"),
    ("x: " + "1:" * 60 + "1\n", "line 1: an integer of 121 characters"),  # base 60, YAML 1.1
    ("x: 1.0e+400\n", "line 1: the number 1.0e+400 is beyond the float range"),
    ("x: 0." + "1" * 200 + "\n", "line 1: a number of 202 characters is too long"),
])
def test_numbers_out_of_range_are_refused(text, message):
    with pytest.raises(YamlRefused, match="^" + message.replace("+", r"\+")):
        load_yaml_text(text)


def test_size_is_checked_before_anything_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("w") as f:  # 50 MB of valid YAML: plain safe_load took 54 s over it
        for i in range(50):
            f.write(f"k{i}: [" + "1, " * 349_525 + "1]\n")
    assert big.stat().st_size > 50 * 10**6
    with pytest.raises(YamlRefused, match=rf"^{big.stat().st_size} bytes, more than the "
                       rf"{MAX_BYTES} a YAML file may have; not read$"):
        load_yaml_file(big)
    assert peak_bytes(lambda: load_yaml_file(big)) < 1_000_000  # the 50 MB were never read
    # The same through the readers: one line naming the file.
    with pytest.raises(opts.ConfigError, match=rf"^{big}: refused \(\d+ bytes, more"):
        opts.read_preset(big)
    with pytest.raises(ScoreError, match=rf"^{big}: larger than 4 MB"):
        read_reference_file(big, [])
    with pytest.raises(YamlRefused, match=r"^over 20000 values \(line 2\); no input of this "
                       r"project holds that many$"):
        load_yaml_text("a: 1\nx: [" + "1, " * 30_000 + "1]\n")  # within the size limit
    text = "x: [" + "1, " * (MAX_BYTES // 3) + "1]\n"
    with pytest.raises(YamlRefused, match=r"bytes, more than the 262144 a YAML input may"):
        load_yaml_text(text)


def test_special_and_non_utf8_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer for ever
    with pytest.raises(YamlRefused, match="^not a regular file; not opened$"):
        load_yaml_file(fifo)
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    with pytest.raises(YamlRefused, match="^not a regular file; not opened$"):
        load_yaml_file(link)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(YamlRefused, match=r"^not UTF-8 text \(byte 0xe9 at offset 9\)$"):
        load_yaml_file(latin)
    with pytest.raises(YamlRefused, match="^cannot read"):
        load_yaml_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize("extra, message", [
    (alias_bomb(), r"refused \(over 20000 values with aliases expanded"),
    ("mean: " + "[" * 5000 + "]" * 5000 + "\n", r"refused \(nested more than 64"),
    (f"gpus: {HUGE}\n", r"refused \(line 5: an integer of 400 characters is beyond"),
    ("lr: 1.0e+400\n", r"refused \(line 5: the number 1.0e\+400 is beyond"),
])
def test_presets_refuse_in_one_line_naming_the_file(tmp_path, extra, message):
    path = preset(tmp_path, extra)
    with pytest.raises(opts.ConfigError, match=f"^{path}: {message}") as error:
        opts.read_preset(path)
    assert "\n" not in str(error.value)


def flow_bomb(levels: int = 9) -> str:
    """The alias bomb on one line, as a --set value: [&a0 [lol, ...], &a1 [*a0, ...], ...]."""
    items = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("value, reason", [
    (flow_bomb(), "over 20000 values with aliases expanded"),
    ("&a [1, *a]", "is inside the node it names"),
    (HUGE, "an integer of 400 characters is beyond 64 bits"),
    (str(2**63), "the integer 9223372036854775808 is beyond 64 bits"),
    ("1.0e+400", "beyond the float range"),
    ("[" * 5000, "nested more than 64 levels deep"),
])
def test_set_values_refuse_in_one_line(value, reason):
    with pytest.raises(YamlRefused, match=reason):  # what --set's one line stands for
        load_yaml_text(value)
    with pytest.raises(opts.ConfigError, match=r"^--set gpus: value is not valid YAML or too "
                       r"large a number$"):
        opts.parse_set([f"gpus={value}"])


@pytest.mark.parametrize("text, message", [
    (alias_bomb(prefix="") + "gpus: 4\nt_ref_s: {X3D_M: 1}\n", "over 20000 values"),
    (f"gpus: {HUGE}\nt_ref_s: {{X3D_M: 1}}\n", "an integer of 400 characters is beyond"),
    (f"gpus: 4\nt_ref_s: {{X3D_M: {HUGE}}}\n", "an integer of 400 characters is beyond"),
    ("gpus: 4\nt_ref_s: {X3D_M: 1.0e+400}\n", r"the number 1.0e\+400 is beyond the float"),
    ("gpus: 4\nt_ref_s: &t {X3D_M: *t}\n", "is inside the node it names"),
])
def test_reference_files_refuse_in_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "ref.yaml"
    path.write_text(text)
    with pytest.raises(ScoreError, match=f"^{path}: reference file refused .*{message}") as e:
        read_reference_file(path, [])
    assert "\n" not in str(e.value)


def test_trainer_cli_refuses_a_bomb_preset_and_a_huge_set_value(tmp_path):
    path = preset(tmp_path, alias_bomb())
    for args in (["--config", str(path)],
                 ["--config", "configs/X3D_M.yaml", "--set", f"gpus={HUGE}"]):
        done = subprocess.run([sys.executable, "-m", "train", *args, "--out",
                               str(tmp_path / "out")], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_the_scorer_over_runs_whose_config_yaml_is_hostile(tmp_path):
    """A results tree is anyone's to write into: config.yaml files holding an alias bomb, a
    400-digit GPU count and 50 MB leave the scorer bounded (its own process, 120 s) and
    every run's line on the screen one line; whatever reads them must use the bounded reader."""
    from tests.helpers.score import reaching_at, write_run

    results = tmp_path / "results"
    hostile = {"bomb": alias_bomb(), "huge": f"gpus: {HUGE}\n",
               "big": "k: [" + "1, " * 17_500_000 + "1]\n"}
    for i, text in enumerate(hostile.values()):
        run = write_run(results, run_id=f"20261124T151500Z-000{i}", **reaching_at(1000.0 + i))
        (run / "config.yaml").write_text(text)
    done = subprocess.run([sys.executable, "-m", "score", "--results", str(results), "--out",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert all(line.startswith("warning: ") for line in done.stderr.splitlines())
    assert (tmp_path / "out" / "score.csv").read_text().count("\n") >= 1 + len(hostile)
