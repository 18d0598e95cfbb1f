"""The app in a real browser: `streamlit run` on loopback, every page loaded in headless Chromium at 1400 and
1024 px; no chart or table may overflow its container (element bounding boxes); screenshots saved."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {"": "sslbench leaderboard", "ImageNet_board": "ImageNet board", "Ablations": "Ablations", "Runs": "Runs",
         "Claims": "Claims", "Methods": "Methods", "Cost_vs_accuracy": "Cost vs accuracy",
         "Budget_curves": "Budget curves"}
WIDTHS = (1400, 1024)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium absent (apt-get install -y chromium)")

# Every chart, table, JSON and code block on the page, with its width and the widths of what it draws
# (canvas / svg) and of its scrolled content, against the main column's right edge.
OVERFLOWS = """() => {
  const main = document.querySelector("[data-testid='stMainBlockContainer']").getBoundingClientRect();
  const kinds = ["stVegaLiteChart", "stDataFrame", "stTable", "stJson", "stCode", "stPlotlyChart", "stImage"];
  const found = [];
  for (const kind of kinds) {
    for (const el of document.querySelectorAll(`[data-testid='${kind}']`)) {
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.height === 0) continue;  // in a closed expander
      const name = `${kind} #${found.length} ${(el.innerText || '').slice(0, 40).replace(/\\s+/g, ' ')}`;
      if (box.right > main.right + 1 || box.left < main.left - 1) found.push(`${name}: outside the page column`);
      for (const art of el.querySelectorAll("canvas, svg")) {
        const a = art.getBoundingClientRect();
        if (a.width > 0 && (a.right > box.right + 1 || a.right > main.right + 1))
          found.push(`${name}: drawing ${Math.round(a.width)} px wide in ${Math.round(box.width)} px`);
      }
      if (kind === "stVegaLiteChart") {
        const inner = el.querySelector(".vega-embed") || el;
        if (inner.scrollWidth > inner.clientWidth + 1)
          found.push(`${name}: content ${inner.scrollWidth} px scrolls in ${inner.clientWidth} px`);
      }
    }
  }
  const page = document.querySelector("[data-testid='stMain']");
  if (page && page.scrollWidth > page.clientWidth + 1) found.push(`page scrolls sideways (${page.scrollWidth} px)`);
  return found;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise TimeoutError(f"streamlit did not open port {port} in {timeout} s")


@pytest.fixture(scope="module")
def server(smoke_results):
    """`streamlit run app/Leaderboard.py` on 127.0.0.1 reading the smoke run plus the committed results
    (the tiny boards, the ablation sweeps, the claims); killed afterwards."""
    directory, _ = smoke_results
    for name in ("reference", "ablations", "tiny", "tiny_vit"):
        if (REPO / "results" / name).is_dir():
            shutil.copytree(REPO / "results" / name, directory / "results" / name, dirs_exist_ok=True)
    if (REPO / "results" / "claims.csv").is_file():
        shutil.copy(REPO / "results" / "claims.csv", directory / "results" / "claims.csv")
    port = free_port()
    env = {**os.environ, "SSLBENCH_ROOT": str(directory), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/Leaderboard.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def settle(page) -> None:
    """Wait until the script has finished and every chart has drawn."""
    page.get_by_test_id("stMainBlockContainer").wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=60_000)
    page.wait_for_function("""() => [...document.querySelectorAll("[data-testid='stVegaLiteChart']")]
        .every(c => c.querySelector('canvas, svg'))""", timeout=30_000)
    page.wait_for_timeout(700)


@pytest.mark.parametrize("width", WIDTHS)
def test_no_chart_or_table_overflows_on_any_page(server, width):
    SHOTS.mkdir(exist_ok=True)
    problems = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            for path, title in PAGES.items():
                page.goto(f"{server}/{path}", wait_until="domcontentloaded")
                settle(page)
                body = page.inner_text("body")
                assert title in body and "Traceback" not in body, (path, body[:500])
                problems[path or "Leaderboard"] = page.evaluate(OVERFLOWS)
                if width == WIDTHS[0]:
                    height = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\").scrollHeight")
                    page.set_viewport_size({"width": width, "height": min(height + 40, 10_000)})
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(SHOTS / f"{path or 'Leaderboard'}-{width}.png"))
                    page.set_viewport_size({"width": width, "height": 1000})
        finally:
            browser.close()
    assert not {k: v for k, v in problems.items() if v}, problems


def test_leaderboard_shows_all_rows_and_protocols_at_1400_px(server):
    """Every row of the tiny board and its last protocol column are inside the grid's visible area."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(server, wait_until="domcontentloaded")
            settle(page)
            grid = page.get_by_test_id("stDataFrame").first
            box = grid.bounding_box()
            scroller = grid.locator(".dvn-scroller").first
            sizes = scroller.evaluate("e => [e.scrollWidth, e.clientWidth, e.scrollHeight, e.clientHeight]")
            assert sizes[0] <= sizes[1] + 1, f"grid scrolls sideways at 1400 px: {sizes}"
            assert sizes[2] <= sizes[3] + 1, f"grid scrolls vertically: {sizes}"
            assert box["height"] > 20 * 35  # the 20 rows of the tiny board
        finally:
            browser.close()
