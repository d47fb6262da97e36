"""Running coralpi's playbooks through ansible-runner, with per-host events.

Each run gets its own directory (the run directory): ansible-runner keeps the full stdout
and the event stream (`artifacts/<ident>/job_events/`) there, and coralpi adds the extra-vars
file it passed and the per-host reports. The final fleet report names that directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from provision.tools import repo_root, tool_path

#: Ansible result event names -> the counter they bump.
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass
class HostProgress:
    """What one host has done so far in a run."""

    name: str
    task: str = ""
    role: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: bool = False
    failed_task: str = ""
    message: str = ""

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "ok"


@dataclass
class RunResult:
    """Outcome of one playbook run."""

    playbook: str
    rc: int
    status: str
    hosts: dict[str, HostProgress]
    artifact_dir: Path
    seconds: float

    def failed_hosts(self) -> list[str]:
        return sorted(h.name for h in self.hosts.values() if h.status != "ok")


def _result_message(res: Mapping[str, Any]) -> str:
    """The one line a user needs from a failed task's result."""
    for key in ("msg", "stderr", "module_stderr", "stdout"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                return lines[-1] if key != "msg" else text.splitlines()[0]
    return "failed (no message)"


@dataclass
class EventTracker:
    """Folds ansible-runner events into per-host progress; pure, tested on recorded events."""

    hosts: dict[str, HostProgress] = field(default_factory=dict)
    on_change: Callable[[HostProgress, str], None] | None = None

    def host(self, name: str) -> HostProgress:
        if name not in self.hosts:
            self.hosts[name] = HostProgress(name)
        return self.hosts[name]

    def handle(self, event: Mapping[str, Any]) -> bool:
        name = event.get("event", "")
        data: Mapping[str, Any] = event.get("event_data", {}) or {}
        host_name = data.get("host")
        if not host_name:
            return True
        progress = self.host(str(host_name))
        task = str(data.get("task", "") or "")
        role = str(data.get("role", "") or "")
        if name == "runner_on_start":
            progress.task, progress.role = task, role
            self._notify(progress, "start")
            return True
        counter = _RESULT_EVENTS.get(name)
        if counter is None:
            return True
        res: Mapping[str, Any] = data.get("res", {}) or {}
        if counter == "unreachable":
            progress.unreachable = True
            progress.failed_task = task
            progress.message = _result_message(res)
        elif counter == "failed":
            if data.get("ignore_errors"):
                progress.ok += 1
            else:
                progress.failed += 1
                progress.failed_task = f"{role} : {task}" if role else task
                progress.message = _result_message(res)
        elif counter == "skipped":
            progress.skipped += 1
        else:
            progress.ok += 1
            if res.get("changed"):
                progress.changed += 1
                counter = "changed"
        self._notify(progress, counter)
        return True

    def _notify(self, progress: HostProgress, what: str) -> None:
        if self.on_change is not None:
            self.on_change(progress, what)


def run_playbook(
    playbook_path: Path,
    inventory: Path,
    run_dir: Path,
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    forks: int = 20,
    on_change: Callable[[HostProgress, str], None] | None = None,
    ident: str | None = None,
    extra_args: Sequence[str] = (),
) -> RunResult:
    """Run one playbook; never raises for host failures, they are in the result."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ident = ident or playbook_path.stem
    vars_file = run_dir / f"{ident}-vars.json"
    vars_file.write_text(json.dumps(dict(extravars or {}), indent=2, sort_keys=True))
    os.chmod(vars_file, 0o600)
    cmdline = [f"-e@{vars_file}", "--forks", str(forks), *extra_args]
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    tracker = EventTracker(on_change=on_change)
    env = {
        "ANSIBLE_CONFIG": str(repo_root() / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(repo_root() / "playbooks" / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # ansible-runner starts `ansible-playbook` from PATH: make it this environment's.
        "PATH": os.pathsep.join(
            [str(Path(tool_path("ansible-playbook")).parent), os.environ.get("PATH", "")]
        ),
    }
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(run_dir),
        ident=ident,
        playbook=str(playbook_path),
        inventory=str(inventory.resolve()),
        limit=limit,
        cmdline=" ".join(cmdline),
        envvars=env,
        event_handler=tracker.handle,
        quiet=True,
        suppress_env_files=True,
    )
    seconds = time.monotonic() - started
    stats: Mapping[str, Mapping[str, int]] = runner.stats or {}
    for host in stats.get("dark", {}):
        tracker.host(host).unreachable = True
    for host in stats.get("processed", {}):
        tracker.host(host)
    return RunResult(
        playbook=playbook_path.name,
        rc=int(runner.rc if runner.rc is not None else 1),
        status=str(runner.status),
        hosts=tracker.hosts,
        artifact_dir=run_dir / "artifacts" / ident,
        seconds=seconds,
    )
