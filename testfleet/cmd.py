"""Running commands and holding file locks, with errors that say what failed.

Every command runs in its own session (process group), so an interrupted one is ended with
everything it started: its group, by the PID of the child we started, never by name.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from . import interrupts
from .errors import FleetError

#: How often a worker thread waiting on a command or a lock checks for an interrupt.
POLL_SECONDS = 0.1


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text; raise FleetError on failure if check.

    Interrupted (a signal in the main thread, or :func:`interrupts.cancelled` in a worker
    thread), the command's process group is killed and reaped before the error propagates.
    """
    argv = [os.fspath(a) for a in args]
    full_env = None if env is None else {**os.environ, **env}
    with interrupts.deferred():  # no child may start without us holding its Popen
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if input_text is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise FleetError(f"{argv[0]}: {exc}") from exc
    try:
        stdout, stderr = _communicate(proc, argv[0], input_text, timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise FleetError(f"{argv[0]}: {exc}") from exc
    except BaseException:
        _kill_group(proc)
        raise
    if check and proc.returncode != 0:
        tail = (stderr or stdout).strip().splitlines()[-15:]
        raise FleetError(
            f"command failed (exit {proc.returncode}): {' '.join(argv)}\n" + "\n".join(tail)
        )
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _communicate(
    proc: subprocess.Popen[str], name: str, input_text: str | None, timeout: float | None
) -> tuple[str, str]:
    if threading.current_thread() is threading.main_thread():
        # A signal raises right here (interrupts), which ends the wait.
        return proc.communicate(input_text, timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    first = True
    # Stop a command the interrupt came during; one started after it (cleanup in a finally
    # block, e.g. stopping gpg-agent) runs to its end.
    running_before = not interrupts.cancelled()
    while True:
        if running_before and interrupts.cancelled():
            raise FleetError(f"{name}: stopped, the run was interrupted")
        step = POLL_SECONDS
        if deadline is not None:
            step = min(step, max(0.0, deadline - time.monotonic()))
        try:
            return proc.communicate(input_text if first else None, timeout=step)
        except subprocess.TimeoutExpired:
            first = False
            if deadline is not None and time.monotonic() >= deadline:
                raise


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the group of a child we started (its own session) and reap the child."""
    if proc.returncode is None:
        # Not reaped yet, so the group id (the child's PID) cannot have been reused.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with interrupts.deferred():
        proc.wait()  # not communicate(): a daemon it left behind may hold the pipes open
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on path (created if needed) for the duration of the block.

    Waiting for it can be interrupted: by a signal in the main thread, by
    :func:`interrupts.cancelled` in a worker thread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        worker = threading.current_thread() is not threading.main_thread()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if worker and interrupts.cancelled():
                    raise FleetError(
                        f"stopped waiting for {path}: the run was interrupted"
                    ) from None
                time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """Take an exclusive flock without waiting; return the open fd, or None if it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
