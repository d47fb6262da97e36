"""report.html and the Markdown report, from recorded host results (300 hosts).

The host results are what `python -m verify --json` prints on a Pi, varied per host (Edge
TPU and CPU, in band and slow, failures with secrets in their messages).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from provision.driver.runner import EventTracker
from provision.fleet.report import FleetReport, render_markdown
from provision.fleet.report_html import render_html

CORALPI = str(Path(sys.executable).parent / "coralpi")
CANARY = "ReportCanary-5d1e"


def verify_json(rng: random.Random, device: str) -> dict[str, Any]:
    median = rng.uniform(3.5, 9.0) if device == "edgetpu" else rng.uniform(80, 160)
    return {
        "checks": [
            {"name": "drift", "status": rng.choice(["pass", "pass", "warn"]), "detail": "x"},
            {"name": "usb_accelerator", "status": "pass", "detail": "link 5000 Mb/s"},
        ],
        "smoke": {
            "device": device,
            "top": [{"label": "Ara macao (Scarlet Macaw)", "score": 0.77734}],
            "latency_ms": {"first": median * 4, "median": median, "p95": median * 1.1},
            "expected_ms": 4.5 if device == "edgetpu" else None,
        },
    }


def fleet_report(tmp_path: Path, hosts: int = 300) -> FleetReport:
    rng = random.Random(7)
    report = FleetReport(command="apply", run_dir=tmp_path)
    for i in range(hosts):
        row = report.host(f"pi-{i:03d}")
        row.board, row.os, row.arch = "Raspberry Pi 4 Model B Rev 1.4", "debian bookworm", "aarch64"
        row.runtime, row.python_runtime = "libedgetpu1-std 16.0", "tflite-runtime 2.14.0"
        row.changed = rng.randint(0, 30)
        if i % 50 == 7:
            row.status, row.failed_task = "failed", "coralpi_apt : Update the apt cache"
            row.message = f"E: Failed to fetch via http://pi:{CANARY}@10.0.0.1:3142/debian"
            continue
        if i % 61 == 3:
            row.status, row.message = "unreachable", "ssh: connect timed out"
            continue
        row.absorb_verify(verify_json(rng, "edgetpu" if i % 5 else "cpu"))
    return report


class Page(HTMLParser):
    """The table's rows and the chart's bars, as the page holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.bars: dict[str, dict[str, str]] = {}
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-host" in a:
            self.rows.append(a["data-host"])
        if tag == "g" and "data-host" in a:
            self.bars[a["data-host"]] = a
        self.links += [v for k, v in a.items() if k in ("src", "href", "action", "data")]


def test_a_300_host_page_holds_every_host_the_jsons_numbers_and_no_secret(
    tmp_path: Path,
) -> None:
    report = fleet_report(tmp_path)
    data = json.loads(report.to_json())
    page_text = render_html(data)
    page = Page()
    page.feed(page_text)
    assert page.rows == sorted(report.hosts)
    timed = {h["host"]: h for h in data["hosts"] if h["latency_ms"] is not None}
    assert set(page.bars) == set(timed) and len(timed) > 250
    for host, bar in page.bars.items():
        assert float(bar["data-median"]) == timed[host]["latency_ms"]
        assert float(bar["data-p95"]) == timed[host]["latency_p95_ms"]
        expected = timed[host]["expected_ms"]
        assert bar["data-expected"] == ("" if expected is None else str(expected))
        verdict = "no reference" if expected is None else bar["data-verdict"]
        assert bar["data-verdict"] == verdict
    # CPU hosts have no reference; Edge TPU hosts near 4.5 ms are in band, the slowest not.
    assert {b["data-verdict"] for b in page.bars.values()} == {"no reference", "in band", "slow"}
    # Self-contained: no link, no stylesheet or script from anywhere, and a CSP to be sure.
    assert page.links == []
    assert not re.search(r"url\(|@import|<link|<img", page_text)
    assert "default-src 'none'" in page_text
    assert CANARY not in page_text and "pi:***@10.0.0.1" in page_text
    assert "failed: " + ", ".join(data["failed_hosts"]) in page_text
    assert {"pi-003", "pi-007", "pi-057"} <= set(data["failed_hosts"])


def test_the_markdown_report_has_a_row_per_host_and_no_secret(tmp_path: Path) -> None:
    text = render_markdown(fleet_report(tmp_path, hosts=60))
    assert text.splitlines()[0].startswith("### coralpi apply: failed: ")
    assert len([ln for ln in text.splitlines() if ln.startswith("| pi-")]) == 60
    assert CANARY not in text and "pi:***@" in text


def test_check_mode_lists_what_would_change_with_its_diff(tmp_path: Path) -> None:
    tracker = EventTracker()
    tracker.handle(
        {
            "event": "runner_on_ok",
            "event_data": {
                "host": "pi1",
                "task": "Write the apt proxy setting",
                "role": "coralpi_apt",
                "res": {
                    "changed": True,
                    "diff": {"before": "", "after": 'Acquire::http::Proxy "http://p:3142";\n'},
                },
            },
        }
    )
    report = FleetReport(command="apply", run_dir=tmp_path, check_mode=True)
    row = report.host("pi1")
    row.changes, row.diffs = tracker.hosts["pi1"].changes, tracker.hosts["pi1"].diffs
    assert row.changes == ["coralpi_apt : Write the apt proxy setting"]
    page = render_html(json.loads(report.to_json()))
    assert "Check mode: nothing was changed" in page and "What would change" in page
    assert "+Acquire::http::Proxy &#34;http://p:3142&#34;;" in page


def test_coralpi_report_renders_a_kept_run_again(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    older, newer = runs / "20260101-000000-000000-apply", runs / "20260102-000000-000000-verify"
    for run_dir, hosts in ((older, 3), (newer, 4)):
        run_dir.mkdir(parents=True)
        report = fleet_report(run_dir, hosts=hosts)
        report.save()
        assert (run_dir / "report.html").is_file()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CORALPI, "report", *args, "--runs-dir", str(runs)],
            capture_output=True,
            text=True,
            check=False,
        )

    md = cli("--md")
    assert md.returncode == 0 and md.stdout.count("| pi-") == 4  # the newest run
    as_json = cli(str(older), "--json")
    assert json.loads(as_json.stdout)["hosts"][0]["host"] == "pi-000"
    out = tmp_path / "page.html"
    page = cli(str(older), "--html", str(out))
    assert page.returncode == 0 and out.read_text() == (older / "report.html").read_text()
    missing = cli(str(tmp_path / "nope"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.parametrize("hosts", [0, 1])
def test_tiny_reports_render(tmp_path: Path, hosts: int) -> None:
    page = render_html(json.loads(fleet_report(tmp_path, hosts=hosts).to_json()))
    assert '<table id="hosts">' in page
