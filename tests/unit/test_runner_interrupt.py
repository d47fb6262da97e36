"""Ctrl-C during a playbook run: ansible-playbook and what it started are ended, the result
names the task each host was on, and Ctrl-C works as usual again once the run is over.

Real ansible-playbook on `localhost` with the local connection; the only task is `sleep`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, signal, sys, time
    from pathlib import Path
    from provision.driver.runner import RunInterrupted, run_playbook

    # As when started from a terminal: a job started in the background of a script (as CI
    # may run this suite) inherits SIGINT ignored, and the runner restores what it found.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    book, inventory, run_dir = map(Path, sys.argv[1:4])
    try:
        run_playbook(book, inventory, run_dir, ident="sleepy")
        print(json.dumps({"raised": False}))
        sys.exit(0)
    except RunInterrupted as exc:
        hosts = {n: [h.status, h.failed_task] for n, h in exc.result.hosts.items()}
        summary = json.dumps({"raised": True, "code": exc.exit_code, "hosts": hosts})
    # After the run, Ctrl-C is an ordinary KeyboardInterrupt again.
    try:
        print(summary, flush=True)
        time.sleep(30)
    except KeyboardInterrupt:
        print(json.dumps({"keyboard_interrupt_after_run": True}), flush=True)
        sys.exit(130)
    """
)

PLAYBOOK = """\
- name: Sleep
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep a long time
      ansible.builtin.shell: echo $$ > {pidfile}; exec sleep 120
      changed_when: false
"""


def _started(run_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in run_dir.glob("artifacts/sleepy/job_events/*.json"):
            try:
                if json.loads(path.read_text()).get("event") == "runner_on_start":
                    return True
            except (json.JSONDecodeError, OSError):
                continue
        time.sleep(0.1)
    return False


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_ctrl_c_ends_ansible_playbook_and_reports_the_task(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleep.pid"
    book = tmp_path / "sleepy.yml"
    book.write_text(PLAYBOOK.format(pidfile=pidfile))
    inventory = tmp_path / "inv.ini"
    inventory.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(book), str(inventory), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert _started(run_dir, timeout=120), "the playbook never started its task"
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        sleep_pid = int(pidfile.read_text())
        assert _alive(sleep_pid)
        vars_file = run_dir / "sleepy-vars.json"
        assert vars_file.stat().st_mode & 0o777 == 0o600  # kept while the run needs it
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        first = json.loads(line)
        sent = time.monotonic()
        assert first["raised"] is True and first["code"] == 130
        assert first["hosts"]["localhost"] == ["interrupted", "Sleep a long time"]
        while _alive(sleep_pid) and time.monotonic() - sent < 10:
            time.sleep(0.1)
        assert not _alive(sleep_pid), "the task's process outlived the interrupted run"
        assert not vars_file.exists()  # and not after: -e values may hold secrets

        os.killpg(proc.pid, signal.SIGINT)
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        second = json.loads(line)
        assert second == {"keyboard_interrupt_after_run": True}
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_own_children_lists_exactly_the_processes_this_one_started() -> None:
    from provision.driver.runner import _own_children

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in _own_children()
    finally:
        child.kill()
        child.wait()
    assert child.pid not in _own_children()


def test_own_children_without_the_kernels_children_files(tmp_path: Path) -> None:
    from provision.driver.runner import _own_children

    (tmp_path / "self" / "task" / "1").mkdir(parents=True)  # no `children` file
    me = os.getpid()
    for pid, parent in ((501, me), (502, 1), (503, me)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (odd) name) S {parent} {pid} 0\n")
    assert sorted(_own_children(tmp_path)) == [501, 503]
