"""Processes the fleet starts, recorded by PID and start time, ended by PID.

The start time (field 22 of /proc/PID/stat) guards against PID reuse: a recorded process is
only signalled if the PID still belongs to the same process. Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it start past the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def children(pid: int) -> list[int]:
    """Direct children of pid (from /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class ProcRecord:
    """One process the fleet started (or the namespace init under it)."""

    role: str
    pid: int
    start_time: int

    @classmethod
    def of(cls, role: str, pid: int) -> ProcRecord:
        started = start_time(pid)
        if started is None:
            raise ProcessLookupError(pid)
        return cls(role, pid, started)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start_time and not _is_zombie(self.pid)

    def signal(self, sig: signal.Signals) -> bool:
        """Send sig if the PID still names this process; True if it was sent."""
        if start_time(self.pid) != self.start_time:
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcRecord:
        return cls(str(data["role"]), int(data["pid"]), int(data["start_time"]))


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def wait_gone(records: list[ProcRecord], timeout: float) -> list[ProcRecord]:
    """Wait until none of records is alive; return those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    left = [r for r in records if r.alive()]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [r for r in left if r.alive()]
    return left
