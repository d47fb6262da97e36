"""What the fleet tests share: the real CLI run as a user runs it, and looks at a host.

Imported by name (``from fleet_cli import ...``): pytest puts each test module's folder on
``sys.path``; conftest.py holds only fixtures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provision.artifacts.service import HostArtifacts, playbook_plan
from provision.planning.plan import Plan
from testfleet import Fleet

REPO = Path(__file__).resolve().parents[2]
CORALPI = str(Path(sys.executable).parent / "coralpi")
PARROT = "Ara macao (Scarlet Macaw)"
VENV_PY = "/opt/coralpi/venv/bin/python"
VENV_BIN = Path(sys.executable).parent
PLAYBOOKS = REPO / "playbooks"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)"
    r"\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
)


def coralpi(*args: str, runs: Path, timeout: float = 3600) -> tuple[int, dict[str, Any], str]:
    """Run the real CLI entry point with ``--json``, its runs and lock under ``runs``;
    return the exit code, the JSON report and the output's tail (for assertion messages)."""
    proc = subprocess.run(
        [CORALPI, *args, "--json", "--runs-dir", str(runs), "--lock", str(runs / "coralpi.lock")],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=timeout,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report, proc.stderr[-6000:] + proc.stdout[-3000:]


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fleet report's rows by host name."""
    return {row["host"]: row for row in report.get("hosts", [])}


def lock_fleet(fleet: Fleet, inventory: Path, path: Path) -> Path:
    """``coralpi lock`` for an inventory of ``fleet``, pinning its STAND-IN community .debs
    (served over plain http on the test bridge) by the sha256 of the files the fleet built,
    as a user pins a mirror's files."""
    proc = subprocess.run(
        [CORALPI, "lock", "-i", str(inventory), "--lock", str(path), *fleet.pin_args()],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return path


def host_text(
    fleet: Fleet, host: str, command: str, *, become: bool = False, timeout: float = 600
) -> str:
    """A command's output on a host (over the fleet's SSH); the command must succeed."""
    proc = fleet.ssh(host, command, become=become, timeout=timeout)
    assert proc.returncode == 0, (host, command, proc.stderr)
    return str(proc.stdout)


def installed(fleet: Fleet, host: str, package: str) -> str:
    """dpkg's ``Status Version`` of a package on a host ("" when it was never installed)."""
    proc = fleet.ssh(host, f"dpkg-query -W -f='${{Status}} ${{Version}}' {package} || true")
    return str(proc.stdout).strip()


def installed_runtimes(fleet: Fleet, host: str) -> dict[str, str]:
    """The libedgetpu1-std/-max packages installed on a host, with their versions."""
    out = fleet.ssh(
        host,
        "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' "
        "libedgetpu1-std libedgetpu1-max",
        timeout=60,
    ).stdout
    return {
        f[0]: f[1]
        for f in (line.split() for line in str(out).splitlines())
        if len(f) >= 3 and f[2].startswith("ii")
    }


# -- running playbooks as an Ansible user does ----------------------------------------------


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.recap: dict[str, dict[str, int]] = {}
        for line in proc.stdout.splitlines():
            found = RECAP.match(line)
            if found:
                fields = found.groupdict()
                host = fields.pop("host")
                self.recap[host] = {k: int(v) for k, v in fields.items()}

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]


def run_playbook(
    fleet: Fleet,
    workdir: Path,
    playbook: str,
    plans: Mapping[str, tuple[Plan, HostArtifacts]],
    *extra: str,
    limit: str | None = None,
) -> Run:
    """``ansible-playbook`` with ``coralpi_plans`` written as the controller writes them."""
    written = {name: playbook_plan(plan, arts) for name, (plan, arts) in plans.items()}
    vars_file = workdir / "plans.json"
    vars_file.write_text(json.dumps({"coralpi_plans": written}, indent=1))
    cmd = [
        str(VENV_BIN / "ansible-playbook"),
        "-i",
        str(fleet.inventory_path),
        str(PLAYBOOKS / playbook),
        "-e",
        f"@{vars_file}",
        *extra,
    ]
    if limit:
        cmd += ["--limit", limit]
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    }
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1500, check=False, cwd=REPO, env=env
    )
    return Run(proc)
