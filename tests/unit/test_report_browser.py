"""report.html in a real browser: headless Chromium (Debian's package) sorts, draws, loads
nothing and logs no error. The page is the 300-host one of test_report_html."""

from __future__ import annotations

import functools
import http.server
import json
import math
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from test_report_html import fleet_report

from provision.fleet.report_html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make install)"),
]


def chromium(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """One headless page load; stderr carries the page's console messages."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # as root
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,900",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line
        and any(w in line for w in ("Uncaught", "Error", "Refused", "Content Security Policy"))
    ]


@pytest.fixture()
def page(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    data = json.loads(fleet_report(tmp_path).to_json())
    path = tmp_path / "report.html"
    path.write_text(render_html(data))
    return path, data


def test_sorting_by_a_column_in_the_browser(page: tuple[Path, dict[str, Any]]) -> None:
    path, data = page
    ascending = sorted(
        data["hosts"],
        key=lambda h: (math.inf if h["latency_ms"] is None else h["latency_ms"], h["host"]),
    )
    for spec, expected in (("median", ascending), ("-median", ascending[::-1])):
        proc = chromium("--dump-dom", url=f"{path.as_uri()}#sort={spec}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        order = [line.split('"')[1] for line in proc.stdout.split("<tr data-host=")[1:]]
        assert order == [h["host"] for h in expected], spec
        assert f'data-sorted="{spec}"' in proc.stdout
        assert console_errors(proc.stderr) == []


def test_the_page_draws_and_can_load_nothing(
    tmp_path: Path, page: tuple[Path, dict[str, Any]]
) -> None:
    path, _ = page
    shot = tmp_path / "report.png"
    proc = chromium(f"--screenshot={shot}", url=path.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert int.from_bytes(png[16:20], "big") == 1280
    assert console_errors(proc.stderr) == []

    # Negative control: the same page with an image from a loopback server. The page's
    # Content-Security-Policy refuses it: the server sees no request, the console says so.
    seen: list[str] = []

    class Counting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=functools.partial(server.serve_forever, 0.05), daemon=True)
    thread.start()
    try:
        probe = tmp_path / "probe.html"
        url = f"http://127.0.0.1:{server.server_address[1]}/tracker.png"
        probe.write_text(path.read_text().replace("</body>", f'<img src="{url}"></body>'))
        proc = chromium("--dump-dom", url=probe.as_uri())
    finally:
        server.shutdown()
        server.server_close()
    assert seen == []
    blocked = [line for line in console_errors(proc.stderr) if "Content Security Policy" in line]
    assert blocked and "has been blocked" in blocked[0], proc.stderr[-2000:]
