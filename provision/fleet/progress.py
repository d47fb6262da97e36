"""Live per-host progress while playbooks run: a rich table on a terminal, lines otherwise."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from provision.driver.runner import HostProgress
from provision.redaction import redact

_STYLE = {"ok": "green", "failed": "red", "unreachable": "red", "interrupted": "yellow"}


def progress_table(title: str, hosts: dict[str, HostProgress]) -> Table:
    """The live table: one row per host with its current role/task and counters."""
    table = Table(title=title, expand=False)
    for column in ("host", "status", "ok", "changed", "failed", "current task"):
        table.add_column(column)
    for name in sorted(hosts):
        h = hosts[name]
        current = h.current
        if h.status != "ok":
            current = f"{h.failed_task}: {h.message}"
        table.add_row(
            escape(name),
            f"[{_STYLE.get(h.status, 'red')}]{h.status}[/]",
            str(h.ok),
            str(h.changed),
            str(h.failed),
            escape(redact(current)[:90]),
        )
    return table


@contextmanager
def live_progress(
    title: str, stream: TextIO | None = None, *, shown: bool = True
) -> Iterator[Callable[[HostProgress, str], None]]:
    """Yield an `on_change` callback for `run_playbook` that shows progress as it comes.

    Progress goes to stderr, so stdout carries only the report (`--json` stays parseable).
    ``shown=False`` (``-v``: Ansible's own output is the progress then) shows nothing.
    """
    out = stream or sys.stderr
    hosts: dict[str, HostProgress] = {}
    lock = threading.Lock()
    if not shown:
        yield lambda progress, what: None
        return
    if out.isatty():
        console = Console(file=out)
        with Live(progress_table(title, hosts), console=console, refresh_per_second=4) as live:

            def on_change(progress: HostProgress, what: str) -> None:
                with lock:
                    hosts[progress.name] = progress
                    live.update(progress_table(title, hosts))

            yield on_change
        return

    def print_line(progress: HostProgress, what: str) -> None:
        if what == "start":
            return
        line = f"[{progress.name}] {what:<11} {progress.current}"
        if what in {"failed", "unreachable"}:
            line += f" -- {progress.message}"
        with lock:
            print(redact(line), file=out, flush=True)

    yield print_line
