"""Ctrl-C outside a playbook run (probing done, artifacts downloading): `coralpi apply` still
saves the report with the hosts marked interrupted, names the run directory and exits 130.
Through the real CLI entry point; the probe/plan/run step is replaced by one that is
interrupted, so no host is contacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provision import cli
from provision.fleet import run as fleet
from provision.fleet.report import FleetReport
from provision.planning.matrix import platform_target, resolve
from provision.planning.targets import Choices


def _interrupted_step(*args: Any, **kwargs: Any) -> None:
    report: FleetReport = args[-1]
    report.host("pi1").absorb_plan(resolve(platform_target("bookworm/x86_64/3.11"), Choices()))
    raise KeyboardInterrupt


def test_ctrl_c_between_runs_saves_the_report_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        "all:\n  hosts:\n    pi1:\n      ansible_connection: local\n"
        "    pi2:\n      ansible_connection: local\n"
    )
    monkeypatch.setattr(fleet, "_probe_plan_and_run", _interrupted_step)
    runs = tmp_path / "runs"

    rc = cli.main(["apply", "-i", str(inventory), "--runs-dir", str(runs), "--json"])

    out, err = capsys.readouterr()
    assert rc == 130
    report = json.loads(out)
    (run_dir,) = runs.glob("*-apply")
    assert report["run_dir"] == str(run_dir)
    assert json.loads((run_dir / "report.json").read_text()) == report
    assert report["interrupted"] == "SIGINT" and report["ok"] is False
    assert {h["host"]: h["status"] for h in report["hosts"]} == {
        "pi1": "interrupted",
        "pi2": "interrupted",
    }
    assert "interrupted (Ctrl-C)" in err and "Unfinished hosts: pi1, pi2" in err
    assert f"Run directory (logs, event stream, report.json): {run_dir}" in err


def test_ctrl_c_before_any_host_is_touched_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted_load(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fleet, "load_inventory", interrupted_load)
    rc = cli.main(["apply", "-i", str(tmp_path / "inv.yml"), "--runs-dir", str(tmp_path)])
    assert rc == 130
    assert "interrupted before any host was touched" in capsys.readouterr().err
    assert not list(tmp_path.glob("*-apply"))
