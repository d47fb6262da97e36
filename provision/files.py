"""Files several coralpi processes may touch at once: advisory locks and atomic writes.

Two `coralpi lock`, `fetch` or `apply` on one cache or one lock file run side by side: each
read-modify-write of a shared file happens under :func:`locked` (``flock(2)`` on a sidecar
``<name>.lock``, released by the kernel when a process dies, so a killed run never leaves
a lock held), and every file others read is replaced whole (:func:`write_atomic`), so a
reader sees the old bytes or the new ones, never half.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock that guards ``path`` (waiting for other holders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one step (a temporary file beside it, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
