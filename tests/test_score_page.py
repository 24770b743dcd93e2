"""The comparison page in a real headless browser (Debian's chromium): it opens from disk with
no console message, its table holds the systems and their scores, a screenshot is not blank."""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from score.__main__ import main as score_main
from score.package import main as package_main
from tests.helpers.compare import write_system
from tests.helpers.score import write_run

BROWSER_TIMEOUT_S = 120


def _chromium(*args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium not installed (apt-get install chromium; .ci/run does it)"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", *args],
            capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """Two named systems (one as a package), an old folder without a system name."""
    tmp = tmp_path_factory.mktemp("page")
    write_system(tmp / "a", "node-a", 300.0, description={"storage": "NVMe <fast> & local"})
    write_system(tmp / "b", "node-b", 250.0, gpus=8, machine="8 x NVIDIA A100")
    write_run(tmp / "old", "X3D_M", "old-1", protocol=1, val_top1=[10.0, 25.0],
              elapsed_s=[50.0, 90.0])
    archive = tmp / "node-a.tar.gz"
    assert package_main(["--results", str(tmp / "a"), "--system", "node-a",
                         "--out", str(archive)]) == 0
    assert score_main(["--results", str(archive), str(tmp / "b"), str(tmp / "old"),
                       "--out", str(tmp / "out")]) == 0
    return tmp / "out" / "comparison.html"


def test_page_is_one_file_without_network_or_script(page):
    text = page.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 2 * 3  # 2 plots x system
    assert "NVMe &lt;fast&gt; &amp; local" in text


def test_page_opens_without_console_messages_and_shows_the_scores(page):
    done = _chromium("--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    table = done.stdout[done.stdout.index('<table id="comparison">'):]
    table = table[:table.index("</table>")]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in table.split("<tr")[2:]]
    by_system = {(row[0], row[1]): row for row in rows}
    assert {system for system, _ in by_system} == {"node-a", "node-b", "bench-host"}
    # node-a: 4 GPUs, median t_bench 305 s of two runs (300, 310); t_ref 7456.88 s on 4 GPUs.
    assert by_system[("node-a", "X3D_M")][2:5] == ["4 GPUs", "2/2", "305.0"]
    assert by_system[("node-a", "X3D_M")][6] == f"{7456.88 / 305.0:.3f}"
    assert by_system[("node-b", "MVIT_B_16x4")][6] == f"{7725.12 / 255.0 * 4 / 8:.3f}"
    assert by_system[("node-b", "X3D_M")][7] == f"{(7456.88 / 255 + 7725.12 / 255) / 4:.3f}"
    assert by_system[("bench-host", "X3D_M")][-1] == "non-compliant"  # protocol 1


def test_page_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "page.png"
    done = _chromium("--window-size=1200,900", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 0.05  # text, tables and plots, not one colour
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
