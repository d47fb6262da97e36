"""Running coralpi's playbooks through ansible-runner, with per-host events.

Each run gets its own directory (the run directory): ansible-runner keeps the full stdout
and the event stream (`artifacts/<ident>/job_events/`) there, and coralpi adds the extra-vars
file it passed and the per-host reports. The final fleet report names that directory.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import ansible_runner

from provision.errors import CoralpiError
from provision.redaction import redact
from provision.tools import shared, tool_path

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
    interrupted: bool = False
    failed_task: str = ""
    message: str = ""
    #: The tasks that changed the host (in check mode: would change), in order.
    changes: list[str] = field(default_factory=list)
    #: With --diff: what each change does, as unified diffs (secrets redacted).
    diffs: list[str] = field(default_factory=list)

    @property
    def current(self) -> str:
        """The task the host is on (or last finished), as `role : task`."""
        return f"{self.role} : {self.task}" if self.role else self.task

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.interrupted:
            return "interrupted"
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
    #: The signal that stopped the run (SIGINT for Ctrl-C), or None when it ran to its end.
    interrupted_by: int | None = None

    def failed_hosts(self) -> list[str]:
        return sorted(h.name for h in self.hosts.values() if h.status != "ok")


class RunInterrupted(CoralpiError):
    """The user stopped a run (Ctrl-C, SIGTERM); ansible-playbook was ended, `result` holds
    what each host had done. Exit status 128 + the signal number (130 for Ctrl-C)."""

    def __init__(self, result: RunResult) -> None:
        signum = result.interrupted_by or signal.SIGINT
        super().__init__(f"{result.playbook} was interrupted ({signal.Signals(signum).name})")
        self.result = result
        self.exit_code = 128 + signum


#: Seconds ansible-playbook gets, after Ctrl-C, to stop its workers before it is killed.
STOP_GRACE_SECONDS = 20.0


def _own_children(proc: Path = Path("/proc")) -> list[int]:
    """PIDs of this process's children (during a run: the ansible-playbook it started)."""
    pids: list[int] = []
    listings = list((proc / "self" / "task").glob("*/children"))
    for entry in listings:
        try:
            pids += [int(pid) for pid in entry.read_text().split()]
        except OSError:
            continue
    if listings:
        return pids
    # Kernels without the `children` files: look for processes whose parent is this one.
    me = os.getpid()
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == me:
            pids.append(int(stat.parent.name))
    return pids


@dataclass
class _Interrupt:
    """Ctrl-C (SIGINT) or SIGTERM while a playbook runs.

    The first signal is passed on to the ansible-playbook this process started, as a
    terminal's Ctrl-C would be: Ansible then stops its workers (and the SSH clients they
    run) and exits. If it has not exited within STOP_GRACE_SECONDS, or at a second Ctrl-C,
    `cancel` tells ansible-runner to kill it.
    """

    signum: int | None = None
    since: float | None = None

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum, self.since = signum, time.monotonic()
            for pid in _own_children():
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    continue
        else:
            self.since = -STOP_GRACE_SECONDS

    def cancel(self) -> bool:
        return self.since is not None and time.monotonic() - self.since > STOP_GRACE_SECONDS


@contextmanager
def _interruptible() -> Iterator[_Interrupt]:
    """Route Ctrl-C and SIGTERM to an _Interrupt for the duration of one run, instead of
    raising KeyboardInterrupt inside ansible-runner (which would leave ansible-playbook
    running). The previous handlers are put back afterwards, so Ctrl-C works as usual
    between runs (e.g. while artifacts download)."""
    interrupt = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = {
        sig: signal.signal(sig, interrupt.handler) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield interrupt
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


#: Ansible's `msg` for a failed command, which says nothing: stderr says why.
_GENERIC_MESSAGES = {"non-zero return code"}
_ERROR_LINE = re.compile(r"^(E:|.*\berror\b)", re.IGNORECASE)


def _result_message(res: Mapping[str, Any]) -> str:
    """The one line a user needs from a failed task's result."""
    if str(res.get("msg", "")).strip() in _GENERIC_MESSAGES:
        lines = [ln.strip() for ln in str(res.get("stderr") or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if _ERROR_LINE.match(ln)]
        if errors or lines:
            return (errors or lines)[0 if errors else -1]
    for key in ("msg", "stderr", "module_stderr", "stdout"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                return lines[-1] if key != "msg" else text.splitlines()[0]
    return "failed (no message)"


#: A diff longer than this is cut (a report is for reading, the run directory has it all).
_DIFF_LIMIT = 4000


def diff_text(diff: object) -> str:
    """Ansible's ``diff`` result (one dict or a list: before/after, or prepared text) as
    unified diff text; "" when there is none."""
    items = diff if isinstance(diff, list) else [diff]
    parts: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if item.get("prepared"):
            parts.append(str(item["prepared"]).rstrip("\n"))
            continue
        if "before" not in item and "after" not in item:
            continue
        lines = difflib.unified_diff(
            str(item.get("before", "")).splitlines(),
            str(item.get("after", "")).splitlines(),
            str(item.get("before_header", "before")),
            str(item.get("after_header", "after")),
            lineterm="",
        )
        parts.append("\n".join(lines))
    text = "\n".join(p for p in parts if p)
    return text if len(text) <= _DIFF_LIMIT else text[:_DIFF_LIMIT] + "\n... (cut)"


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
        task = redact(str(data.get("task", "") or ""))
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
            progress.message = redact(_result_message(res))
        elif counter == "failed":
            if data.get("ignore_errors"):
                progress.ok += 1
            else:
                progress.failed += 1
                progress.failed_task = f"{role} : {task}" if role else task
                progress.message = redact(_result_message(res))
        elif counter == "skipped":
            progress.skipped += 1
        else:
            progress.ok += 1
            if res.get("changed"):
                progress.changed += 1
                counter = "changed"
                done = f"{role} : {task}" if role else task
                progress.changes.append(done)
                text = diff_text(res.get("diff"))
                if text:
                    progress.diffs.append(redact(f"{done}\n{text}"))
        self._notify(progress, counter)
        return True

    def _notify(self, progress: HostProgress, what: str) -> None:
        if self.on_change is not None:
            self.on_change(progress, what)


def _echoing(
    handle: Callable[[Mapping[str, Any]], bool], out: TextIO, title: str
) -> Callable[[Mapping[str, Any]], bool]:
    """``-v``: Ansible's output of each event, as it comes, before the tracker sees it."""
    lock = threading.Lock()
    started = False

    def echo_then_handle(event: Mapping[str, Any]) -> bool:
        nonlocal started
        text = str(event.get("stdout") or "")
        if text:
            with lock:
                if not started:
                    print(f"--- {title} ---", file=out)
                    started = True
                print(redact(text), file=out, flush=True)
        return handle(event)

    return echo_then_handle


@contextmanager
def _removed_after(path: Path) -> Iterator[None]:
    """The run's variables (``-e`` values may hold a become password) are kept only while
    ansible-playbook needs them; the run directory keeps the events and the report."""
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


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
    verbosity: int = 0,
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    echo: TextIO | None = None,
) -> RunResult:
    """Run one playbook; never raises for host failures, they are in the result.

    ``verbosity`` is ansible-playbook's ``-v`` count: with it, Ansible's own output goes to
    ``echo`` (default stderr) as it comes, secrets in URLs masked; it is also kept in the run
    directory's ``artifacts/<ident>/stdout``. ``tags``/``skip_tags`` are its
    ``--tags``/``--skip-tags``.

    Raises RunInterrupted when the user stops the run (Ctrl-C): ansible-playbook has then
    been ended and every host that had not failed is marked interrupted in its result.
    """
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
    if verbosity > 0:
        cmdline.append("-" + "v" * verbosity)
    if tags:
        cmdline += ["--tags", ",".join(tags)]
    if skip_tags:
        cmdline += ["--skip-tags", ",".join(skip_tags)]
    # How often (seconds) ansible-runner asks the cancel callback while ansible-playbook is
    # quiet. (Read from env/settings only: runner drops a `settings` argument when that file
    # is missing.)
    (run_dir / "env").mkdir(exist_ok=True)
    (run_dir / "env" / "settings").write_text(json.dumps({"pexpect_timeout": 1}) + "\n")
    tracker = EventTracker(on_change=on_change)
    handle: Callable[[Mapping[str, Any]], bool] = tracker.handle
    if verbosity > 0:
        handle = _echoing(tracker.handle, echo or sys.stderr, f"ansible-playbook ({ident})")
    env = {
        "ANSIBLE_CONFIG": str(shared("ansible.cfg")),
        "ANSIBLE_ROLES_PATH": str(shared("playbooks", "roles")),
        # The run's playbooks share the facts one gathered (the probe's), so the next does
        # not gather them again: one round trip per host less.
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(run_dir / "facts"),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "86400",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # ansible-runner starts `ansible-playbook` from PATH: make it this environment's.
        "PATH": os.pathsep.join(
            [str(Path(tool_path("ansible-playbook")).parent), os.environ.get("PATH", "")]
        ),
    }
    started = time.monotonic()
    with _interruptible() as interrupt, _removed_after(vars_file):
        runner = ansible_runner.run(
            private_data_dir=str(run_dir),
            ident=ident,
            playbook=str(playbook_path),
            inventory=str(inventory.resolve()),
            limit=limit,
            # ansible-runner splits it as a shell would: quoted, a path may hold spaces.
            cmdline=shlex.join(cmdline),
            envvars=env,
            event_handler=handle,
            cancel_callback=interrupt.cancel,
            quiet=True,
            suppress_env_files=True,
        )
    interrupted_by = interrupt.signum
    seconds = time.monotonic() - started
    stats: Mapping[str, Mapping[str, int]] = runner.stats or {}
    for host in stats.get("dark", {}):
        tracker.host(host).unreachable = True
    for host in stats.get("processed", {}):
        tracker.host(host)
    result = RunResult(
        playbook=playbook_path.name,
        rc=int(runner.rc if runner.rc is not None else 1),
        status=str(runner.status),
        hosts=tracker.hosts,
        artifact_dir=run_dir / "artifacts" / ident,
        seconds=seconds,
        interrupted_by=interrupted_by,
    )
    if interrupted_by is not None:
        for progress in tracker.hosts.values():
            if progress.status == "ok":
                mark_interrupted(progress)
        raise RunInterrupted(result)
    return result


def mark_interrupted(progress: HostProgress) -> None:
    """A host the user's interrupt (Ctrl-C) caught before its run finished."""
    progress.interrupted = True
    progress.failed_task = progress.current or "before its first task"
    progress.message = "run interrupted during this task; run the same command again to converge"
