"""Show the verify report: one JSON object, a rich table on a terminal, or plain text.

Every string of the report is cleaned first (`safetext`): what the system's files say can
neither drive the terminal nor forge report lines, in any of the three forms.
"""

from __future__ import annotations

import json
from typing import IO, Any

from .safetext import clean_tree

SYMBOL = {"pass": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(clean_tree(report), indent=2, sort_keys=False)


def _smoke_lines(smoke: dict[str, Any] | None) -> list[str]:
    if not smoke:
        return []
    runtime = smoke.get("runtime") or {}
    lines = [
        f"smoke test on {smoke.get('device') or 'nothing'} "
        f"({runtime.get('package') or '?'} {runtime.get('version') or '?'}, "
        f"{smoke.get('model') or 'no model'})"
    ]
    for entry in smoke.get("top") or []:
        lines.append(f"  {entry['score']:.5f}  {entry['label']}")
    latency = smoke.get("latency_ms")
    if latency:
        lines.append(
            f"  latency ms: first {latency['first']:.1f}, median "
            f"{latency['median']:.1f}, p95 {latency['p95']:.1f}"
        )
    if smoke.get("note"):
        lines.append("  " + smoke["note"])
    return lines


def _facts_line(facts: dict[str, Any]) -> str:
    return (
        f"{facts.get('os_id')} {facts.get('os_codename')} {facts.get('arch')}"
        f" | board: {facts.get('board') or 'not a Pi'}"
        f" | config.txt: {facts.get('boot_config') or '-'}"
    )


def render_plain(report: dict[str, Any], out: IO[str]) -> None:
    report = clean_tree(report)
    out.write(_facts_line(report.get("facts", {})) + "\n")
    checks = report.get("checks", [])
    width = max([len(c["name"]) for c in checks] + [4])
    for check in checks:
        out.write(f"{SYMBOL[check['status']]:<5} {check['name']:<{width}}  {check['detail']}\n")
        if check.get("fix") and check["status"] in ("fail", "warn"):
            out.write(f"{'':<5} {'':<{width}}  fix: {check['fix']}\n")
    for line in _smoke_lines(report.get("smoke")):
        out.write(line + "\n")
    out.write(f"result: {report.get('result')}\n")


def render_rich(report: dict[str, Any], out: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    report = clean_tree(report)
    console = Console(file=out)
    console.print(_facts_line(report.get("facts", {})), highlight=False, markup=False)
    table = Table(show_header=True, header_style="bold")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("fix", overflow="fold")
    for check in report.get("checks", []):
        status = check["status"]
        # details quote config.txt sections like [pi4]: plain Text, never markup
        table.add_row(
            check["name"],
            Text(status, style=STYLE[status]),
            Text(check["detail"]),
            Text(check["fix"] if status in ("fail", "warn") else ""),
        )
    console.print(table)
    for line in _smoke_lines(report.get("smoke")):
        console.print(line, highlight=False, markup=False)
    result = report.get("result")
    console.print(f"result: [{STYLE.get(str(result), 'bold')}]{result}[/]")


def render(report: dict[str, Any], out: IO[str], as_json: bool) -> None:
    if as_json:
        out.write(to_json(report) + "\n")
        return
    if out.isatty():
        try:
            render_rich(report, out)
            return
        except ImportError:
            pass
    render_plain(report, out)
