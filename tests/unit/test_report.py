"""The fleet report: folding plans, runs and verify JSON into one row per host."""

from __future__ import annotations

import io
import json
from pathlib import Path

from provision.fleet.report import FleetReport, render
from provision.planning.matrix import resolve
from provision.planning.targets import Choices, Target

PLAN = resolve(
    Target("debian", "bookworm", "aarch64", "3.11", "2.36", "Raspberry Pi 4 Model B Rev 1.4"),
    Choices(),
)

VERIFY_OK = {
    "checks": [
        {
            "name": "accelerator",
            "status": "warn",
            "detail": "no accelerator attached",
            "fix": "plug it in",
        },
        {"name": "runtime", "status": "pass", "detail": "libedgetpu1-std", "fix": ""},
    ],
    "smoke": {
        "device": "cpu",
        "top": [{"label": "Ara macao (Scarlet Macaw)", "score": 0.8125}],
        "latency_ms": {"first": 40.0, "median": 21.5, "p95": 25.0},
    },
}


def test_report_rows_json_and_text(tmp_path: Path) -> None:
    report = FleetReport(command="apply", run_dir=tmp_path)
    good = report.host("pi1")
    good.absorb_plan(PLAN)
    good.absorb_verify(VERIFY_OK)
    bad = report.host("pi2")
    bad.absorb_plan(PLAN)
    bad.absorb_verify(
        {"checks": [{"name": "opencv", "status": "fail", "detail": "undefined symbol", "fix": "x"}]}
    )
    gone = report.host("pi3")
    gone.status, gone.failed_task, gone.message = "unreachable", "probe", "ssh timed out"

    assert report.failed == ["pi2", "pi3"]
    data = json.loads(report.save().read_text())
    rows = {row["host"]: row for row in data["hosts"]}
    assert data["ok"] is False and data["failed_hosts"] == ["pi2", "pi3"]
    assert rows["pi1"]["smoke"] == "Ara macao (Scarlet Macaw) 0.81"
    assert rows["pi1"]["latency_ms"] == 21.5 and rows["pi1"]["smoke_device"] == "cpu"
    assert rows["pi1"]["warnings"] == ["accelerator: no accelerator attached"]
    assert rows["pi2"]["status"] == "failed" and rows["pi2"]["failed_task"] == "verify"
    assert rows["pi2"]["message"] == "opencv: undefined symbol"
    assert rows["pi1"]["runtime"] == f"libedgetpu1-std {PLAN.runtime.version}"
    assert rows["pi1"]["python_runtime"] == f"tflite-runtime {PLAN.python_runtime.version}"

    out = io.StringIO()
    render(report, as_json=False, stream=out)
    text = out.getvalue()
    assert "pi3: probe: ssh timed out" in text
    assert "Ara macao" in text and str(tmp_path) in text

    out = io.StringIO()
    render(report, as_json=True, stream=out)
    assert json.loads(out.getvalue())["failed_hosts"] == ["pi2", "pi3"]


def test_interrupted_run_marks_unfinished_hosts_and_is_not_ok(tmp_path: Path) -> None:
    report = FleetReport(command="apply", run_dir=tmp_path)
    done_badly = report.host("pi1")
    done_badly.status, done_badly.failed_task, done_badly.message = "failed", "t", "boom"
    report.host("pi2").absorb_plan(PLAN)
    report.mark_interrupted("SIGINT", ["pi1", "pi2", "pi3"])

    data = json.loads(report.save().read_text())
    rows = {row["host"]: row for row in data["hosts"]}
    assert data["ok"] is False and data["interrupted"] == "SIGINT"
    assert rows["pi1"]["status"] == "failed" and rows["pi1"]["message"] == "boom"
    assert rows["pi2"]["status"] == "interrupted" and rows["pi3"]["status"] == "interrupted"
    assert data["failed_hosts"] == ["pi1", "pi2", "pi3"]  # --retry-failed takes them all


def test_report_never_shows_a_password_from_a_url(tmp_path: Path) -> None:
    report = FleetReport(command="apply", run_dir=tmp_path)
    row = report.host("pi1")
    row.status, row.failed_task = "failed", "coralpi_apt : Update the apt cache"
    row.message = "E: Failed to fetch via proxy http://ops:Canary-7x@10.0.0.1:3142 [err]"

    saved = report.save().read_text()
    out = io.StringIO()
    render(report, as_json=False, stream=out)
    out_json = io.StringIO()
    render(report, as_json=True, stream=out_json)
    for text in (saved, out.getvalue(), out_json.getvalue()):
        assert "Canary-7x" not in text
        assert "http://ops:***@10.0.0.1:3142" in text
    assert "[err]" in out.getvalue()  # rich markup in messages is shown, not eaten


def test_the_kernel_and_its_packages_are_in_the_report(tmp_path: Path) -> None:
    """What verify read on a Pi 5 with the PCIe Coral: the running kernel and the kernel,
    headers and driver packages; kept through a saved report and `coralpi report`."""
    report = FleetReport(command="verify", run_dir=tmp_path)
    host = report.host("pi5")
    host.absorb_plan(PLAN)
    host.absorb_verify(
        {
            **VERIFY_OK,
            "facts": {
                "kernel": "6.12.25+rpt-rpi-v8",
                "kernel_packages": {
                    "linux-image-rpi-v8": "1:6.12.25-1+rpt1",
                    "linux-headers-rpi-v8": "1:6.12.25-1+rpt1",
                    "gasket-dkms": "1.0-18.4",
                },
            },
        }
    )
    row = json.loads(report.save().read_text())["hosts"][0]
    assert row["kernel"] == "6.12.25+rpt-rpi-v8"
    assert row["kernel_packages"] == {
        "gasket-dkms": "1.0-18.4",
        "linux-headers-rpi-v8": "1:6.12.25-1+rpt1",
        "linux-image-rpi-v8": "1:6.12.25-1+rpt1",
    }
    again = FleetReport.from_dict(json.loads((tmp_path / "report.json").read_text()))
    assert again.hosts["pi5"].kernel_packages["gasket-dkms"] == "1.0-18.4"
    # verify output without facts (an older verify) leaves them empty
    old = report.host("pi4")
    old.absorb_verify(VERIFY_OK)
    assert (old.kernel, old.kernel_packages) == ("", {})
