"""Ctrl-C in the middle of `coralpi apply`, for real, then the run that repairs it; and the
security basics checked on the host that run converged.

One private bookworm host. The first apply is stopped the way a user stops it: SIGINT to
the controller's process group (what a terminal's Ctrl-C does) while the host's dpkg is
unpacking the plan's Debian packages. The next apply must converge from whatever that left.

The host's inventory carries canary secrets: a become password and an apt proxy URL with a
password (`coralpi_apt_proxy`). Neither may appear in anything coralpi prints or keeps. On
the host, the proxy password is in apt's auth.conf.d (root, 0600) and nowhere in apt.conf.d.

STAND-INS (as in test_apply_fleet.py): the Coral apt repository and the community runtime
.debs are the test fleet's local stand-ins; Debian packages and wheels are real. The canary
proxy URL is the fleet's proxy (apt-cacher-ng, which asks for no password) with a user and
password added: apt dials the same proxy and sends it the canary credentials from
auth.conf.d, which apt-cacher-ng ignores.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fleet_cli import CORALPI, REPO, VENV_PY, lock_fleet

from testfleet import Fleet, HostSpec

HOST = "pi1"
INSTALL_TASK = "Install the Debian packages of the plan"
PROXY_AUTH = "/etc/apt/auth.conf.d/coralpi-proxy.conf"
BECOME_CANARY = "BecomeCanary-4e7a91"
PROXY_CANARY = "ProxyCanary-b20c5d"
CANARIES = (BECOME_CANARY, PROXY_CANARY)

#: What each step found, for the report at the end of the module (pytest -s shows it).
OBSERVED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def fleet(make_fleet: Any) -> Iterator[Fleet]:
    yield make_fleet(
        "interrupt",
        hosts=(HostSpec(HOST, "bookworm"),),
        host_vars={
            HOST: {
                "ansible_become_password": BECOME_CANARY,
                # bookworm takes the community runtime; the Coral source is enabled too, so
                # its keyring and sources file exist to be checked.
                "coralpi_coral_source_enabled": True,
            }
        },
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interrupt-runs")


@pytest.fixture(scope="module")
def inventory(fleet: Fleet, runs: Path) -> Path:
    """The fleet's inventory with a password in the apt proxy URL."""
    data = yaml.safe_load(fleet.inventory_path.read_text())
    group = next(iter(data["all"]["children"].values()))
    proxy = str(group["vars"]["coralpi_apt_proxy"])
    scheme, rest = proxy.split("://", 1)
    group["vars"]["coralpi_apt_proxy"] = f"{scheme}://coralpi:{PROXY_CANARY}@{rest}"
    path = runs / "inventory.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lock(fleet: Fleet, inventory: Path, runs: Path) -> Path:
    """Lock pinning the STAND-IN community .debs by the sha256 of the files the fleet built."""
    return lock_fleet(fleet, inventory, runs / "coralpi.lock")


def apply_command(inventory: Path, runs: Path, lock: Path, *extra: str) -> list[str]:
    return [
        CORALPI,
        "apply",
        "-i",
        str(inventory),
        "--json",
        "--runs-dir",
        str(runs),
        "--lock",
        str(lock),
        *extra,
    ]


def task_started(runs: Path, host: str, task: str) -> bool:
    """Has the kept event stream a runner_on_start of `task` on `host`?"""
    for path in runs.glob("*-apply/artifacts/apply/job_events/*.json"):
        try:
            event = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        data = event.get("event_data", {})
        if (
            event.get("event") == "runner_on_start"
            and data.get("host") == host
            and data.get("task") == task
        ):
            return True
    return False


def running_commands(fleet: Fleet) -> list[str]:
    """Names of the processes running on the host (read from /proc: minbase has no ps)."""
    proc = fleet.ssh(HOST, "cat /proc/[0-9]*/comm 2>/dev/null", timeout=20)
    return str(proc.stdout).split()


def host_state(fleet: Fleet) -> dict[str, str]:
    """What an operator would look at: dpkg's view, apt's files, what is still running."""
    commands = {
        "dpkg --audit": "dpkg --audit",
        "dpkg journal": "ls -A /var/lib/dpkg/updates",
        "apt/dpkg running": "cat /proc/[0-9]*/comm 2>/dev/null | grep -xE 'apt|apt-get|dpkg' "
        "| sort | uniq -c || true",
        "sources.list.d": "ls -A /etc/apt/sources.list.d",
        "keyrings": "ls -A /etc/apt/keyrings 2>/dev/null || true",
        "stray files under /etc/apt": "find /etc/apt \\( -name '*~' -o -name '.ansible_tmp*' "
        "-o -name '*.dpkg-*' -o -name '*.tmp' \\) -print",
        "scratch source check dir": "ls -A /var/lib/coralpi/apt-check 2>&1 || true",
    }
    return {
        name: str(fleet.ssh(HOST, cmd, become=True, timeout=60).stdout).strip()
        for name, cmd in commands.items()
    }


def wait_attempts(run_dir: Path) -> int | None:
    """How often coralpi_apt tried the dpkg lock (more than 1: it waited for the apt the
    interrupted run left going on the host)."""
    for path in run_dir.glob("artifacts/apply/job_events/*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task", "").startswith(
            "Wait for a package run"
        ):
            return int(data.get("res", {}).get("attempts", 1))
    return None


def test_ctrl_c_mid_apt_stops_apply_promptly_and_names_the_run_dir(
    fleet: Fleet, inventory: Path, runs: Path, lock: Path
) -> None:
    started = time.monotonic()
    # --diff as an operator watching changes would: diffs must not carry secrets either.
    proc = subprocess.Popen(
        apply_command(inventory, runs, lock, "--diff"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not task_started(runs, HOST, INSTALL_TASK):
            assert proc.poll() is None, "apply ended before the apt install task"
            assert time.monotonic() < deadline, "apply never reached the apt install task"
            time.sleep(0.2)
        # Wait until dpkg itself runs (apt first downloads through the proxy).
        while "dpkg" not in running_commands(fleet):
            assert proc.poll() is None, "apply ended before dpkg ran"
            assert time.monotonic() < deadline, "dpkg never ran on the host"
            time.sleep(0.1)
        OBSERVED["seconds to dpkg running"] = round(time.monotonic() - started, 1)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        interrupted_at = time.monotonic()
        stdout, stderr = proc.communicate(timeout=120)
        OBSERVED["seconds from Ctrl-C to exit"] = round(time.monotonic() - interrupted_at, 1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    OBSERVED["killed run output"] = stdout + stderr
    OBSERVED["after the kill"] = host_state(fleet)

    assert proc.returncode == 130, stderr
    assert OBSERVED["seconds from Ctrl-C to exit"] < 30, OBSERVED
    report = json.loads(stdout)
    run_dir = Path(report["run_dir"])
    assert run_dir.parent == runs and run_dir.is_dir()
    assert f"Run directory (logs, event stream, report.json): {run_dir}" in stderr, stderr
    assert "interrupted (Ctrl-C)" in stderr and f"Unfinished hosts: {HOST}" in stderr
    assert report["interrupted"] == "SIGINT" and report["ok"] is False
    row = {r["host"]: r for r in report["hosts"]}[HOST]
    assert row["status"] == "interrupted", row
    assert row["failed_task"] == f"coralpi_python : {INSTALL_TASK}", row
    assert json.loads((run_dir / "report.json").read_text()) == report
    # ansible-playbook and its workers are gone with the controller (each would name the
    # run's vars file on its command line).
    vars_file = str(run_dir / "apply-vars.json")
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if vars_file in cmdline.read_bytes().decode(errors="replace"):
                leftovers.append(cmdline.parent.name)
        except OSError:
            continue
    assert not leftovers, f"processes of the interrupted run still running: {leftovers}"


def test_next_apply_converges_from_what_the_kill_left(
    fleet: Fleet, inventory: Path, runs: Path, lock: Path
) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        apply_command(inventory, runs, lock),
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    OBSERVED["seconds of the converging apply"] = round(time.monotonic() - started, 1)
    OBSERVED["converging run output"] = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    report = json.loads(proc.stdout)
    row = {r["host"]: r for r in report["hosts"]}[HOST]
    assert row["status"] == "ok" and report["interrupted"] is None, row
    OBSERVED["lock wait attempts in the converging run"] = wait_attempts(Path(report["run_dir"]))

    state = host_state(fleet)
    OBSERVED["after the converge"] = state
    assert state["dpkg --audit"] == ""
    assert state["dpkg journal"] == ""
    assert state["apt/dpkg running"] == ""
    assert state["stray files under /etc/apt"] == ""
    assert "No such file" in state["scratch source check dir"]
    assert sorted(state["sources.list.d"].split()) == ["coral-edgetpu.sources"]
    imports = fleet.ssh(HOST, f"{VENV_PY} -c 'import tflite_runtime.interpreter, cv2, numpy'")
    assert imports.returncode == 0, imports.stderr


def test_keyring_and_sources_are_root_owned_and_not_writable_by_others(fleet: Fleet) -> None:
    proc = fleet.ssh(
        HOST,
        "stat -c '%U %G %a %n' /etc/apt/keyrings /etc/apt/keyrings/* "
        f"/etc/apt/sources.list.d/*coral* /etc/apt/apt.conf.d/*coralpi* {PROXY_AUTH}",
        become=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = str(proc.stdout).splitlines()
    OBSERVED["apt files"] = lines
    names = [line.split()[3] for line in lines]
    assert "/etc/apt/keyrings/coral-edgetpu.gpg" in names
    assert "/etc/apt/sources.list.d/coral-edgetpu.sources" in names
    assert PROXY_AUTH in names
    for line in lines:
        owner, group, mode, name = line.split()
        assert (owner, group) == ("root", "root"), line
        assert int(mode, 8) & 0o022 == 0, f"{name} is group- or world-writable: {line}"


def test_the_proxy_password_is_root_only_on_the_host_and_apt_uses_it(fleet: Fleet) -> None:
    # Where the converged host keeps it: apt's auth.conf.d, root only, in the entries that
    # apt >= 1.9 (http:// entry) and Buster's apt 1.8 (host:port entry) each match.
    proc = fleet.ssh(HOST, f"stat -c '%U %G %a' {PROXY_AUTH} && cat {PROXY_AUTH}", become=True)
    assert proc.returncode == 0, proc.stderr
    owner_line, *entries = str(proc.stdout).splitlines()
    assert owner_line == "root root 600", owner_line
    entries = [line for line in entries if not line.startswith("#")]
    assert len(entries) == 2 and all(
        line.endswith(f" login coralpi password {PROXY_CANARY}") for line in entries
    ), entries
    assert entries[0].startswith("machine http://") and "://" not in entries[1], entries
    # The pi user (every local user) cannot read it.
    as_pi = fleet.ssh(HOST, f"cat {PROXY_AUTH}")
    assert as_pi.returncode != 0 and PROXY_CANARY not in str(as_pi.stdout), as_pi.stdout
    # Nothing under apt.conf.d holds it (the proxy URL there has no user and password), nor
    # anywhere else under /etc.
    holders = fleet.ssh(HOST, f"grep -rlF -e {PROXY_CANARY} /etc || true", become=True)
    assert str(holders.stdout).split() == [PROXY_AUTH], holders.stdout
    conf = fleet.ssh(HOST, "cat /etc/apt/apt.conf.d/01coralpi-proxy", become=True)
    assert re.search(r'(?m)^Acquire::http::Proxy "http://[^@"]+";$', str(conf.stdout)), conf.stdout
    # apt still works through the proxy, and sends it the credentials from auth.conf.d.
    update = fleet.ssh(
        HOST, "apt-get update -q -o Debug::Acquire::http=true", become=True, timeout=300
    )
    OBSERVED["apt-get update with the proxy credentials"] = update.returncode
    assert update.returncode == 0, str(update.stderr)[-3000:]
    assert not re.search(r"(?m)^(E|W): ", str(update.stdout) + str(update.stderr)), str(
        update.stderr
    )[-3000:]
    sent = base64.b64encode(f"coralpi:{PROXY_CANARY}".encode()).decode()
    assert f"Proxy-Authorization: Basic {sent}" in str(update.stdout) + str(update.stderr)


def test_secrets_never_reach_logs_reports_or_the_terminal(fleet: Fleet, runs: Path) -> None:
    outputs = [OBSERVED["killed run output"], OBSERVED["converging run output"]]
    for text in outputs:
        for canary in CANARIES:
            assert canary not in text
    run_dirs = sorted(runs.glob("*-apply"))
    assert len(run_dirs) == 2, run_dirs
    leaks = []
    for path in runs.rglob("*"):
        if path.is_file() and path.name not in {"inventory.yml"}:
            data = path.read_bytes()
            leaks += [f"{path}: {c}" for c in CANARIES if c.encode() in data]
    assert not leaks, leaks
    for run_dir in run_dirs:
        assert run_dir.stat().st_mode & 0o777 == 0o700, run_dir
        for vars_file in run_dir.glob("*-vars.json"):
            assert vars_file.stat().st_mode & 0o777 == 0o600, vars_file
    print("\n" + json.dumps({k: v for k, v in OBSERVED.items() if "output" not in k}, indent=2))
