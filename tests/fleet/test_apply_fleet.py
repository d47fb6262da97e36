"""`coralpi apply` and `coralpi verify` for real, over SSH, on throwaway Debian hosts.

STAND-INS (named so in every fixture): Coral's apt repository, the community runtime .debs
and Coral's test-data URLs cannot be reached from here; the test fleet serves local
stand-ins for them (`testfleet.standin_coral`: same package names, Provides/Conflicts,
max EULA question, udev rules; a libedgetpu that reports "no device"). Debian packages are
real, through an apt proxy; wheels are real, downloaded from PyPI by the controller only.

The tests in this module run in order on one fleet: converge, converge again, check mode,
std -> max -> std, a host that is down. Each is a separate test so a failure says which.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fleet_cli import (
    CORALPI,
    PARROT,
    REPO,
    VENV_PY,
    coralpi,
    host_text,
    installed,
    lock_fleet,
    rows,
)

from testfleet import Fleet, HostSpec

HOSTS = (HostSpec("pi1", "bookworm"), HostSpec("pi2", "bookworm"), HostSpec("pi3", "trixie"))


@pytest.fixture(scope="module")
def coral_fleet(make_fleet: Any) -> Iterator[Fleet]:
    yield make_fleet("apply", hosts=HOSTS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def lock(coral_fleet: Fleet, runs: Path) -> Path:
    """Lock the fleet's artifacts (its STAND-IN community .debs pinned by their sha256)."""
    return lock_fleet(coral_fleet, coral_fleet.inventory_path, runs / "coralpi.lock")


#: What provisioning changes on a host: its apt sources, packages, /opt, the local fact.
FRESH_STATE = (
    "ls -l --time-style=+%s /etc/apt/sources.list.d /opt /etc/ansible/facts.d 2>&1; "
    "dpkg-query -W -f '${Package} ${Status}\\n' | sort | md5sum"
)


def test_check_mode_on_a_fresh_host_shows_every_change_and_changes_nothing(
    coral_fleet: Fleet, runs: Path, lock: Path
) -> None:
    """`--check --diff` on a host never provisioned runs through every role: the pushed
    runtime .deb is read on the controller, the venv that does not exist yet is reported as
    to be made, and the host is left exactly as it was."""
    before = host_text(coral_fleet, "pi1", FRESH_STATE)
    rc, report, output = coralpi(
        "apply",
        "-i",
        str(coral_fleet.inventory_path),
        "--check",
        "--diff",
        "--limit",
        "pi1",
        runs=runs,
    )
    assert rc == 0, output
    assert report["check_mode"] is True
    row = rows(report)["pi1"]
    assert row["status"] != "failed", row
    changes = " | ".join(row["changes"])
    for would in (
        "Install the runtime from the pushed .deb (check mode, .deb not pushed yet), "
        "libedgetpu1-std",
        "Create the venv",
        "Install the Python requirements",
        "libatomic and OpenCV from Debian",
        "Write the local fact",
    ):
        assert would in changes, (would, row["changes"])
    diffs = "\n".join(row["diffs"])
    assert "/etc/ansible/facts.d/coralpi.fact" in diffs and "libatomic1" in diffs, diffs
    assert host_text(coral_fleet, "pi1", FRESH_STATE) == before


def test_first_converge_provisions_and_verifies_every_host(
    coral_fleet: Fleet, runs: Path, lock: Path
) -> None:
    rc, report, output = coralpi("apply", "-i", str(coral_fleet.inventory_path), runs=runs)
    assert rc == 0, output
    table = rows(report)
    assert sorted(table) == ["pi1", "pi2", "pi3"], output
    for name, row in table.items():
        assert row["status"] == "ok", (name, row)
        assert row["changed"] and row["changed"] > 0, (name, row)
        # The real smoke test on the real model, on the host's CPU (no Edge TPU here).
        assert row["smoke"].startswith(PARROT), (name, row)
        assert row["smoke_device"] == "cpu", (name, row)
        assert any("accelerator" in w for w in row["warnings"]), row["warnings"]
    assert table["pi1"]["python_runtime"] == "tflite-runtime 2.14.0"
    assert table["pi3"]["python_runtime"].startswith("ai-edge-litert")
    assert "installed" in installed(coral_fleet, "pi1", "libedgetpu1-std")


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_first_converges_page_in_a_real_browser(runs: Path, tmp_path: Path) -> None:
    """report.html of the first converge, opened by headless Chromium: every host, its
    smoke result, and a screenshot."""
    first = next(
        run
        for run in sorted(runs.glob("*-apply"))
        if not json.loads((run / "report.json").read_text())["check_mode"]
    )
    page = (first / "report.html").as_uri()
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]
    dom = subprocess.run(
        [*base, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for host in ("pi1", "pi2", "pi3"):
        assert (
            f'<tr data-host="{host}">' in dom.stdout
            and f'data-host="{host}" data-median' in dom.stdout
        )
    assert dom.stdout.count(PARROT) >= 3 and "all hosts ok" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert shot.read_bytes()[:4] == b"\x89PNG"


def test_second_converge_changes_nothing(coral_fleet: Fleet, runs: Path) -> None:
    rc, report, output = coralpi("apply", "-i", str(coral_fleet.inventory_path), runs=runs)
    assert rc == 0, output
    for name, row in rows(report).items():
        assert row["changed"] == 0, (name, row)


def test_venv_imports_runtime_and_opencv_on_every_host(coral_fleet: Fleet) -> None:
    modules = {
        "pi1": "tflite_runtime.interpreter",
        "pi2": "tflite_runtime.interpreter",
        "pi3": "ai_edge_litert.interpreter",
    }
    for host, module in modules.items():
        proc = coral_fleet.ssh(
            host, f"{VENV_PY} -c 'import {module}, cv2, numpy; print(cv2.__version__)'"
        )
        assert proc.returncode == 0, (host, proc.stderr)
        assert str(proc.stdout).strip()[:1].isdigit()


def test_check_mode_reports_no_change_and_changes_nothing(coral_fleet: Fleet, runs: Path) -> None:
    state = (
        "cat /etc/ansible/facts.d/coralpi.fact; ls -la --time-style=full-iso /opt/coralpi/venv/bin"
    )
    before = {h: coral_fleet.ssh(h, state).stdout for h in ("pi2", "pi3")}
    rc, report, output = coralpi(
        "apply", "-i", str(coral_fleet.inventory_path), "--check", "--limit", "pi2,pi3", runs=runs
    )
    assert rc == 0, output
    assert rows(report)["pi2"]["changed"] == 0 and rows(report)["pi3"]["changed"] == 0
    assert {h: coral_fleet.ssh(h, state).stdout for h in ("pi2", "pi3")} == before


def test_switch_std_to_max_and_back(coral_fleet: Fleet, runs: Path) -> None:
    inv = str(coral_fleet.inventory_path)
    rc, report, output = coralpi(
        "apply",
        "-i",
        inv,
        "--limit",
        "pi1",
        "-e",
        "coralpi_runtime=max",
        "-e",
        "coralpi_accept_max_eula=true",
        runs=runs,
    )
    assert rc == 0, output
    assert rows(report)["pi1"]["runtime"].startswith("libedgetpu1-max")
    assert "install ok installed" in installed(coral_fleet, "pi1", "libedgetpu1-max")
    assert "install ok installed" not in installed(coral_fleet, "pi1", "libedgetpu1-std")
    fact = json.loads(str(coral_fleet.ssh("pi1", "cat /etc/ansible/facts.d/coralpi.fact").stdout))
    assert fact["runtime_variant"] == "max"
    answers = str(coral_fleet.ssh("pi1", "debconf-show libedgetpu1-max").stdout)
    assert "libedgetpu/accepted-eula: true" in answers
    # the questions answered are those the .deb's own templates define (read by the
    # controller when locking): the community max package asks no install-confirm-max
    assert "install-confirm-max" not in answers
    rc, report, output = coralpi(
        "apply",
        "-i",
        inv,
        "--limit",
        "pi1",
        "-e",
        "coralpi_runtime=max",
        "-e",
        "coralpi_accept_max_eula=true",
        runs=runs,
    )
    assert rc == 0 and rows(report)["pi1"]["changed"] == 0, output

    rc, report, output = coralpi("apply", "-i", inv, "--limit", "pi1", runs=runs)
    assert rc == 0, output
    assert "install ok installed" in installed(coral_fleet, "pi1", "libedgetpu1-std")
    assert "install ok installed" not in installed(coral_fleet, "pi1", "libedgetpu1-max")


def test_max_without_eula_is_refused_before_any_host_is_touched(
    coral_fleet: Fleet, runs: Path
) -> None:
    rc, _, output = coralpi(
        "apply", "-i", str(coral_fleet.inventory_path), "-e", "coralpi_runtime=max", runs=runs
    )
    assert rc == 1
    assert "coralpi_accept_max_eula" in output
    assert "install ok installed" in installed(coral_fleet, "pi1", "libedgetpu1-std")


#: What a bad value would have changed first: the apt sources and the local fact.
HOST_STATE = "ls -l --time-style=+%s /etc/apt/sources.list.d; cat /etc/ansible/facts.d/coralpi.fact"


def test_one_bad_value_on_one_host_leaves_every_host_untouched(
    coral_fleet: Fleet, runs: Path, tmp_path: Path
) -> None:
    """A newline in pi2's Coral repository URL (it would add `Trusted: yes` to the deb822
    source): refused naming host and variable, no run directory made, no host changed."""
    data = yaml.safe_load(coral_fleet.inventory_path.read_text())
    group = next(iter(data["all"]["children"].values()))
    group["hosts"]["pi2"]["coralpi_coral_repo_url"] = "http://mirror.invalid/apt\nTrusted: yes"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    before = {h: host_text(coral_fleet, h, HOST_STATE) for h in ("pi1", "pi2", "pi3")}
    dirs = sorted(runs.glob("*-apply"))
    rc, _, output = coralpi("apply", "-i", str(inventory), runs=runs)
    assert rc == 1, output
    assert "host pi2: coralpi_coral_repo_url: a newline at position" in output, output
    assert sorted(runs.glob("*-apply")) == dirs
    assert {h: host_text(coral_fleet, h, HOST_STATE) for h in before} == before


def test_a_host_that_is_down_does_not_stop_the_others(coral_fleet: Fleet, runs: Path) -> None:
    coral_fleet.set_link("pi2", False)
    try:
        rc, report, output = coralpi("verify", "-i", str(coral_fleet.inventory_path), runs=runs)
    finally:
        coral_fleet.set_link("pi2", True)
    assert rc == 2, output
    table = rows(report)
    assert table["pi2"]["status"] == "unreachable", table["pi2"]
    assert report["failed_hosts"] == ["pi2"]
    for name in ("pi1", "pi3"):
        assert table[name]["status"] == "ok", table[name]
        assert table[name]["smoke"].startswith(PARROT)


def test_interrupted_dpkg_is_finished_by_the_next_apply(coral_fleet: Fleet, runs: Path) -> None:
    """A run killed between dpkg's unpack and configure leaves a package half-installed.
    `dpkg --unpack` without `--configure` leaves exactly that state, deterministically."""
    unpack = coral_fleet.ssh(
        "pi2", "dpkg --unpack /var/cache/coralpi/debs/libedgetpu1-std_*.deb", become=True
    )
    assert unpack.returncode == 0, unpack.stderr
    audit = coral_fleet.ssh("pi2", "dpkg --audit", become=True)
    assert "libedgetpu1-std" in str(audit.stdout), audit.stdout

    rc, report, output = coralpi(
        "apply", "-i", str(coral_fleet.inventory_path), "--limit", "pi2", runs=runs
    )
    assert rc == 0, output
    assert rows(report)["pi2"]["status"] == "ok"
    assert str(coral_fleet.ssh("pi2", "dpkg --audit", become=True).stdout).strip() == ""
    assert "install ok installed" in installed(coral_fleet, "pi2", "libedgetpu1-std")


def _first_apply_event(run_root: Path, host: str, timeout: float) -> bool:
    """Wait until the apply play has started a task on `host` (from the kept event stream)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in run_root.glob("*-apply/artifacts/apply/job_events/*.json"):
            try:
                event = json.loads(path.read_text())
            except (json.JSONDecodeError, OSError):
                continue
            data = event.get("event_data", {})
            if event.get("event") == "runner_on_start" and data.get("host") == host:
                return True
        time.sleep(0.2)
    return False


def test_link_cut_mid_run_fails_only_that_host_and_retry_failed_converges_it(
    coral_fleet: Fleet, runs: Path
) -> None:
    inv = str(coral_fleet.inventory_path)
    lock = runs / "coralpi.lock"
    runs = runs / "link-cut"
    runs.mkdir()
    shutil.copy(lock, runs / "coralpi.lock")
    proc = subprocess.Popen(
        [
            CORALPI,
            "apply",
            "-i",
            inv,
            "--json",
            "--runs-dir",
            str(runs),
            "--lock",
            str(runs / "coralpi.lock"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert _first_apply_event(runs, "pi1", timeout=300), "apply never reached pi1"
        coral_fleet.set_link("pi1", False)
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        coral_fleet.set_link("pi1", True)
    assert proc.returncode == 2, stderr
    table = rows(json.loads(stdout))
    assert table["pi1"]["status"] in {"unreachable", "failed"}, table["pi1"]
    for name in ("pi2", "pi3"):
        assert table[name]["status"] == "ok", table[name]

    rc, report, output = coralpi("apply", "-i", inv, "--retry-failed", runs=runs)
    assert rc == 0, output
    assert sorted(rows(report)) == ["pi1"]
    assert rows(report)["pi1"]["status"] == "ok"
