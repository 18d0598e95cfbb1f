"""The app in a real browser: `streamlit run` on loopback, pages loaded in headless Chromium, screenshots saved."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium absent (apt-get install -y chromium)")


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


@pytest.fixture
def server(smoke_results):
    """`streamlit run app/Leaderboard.py` on 127.0.0.1 reading the smoke run; killed afterwards."""
    directory, _ = smoke_results
    shutil.copytree(REPO / "results" / "reference", directory / "results" / "reference", dirs_exist_ok=True)
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


def test_home_and_ablations_render_in_chromium(server):
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.goto(server, wait_until="domcontentloaded")
            page.get_by_test_id("stDataFrame").first.wait_for(state="visible", timeout=60_000)
            page.get_by_text("not comparable to the papers", exact=False).first.wait_for(timeout=30_000)
            body = page.inner_text("body")
            assert "sslbench leaderboard" in body and "gap column is empty on purpose" in body
            assert "Download this table (CSV)" in body and "smoke" in body
            page.wait_for_timeout(1000)  # let the data grid paint its canvas
            page.screenshot(path=str(SHOTS / "home.png"), full_page=True)

            page.set_viewport_size({"width": 1600, "height": 2000})
            page.goto(f"{server}/Ablations", wait_until="domcontentloaded")
            page.get_by_test_id("stVegaLiteChart").first.wait_for(state="visible", timeout=60_000)
            page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg").first \
                .wait_for(state="visible", timeout=30_000)
            body = page.inner_text("body")
            assert "sslbench ablation sweeps not yet available" in body
            assert "Accuracy vs temperature" in body
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SHOTS / "ablations.png"), full_page=True)
        finally:
            browser.close()
