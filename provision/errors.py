"""The one exception hierarchy of the controller.

Library code raises these; only :mod:`provision.cli` turns them into exit codes
(0 ok, 1 usage / configuration / unsupported target, 2 a check or host failed).
"""

from __future__ import annotations


class CoralpiError(Exception):
    """Base of every error coralpi raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code: int = 1

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
