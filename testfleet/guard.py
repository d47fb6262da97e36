"""A fleet's guardian: tears the fleet down if the process that owns it dies first.

Signals the owner can catch end in its own teardown (:mod:`testfleet.interrupts`); this
covers the rest: SIGKILL (``timeout -k``, an xdist controller killing a worker that did not
stop in time), ``os._exit`` (xdist workers after their grace period), a crash.

A fleet starts its guardian (Popen, its own session, so signals sent to the test run's
process group do not reach it) right after recording its slot, and records its PID in the
state file. The guardian inherits the slot's lock, so nobody takes the slot before it is
clean, and waits on a pipe from its owner. The owner writes ``done`` into it after tearing
the fleet down itself. If the pipe closes without that, the owner is gone: the guardian
tears down what the state file records (only recorded PIDs, only recorded names), removes
the qemu registration if no fleet still uses it, and exits.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .binfmt import remove_unused_registration
from .errors import FleetError
from .procs import ProcRecord
from .state import FleetState, teardown

READY = b"ready\n"
DONE = b"done\n"
#: The owner leaves the fleet up on purpose (`make demo KEEP=1`): `down WORKDIR` ends it.
KEEP = b"keep\n"

#: The guardian's program (not ``-m testfleet.guard``: the package imports this module).
_MAIN = "import sys; from testfleet.guard import main; sys.exit(main(sys.argv[1:]))"

#: The directory that holds the testfleet package (on the guardian's PYTHONPATH).
_PACKAGE_PARENT = Path(__file__).resolve().parents[1]


@dataclass
class Guardian:
    """A running guardian and its record."""

    popen: subprocess.Popen[bytes]
    record: ProcRecord


def start(state_path: Path, log: Path, keep_fds: Sequence[int]) -> Guardian:
    """Start the guardian of the fleet whose state is at state_path (returns at once; call
    :func:`wait_ready` before creating anything machine-wide)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p
    )
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-c", _MAIN, str(state_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=out,
            pass_fds=tuple(keep_fds),
            start_new_session=True,
            cwd="/",
            env=env,
        )
    return Guardian(popen, ProcRecord.of("guardian", popen.pid))


def wait_ready(guardian: Guardian, timeout: float = 30) -> None:
    """Wait until the guardian watches its pipe."""
    assert guardian.popen.stdout is not None
    fd = guardian.popen.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise FleetError(f"the fleet's guardian (pid {guardian.record.pid}) did not start")
        chunk = os.read(fd, 64)
        if not chunk:
            break
        line += chunk
    guardian.popen.stdout.close()
    if line != READY:
        raise FleetError(f"the fleet's guardian failed to start: {line!r}; see guard.log")


def release(guardian: Guardian, message: bytes = DONE) -> None:
    """Tell the guardian the owner has torn the fleet down (or, with :data:`KEEP`, leaves it
    up on purpose); wait for it to exit."""
    popen = guardian.popen
    assert popen.stdin is not None
    try:
        popen.stdin.write(message)
        popen.stdin.close()
    except OSError:
        pass  # it is gone already
    try:
        popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        guardian.record.signal(signal.SIGKILL)
        popen.wait(timeout=10)


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} guardian {os.getpid()}: {message}", file=sys.stderr)


def main(argv: list[str]) -> int:
    """Guard the fleet whose state file is argv[0]."""
    # Not in the test run's process group or terminal session; SIGTERM by PID still ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state_path = Path(argv[0])
    os.write(1, READY)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    message = sys.stdin.buffer.read()
    if message == DONE:
        return 0
    if message == KEEP:
        _log("the owner keeps the fleet up; `python -m testfleet down` tears it down")
        return 0
    _log("owner gone without tearing the fleet down; tearing it down from its state file")
    try:
        state = FleetState.load(state_path)
    except FileNotFoundError:
        _log("no state file: nothing was recorded, nothing to do")
        return 0
    problems = teardown(state)
    if state.binfmt and not remove_unused_registration():
        _log("qemu registration kept: another fleet uses it")
    if problems:
        _log(f"problems: {problems}")
        state.save()
        return 2
    state.path.unlink(missing_ok=True)
    _log("fleet torn down")
    return 0
