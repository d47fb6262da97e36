"""The one exception hierarchy of the controller.

Library code raises these; only :mod:`provision.cli` turns them into exit codes
(0 ok, 1 usage / configuration / unsupported target, 2 a check or host failed).
"""

from __future__ import annotations

import signal


class CoralpiError(Exception):
    """Base of every error coralpi raises on purpose. ``exit_code`` is what the CLI returns.
    An empty message means it was already told (e.g. the fleet report names the failed
    hosts); ``bare`` messages are printed without the ``coralpi:`` prefix."""

    exit_code: int = 1
    bare: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(CoralpiError):
    """An invalid user choice or input (inventory variable, CLI flag, malformed facts)."""


class UnsupportedTarget(CoralpiError):
    """No working plan exists for this host; ``nearest`` names a combination that works."""

    def __init__(
        self, message: str, nearest: str | None = None, alternatives: tuple[str, ...] = ()
    ) -> None:
        full = message
        if nearest is not None:
            full += f". Nearest working combination: {nearest}"
            if alternatives:
                full += f" (or {', or '.join(alternatives)})"
        super().__init__(full)
        self.nearest = nearest
        self.alternatives = alternatives


class HostFailed(CoralpiError):
    """A host or check failed while applying or verifying (exit code 2)."""

    exit_code = 2


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a time limit, a closed terminal), raised where the program is, so
    it unwinds like Ctrl-C: partial downloads removed, locks released, reports saved."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_of(exc: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt (SIGINT unless it is a :class:`Stopped`)."""
    return exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT)


class Interrupted(CoralpiError):
    """A run stopped by a signal: exit status 128 + the signal (130 for Ctrl-C, 143 for
    SIGTERM), as shells report it."""

    def __init__(self, message: str, signum: int, *, bare: bool = False) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
        self.bare = bare
