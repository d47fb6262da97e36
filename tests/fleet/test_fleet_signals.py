"""SIGTERM and SIGINT at any point of a test run leave no fleet behind.

Each case runs a child pytest on this file's ``child_holds_a_fleet`` (collected only there,
``-o python_functions=child_*``), so the fleet comes from the real conftest's ``make_fleet``.
It waits until the child's one-host fleet is up, or paused at a step of its setup or teardown
(``CORALPI_TESTFLEET_PAUSE_AT``), sends the signal the way CI does (to the pytest process, or
to its whole process group as ``timeout`` does; plain or under xdist), and checks that the
child exits and that nothing the fleet recorded remains: namespaces, veths, bridge, its
processes and guardian, the xdist worker, qemu registration, mounts, the registry entry.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testfleet import Fleet, HostSpec
from testfleet.binfmt import BINFMT, can_emulate, entry_name, leftover_entries
from testfleet.fleet import PAUSE_ENV
from testfleet.network import link_names, netns_names
from testfleet.paths import RUN_DIR
from testfleet.procs import ProcRecord, start_time
from testfleet.rootfs import mounts_under

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_ENV = "CORALPI_TESTFLEET_SIGNAL_CHILD"
MakeFleet = Callable[..., Fleet]
XDIST = ("-n", "2", "--dist", "loadfile")  # as the suite runs in CI
#: pytest with SIGINT as from a terminal, even if this run inherited it ignored (a job in
#: the background of a script).
CHILD_MAIN = (
    "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.exit(pytest.main(sys.argv[1:]))"
)
#: A command that needs a moment to clean up after SIGTERM (like an image build unmounting
#: its card); $0 is a directory where it says it is ready, then that it cleaned up.
CLEANING_COMMAND = (
    'trap \'sleep 2; : > "$0/cleaned"; exit 143\' TERM; sleep 100 & : > "$0/ready"; wait'
)


def child_holds_a_fleet(make_fleet: MakeFleet) -> None:
    """Runs in the child pytest only: bring the fleet up, say so, wait for the signal."""
    spec = json.loads(os.environ[CHILD_ENV])
    directory = Path(spec["dir"])
    fleet = make_fleet("held", hosts=[HostSpec(*h) for h in spec["hosts"]])
    up = {"pid": os.getpid(), "workdir": str(fleet.workdir)}
    (directory / "up.json").write_text(json.dumps(up))
    if spec["command"]:
        subprocess.run(["sh", "-c", CLEANING_COMMAND, str(directory)], timeout=120, check=False)
        pytest.fail("no signal came")
    if spec["hold"]:
        time.sleep(120)
        pytest.fail("no signal came")


@dataclass(frozen=True)
class Case:
    id: str
    sig: signal.Signals
    #: Step of setup or teardown to signal at (testfleet.fleet.PAUSE_STEPS); None: the test
    #: runs with the fleet up.
    pause: str | None = None
    arch: str = "amd64"
    xdist: tuple[str, ...] = ()
    #: Signal the child's whole process group (as timeout(1) does), not just pytest.
    group: bool = False
    #: pytest's exit status (2: interrupted); negative: killed by that signal.
    status: int = 2
    #: Who tears the fleet down: its owner (the signal unwinds the child), its guardian (the
    #: owner died first), or either (an xdist worker may be killed by its controller).
    by: str = "owner"
    #: The test is waiting for CLEANING_COMMAND when the signal comes.
    command: bool = False


CASES = [
    Case("sigterm-in-test", signal.SIGTERM),
    Case("sigint-in-test", signal.SIGINT),
    Case("sigterm-xdist-group", signal.SIGTERM, xdist=XDIST, group=True),
    # The command the test waits for gets to finish its own cleanup first.
    Case("sigterm-group-test-waits-on-a-command", signal.SIGTERM, group=True, command=True),
    Case("sigint-xdist-group", signal.SIGINT, xdist=XDIST, group=True),
    # xdist stops the worker: it SIGINTs itself 5 s later, and is killed 5 s after that.
    Case("sigterm-xdist-controller-only", signal.SIGTERM, xdist=("-n", "1"), by="either"),
    Case("sigterm-setup-after-binfmt", signal.SIGTERM, pause="binfmt", arch="arm64"),
    Case("sigint-setup-hosts-started", signal.SIGINT, pause="hosts"),
    Case("sigterm-xdist-setup-network", signal.SIGTERM, pause="network", xdist=XDIST, group=True),
    Case("sigterm-during-teardown", signal.SIGTERM, pause="teardown"),
    # No handler runs: the fleet's guardian tears it down.
    Case("sigkill-in-test", signal.SIGKILL, status=-signal.SIGKILL, by="guardian"),
]


def _child_env(directory: Path, case: Case) -> dict[str, str]:
    # Nothing of this run's own pytest or xdist settings (PYTEST_ADDOPTS, PYTEST_XDIST_*).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != PAUSE_ENV}
    spec = {
        "dir": str(directory),
        "hosts": [["s1", "bookworm", case.arch]],
        "hold": case.pause is None,
        "command": case.command,
    }
    env[CHILD_ENV] = json.dumps(spec)
    if case.pause:
        env[PAUSE_ENV] = case.pause
    return env


def _wait_for(child: subprocess.Popen[bytes], log: Path, found: Callable[[], Path | None]) -> Path:
    deadline = time.monotonic() + 120
    while (path := found()) is None:
        assert child.poll() is None, f"child exited early ({child.returncode}):\n" + _tail(log)
        assert time.monotonic() < deadline, "child fleet did not get there:\n" + _tail(log)
        time.sleep(0.05)
    return path


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _leftovers(state: dict[str, Any], pids: list[tuple[int, int]], wait: float) -> list[str]:
    """What of the fleet is still there (given up to `wait` seconds to go)."""
    workdir = Path(state["workdir"])
    names = {n for n in [*state["netns"], *state["veths"], state["bridge"]] if n}
    deadline = time.monotonic() + wait
    while True:
        left = sorted(names & (set(netns_names()) | set(link_names())))
        left += [f"pid {pid}" for pid, started in pids if ProcRecord("", pid, started).alive()]
        left += [f"mount {m}" for m in mounts_under(workdir)]
        if state["binfmt"]:
            left += [f"binfmt {e}" for e in leftover_entries()]
        left += [str(p) for p in (RUN_DIR / f"fleet-{state['slot']}.json",) if p.exists()]
        left += [str(p) for p in (workdir / "state.json",) if p.exists()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """The child's basetemp: under tmp_path, the fleet's apt-cacher-ng socket path would be
    too long for a unix socket when both runs use xdist."""
    path = Path(tempfile.mkdtemp(prefix="cpsig-"))
    yield path
    if not mounts_under(path):
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_signal_leaves_no_fleet_behind(
    fleet_support: None, tmp_path: Path, short_tmp: Path, case: Case
) -> None:
    if not can_emulate(case.arch):
        pytest.skip(f"{case.arch} hosts need qemu-user-static")
    basetemp = short_tmp / "child"
    log = tmp_path / "child.log"
    argv = [
        sys.executable,
        "-c",
        CHILD_MAIN,
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "python_functions=child_*",
        "--basetemp",
        str(basetemp),
        *case.xdist,
        f"{Path(__file__).resolve()}::child_holds_a_fleet",
    ]
    start = time.monotonic()
    with log.open("wb") as out:
        child = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=_child_env(tmp_path, case),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to signal like timeout(1) does
        )
    try:
        if case.pause is None:
            up = json.loads(
                _wait_for(child, log, lambda: _exists(tmp_path / "up.json")).read_text()
            )
            workdir = Path(up["workdir"])
            extra = [(up["pid"], start_time(up["pid"]))]
            if case.command:
                _wait_for(child, log, lambda: _exists(tmp_path / "ready"))
        else:
            paused = _wait_for(child, log, lambda: _paused(basetemp))
            assert paused.read_text().strip() == case.pause
            workdir = paused.parent
            extra = []
        state = json.loads((workdir / "state.json").read_text())
        pids = [(p["pid"], p["start_time"]) for p in [*state["procs"], state["guardian"]]]
        pids += [p for p in extra if p[1] is not None]
        # What was made so far is really there when the signal comes.
        assert set(state["netns"]) <= set(netns_names())
        assert all(ProcRecord("", pid, started).alive() for pid, started in pids)
        if case.arch != "amd64":
            assert (BINFMT / entry_name(case.arch)).exists()
        signalled = time.monotonic()
        if case.group:
            os.killpg(child.pid, case.sig)
        else:
            child.send_signal(case.sig)
        status = child.wait(timeout=60)
        exited = time.monotonic()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    print(f"{case.id}: signal after {signalled - start:.1f}s, exit {exited - signalled:.1f}s later")
    assert status == case.status, _tail(log)
    # Under load the guardian may only start once xdist has killed the worker (up to 15 s),
    # and the kernel ends a network namespace asynchronously: give it time.
    guard_log = workdir / "guard.log"
    why = (
        _tail(log)
        + "\nguard.log:\n"
        + (guard_log.read_text()[-2000:] if guard_log.exists() else "")
    )
    assert _leftovers(state, pids, wait=60) == [], why
    if case.command:
        assert (tmp_path / "cleaned").exists(), "the command was killed before it cleaned up"
    guardian_acted = "owner gone" in (workdir / "guard.log").read_text()
    if case.by != "either":
        assert guardian_acted == (case.by == "guardian"), _tail(log)


def _exists(path: Path) -> Path | None:
    return path if path.exists() else None


def _paused(basetemp: Path) -> Path | None:
    # make_fleet's mktemp("held"); under xdist each worker has its own basetemp below.
    for candidate in [*basetemp.glob("held0/paused"), *basetemp.glob("*/held0/paused")]:
        return candidate
    return None


KEEP_CHILD = """
import json, sys
from pathlib import Path
from testfleet import Fleet, HostSpec
fleet = Fleet(Path(sys.argv[1]), hosts=[HostSpec("pk1", "bookworm")])
fleet.up()
fleet.keep()  # what `make demo KEEP=1` does before it exits
print(json.dumps({"ssh": fleet.ssh_command("pk1", "cat /etc/hostname")}))
"""


def test_a_kept_fleet_outlives_its_process_until_down(fleet_support: None, short_tmp: Path) -> None:
    """Brought up, kept, the process exits: the host still answers over SSH (neither the
    exit nor the guardian tore it down); `python -m testfleet down WORKDIR` then ends all."""
    workdir = short_tmp / "kept"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", KEEP_CHILD, str(workdir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    state = json.loads((workdir / "state.json").read_text())
    pids = [(p["pid"], p["start_time"]) for p in state["procs"]]
    try:
        ssh = json.loads(child.stdout)["ssh"]
        time.sleep(1)  # a teardown at exit or by the guardian would have started by now
        reached = subprocess.run(ssh, capture_output=True, text=True, timeout=60, check=False)
        assert reached.returncode == 0 and reached.stdout.strip(), reached.stderr
        assert "keeps the fleet up" in (workdir / "guard.log").read_text()
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "testfleet", "down", str(workdir)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env,
            timeout=300,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert _leftovers(state, pids, wait=15) == []
