"""SIGTERM and SIGINT while a fleet lives: unwind, so every fleet is torn down.

Python turns SIGINT into KeyboardInterrupt, but SIGTERM (what ``timeout``, a CI time limit or
a cancelled job sends) kills the process outright: no ``finally`` block, fixture finalizer or
atexit handler runs, and the fleet's namespaces, bridge, processes and qemu registration stay.
While a fleet is up (and for a whole pytest session, see the conftest files) both signals
raise KeyboardInterrupt where the main thread is, so the stack unwinds through every
teardown; pytest treats it as Ctrl-C (it stops, runs the finalizers, exits with status 2).

Refinements that make this safe at any point:

- ``with deferred():`` marks a step that must not be cut in half (start a process and record
  its PID; tear a fleet down). A signal arriving inside it is held and raised when the
  outermost such block ends.
- Once one signal has been raised, further ones are absorbed while the process unwinds (a CI
  runner may send SIGINT, then SIGTERM; xdist workers signal themselves when the controller
  leaves), so a second signal cannot cut a teardown short. SIGKILL still ends the process at
  once; each fleet's guardian (:mod:`testfleet.guard`) then tears it down.
- A child in our process group that the main thread is waiting for (``subprocess.run``) got
  the signal too when it went to the group (a terminal's Ctrl-C, ``timeout``) and may have
  its own cleanup to do (an image build unmounting its card): it gets CHILD_GRACE seconds to
  exit by itself before subprocess kills it, instead of CPython's 0.25 s.
- Worker threads cannot be interrupted; commands they run through :func:`testfleet.cmd.run`
  stop once a signal came (:func:`cancelled`).

Handlers are installed only in the main thread, only over the defaults (a program's own
SIGTERM or SIGINT handler, or an ignored signal, is left alone), and the previous ones are
put back when the last user releases them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: Seconds a child the main thread waits for gets to finish by itself after the signal.
CHILD_GRACE = 30.0

Handler = Callable[[int, FrameType | None], Any] | int | None

_users = 0
_previous: dict[int, Handler] = {}
_depth = 0
_pending: int | None = None
_raised: int | None = None
_cancel = threading.Event()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _is_default(sig: signal.Signals, handler: Handler) -> bool:
    if sig == signal.SIGINT:
        return handler is signal.default_int_handler
    return handler == signal.SIG_DFL


def _interrupt(signum: int) -> KeyboardInterrupt:
    # A plain KeyboardInterrupt: subprocess, pytest and others treat it exactly as Ctrl-C.
    return KeyboardInterrupt(f"interrupted by {signal.Signals(signum).name}")


def _handle(signum: int, frame: FrameType | None) -> None:
    global _pending, _raised
    _cancel.set()
    if _raised is not None:
        note = f"testfleet: {signal.Signals(signum).name} ignored, already tearing down\n"
        os.write(2, note.encode())
        return
    if _depth > 0:
        _pending = _pending or signum
        return
    _raised = signum
    _give_awaited_child_time(frame)
    raise _interrupt(signum)


def _give_awaited_child_time(frame: FrameType | None) -> None:
    """If the main thread is inside a subprocess.Popen wait for a child of our process
    group, let that wait run on for up to CHILD_GRACE seconds once interrupted."""
    while frame is not None:
        if frame.f_code.co_filename == subprocess.__file__:
            popen = frame.f_locals.get("self")
            if isinstance(popen, subprocess.Popen) and popen.returncode is None:
                try:
                    same_group = os.getpgid(popen.pid) == os.getpgrp()
                except OSError:
                    return
                # CPython's per-Popen wait after a KeyboardInterrupt (0 once it was used).
                if same_group and getattr(popen, "_sigint_wait_secs", 0) > 0:
                    setattr(popen, "_sigint_wait_secs", CHILD_GRACE)  # noqa: B010
                return
        frame = frame.f_back


def acquire() -> bool:
    """Install the handlers (first user) or count one more user; False outside the main
    thread, where handlers cannot be installed (then do not call :func:`release`)."""
    global _users, _pending, _raised
    if not _in_main_thread():
        return False
    if _users == 0:
        _raised = None  # a new start: what earlier users saw is over
        if _depth == 0:
            _pending = None
        _cancel.clear()
        for sig in SIGNALS:
            current = signal.getsignal(sig)
            if _is_default(sig, current):
                _previous[sig] = current
                signal.signal(sig, _handle)
    _users += 1
    return True


def release() -> None:
    """One user fewer; the last one puts the previous handlers back (a signal held by a
    deferred block that is still open is raised when it ends, as before)."""
    global _users
    if _users == 0:
        return
    _users -= 1
    if _users:
        return
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()
    _cancel.clear()


def pending() -> bool:
    """True while a signal is held by a deferred block."""
    return _pending is not None


def cancelled() -> bool:
    """True once SIGTERM or SIGINT arrived (worker threads stop their commands)."""
    return _cancel.is_set()


def deferred() -> _Deferred:
    """``with deferred():`` holds SIGTERM/SIGINT for the duration of the block (main thread;
    elsewhere a no-op); a held signal is raised when the outermost such block ends."""
    return _Deferred()


class _Deferred:
    def __init__(self) -> None:
        self._counted = False

    def __enter__(self) -> None:
        global _depth
        if _in_main_thread():
            _depth += 1
            self._counted = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _depth, _pending, _raised
        if not self._counted:
            return
        _depth -= 1
        if _depth or _pending is None:
            return
        signum, _pending = _pending, None
        if _raised is not None:
            return
        _raised = signum
        if isinstance(exc, KeyboardInterrupt):
            return  # already unwinding for an interrupt: let that one go on
        raise _interrupt(signum)
