"""The fleet report: one row per host, as a rich table on a terminal, JSON for machines,
a page to look at (``report.html``, :mod:`provision.fleet.report_html`) and Markdown for CI
job summaries. Every form is made from the redacted JSON."""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provision import files
from provision.fleet.report_html import render_html
from provision.planning.plan import Plan
from provision.redaction import redact


@dataclass
class HostReport:
    """Everything the report says about one host."""

    host: str
    status: str = "ok"  # ok | failed | unreachable | interrupted
    board: str | None = None
    os: str = ""
    arch: str = ""
    runtime: str = ""
    python_runtime: str = ""
    changed: int | None = None
    failed_task: str = ""
    message: str = ""
    smoke: str = ""
    smoke_device: str = ""
    latency_ms: float | None = None  # the median
    latency_first_ms: float | None = None
    latency_p95_ms: float | None = None
    #: What verify expects for this board, device and link (verify.expected), if known.
    expected_ms: float | None = None
    #: verify's drift check when it is not clean: what differs from the plan / lock.
    drift: str = ""
    failed_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Tasks that changed the host (in check mode: would change), and their diffs (--diff).
    changes: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    #: The running kernel (`uname -r`) and the installed kernel, headers and driver
    #: packages with their versions (gasket-dkms, linux-image-*, linux-headers-*), as
    #: verify read them on the host: what a later upgrade is compared against.
    kernel: str = ""
    kernel_packages: dict[str, str] = field(default_factory=dict)

    def absorb_plan(self, plan: Plan) -> None:
        target = plan.target
        self.board = target.board
        self.os = f"{target.os_id} {target.codename}"
        self.arch = target.arch
        self.runtime = f"{plan.runtime.package} {plan.runtime.version}"
        self.python_runtime = f"{plan.python_runtime.package} {plan.python_runtime.version}"

    def absorb_verify(self, verify: Mapping[str, Any]) -> None:
        """Fold in the JSON that `python -m verify --json` printed on the host."""
        for check in verify.get("checks", []):
            label = f"{check.get('name')}: {check.get('detail', '')}".strip()
            if check.get("name") == "drift" and check.get("status") in ("warn", "fail"):
                self.drift = str(check.get("detail", ""))
            if check.get("status") == "fail":
                self.failed_checks.append(label)
            elif check.get("status") == "warn":
                self.warnings.append(label)
        host_facts = verify.get("facts")
        if isinstance(host_facts, Mapping):
            self.kernel = str(host_facts.get("kernel") or "")
            packages = host_facts.get("kernel_packages")
            if isinstance(packages, Mapping):
                self.kernel_packages = {str(k): str(v) for k, v in sorted(packages.items())}
        smoke = verify.get("smoke")
        if isinstance(smoke, Mapping):
            top = smoke.get("top") or []
            if top:
                self.smoke = f"{top[0].get('label')} {float(top[0].get('score', 0.0)):.2f}"
            self.smoke_device = str(smoke.get("device", ""))
            latency = smoke.get("latency_ms") or {}
            self.latency_ms = _ms(latency.get("median"))
            self.latency_first_ms = _ms(latency.get("first"))
            self.latency_p95_ms = _ms(latency.get("p95"))
            self.expected_ms = _ms(smoke.get("expected_ms"))
        if self.failed_checks and self.status == "ok":
            self.status = "failed"
            self.failed_task = "verify"
            self.message = self.failed_checks[0]


def _ms(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


@dataclass
class FleetReport:
    """The whole run: one HostReport per host, plus where the logs are."""

    command: str
    run_dir: Path
    hosts: dict[str, HostReport] = field(default_factory=dict)
    #: Name of the signal that stopped the run (SIGINT: Ctrl-C), or None.
    interrupted: str | None = None
    #: `--check`: nothing was changed; each host's `changes` is what would change.
    check_mode: bool = False
    created: str = field(default_factory=lambda: _dt.datetime.now().isoformat(timespec="seconds"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetReport:
        """A report as `to_dict` wrote it (`coralpi report` renders kept runs again)."""
        known = {f.name for f in fields(HostReport)}
        hosts = {
            str(h["host"]): HostReport(**{k: v for k, v in h.items() if k in known})
            for h in data.get("hosts", [])
        }
        return cls(
            command=str(data.get("command", "")),
            run_dir=Path(str(data.get("run_dir", "."))),
            hosts=hosts,
            interrupted=data.get("interrupted"),
            check_mode=bool(data.get("check_mode", False)),
            created=str(data.get("created", "")),
        )

    def host(self, name: str) -> HostReport:
        if name not in self.hosts:
            self.hosts[name] = HostReport(name)
        return self.hosts[name]

    @property
    def failed(self) -> list[str]:
        return sorted(n for n, h in self.hosts.items() if h.status != "ok")

    def mark_interrupted(self, signal_name: str, planned: list[str]) -> None:
        """The run was stopped: every planned host without a result of its own is
        `interrupted` (failed and unreachable hosts keep their status)."""
        self.interrupted = signal_name
        for name in planned:
            row = self.host(name)
            if row.status == "ok":
                row.status = "interrupted"
                row.failed_task = row.failed_task or "before it started"
                row.message = row.message or "run interrupted; run the same command again"

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "run_dir": str(self.run_dir),
            "ok": not self.failed and self.interrupted is None,
            "interrupted": self.interrupted,
            "check_mode": self.check_mode,
            "created": self.created,
            "failed_hosts": self.failed,
            "hosts": [asdict(self.hosts[n]) for n in sorted(self.hosts)],
        }

    def to_json(self) -> str:
        """The report as JSON, with any password in a URL replaced by ***."""
        return redact(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    def save(self) -> Path:
        """Write ``report.json`` and, beside it, ``report.html``."""
        path = self.run_dir / "report.json"
        text = self.to_json()
        files.write_atomic(path, (text + "\n").encode(), 0o600)
        page = render_html(json.loads(text))
        files.write_atomic(self.run_dir / "report.html", page.encode(), 0o600)
        return path


def render(report: FleetReport, as_json: bool, stream: TextIO | None = None) -> None:
    """Print the report: JSON with --json, a table on a terminal, plain lines otherwise."""
    out = stream or sys.stdout
    if as_json:
        print(report.to_json(), file=out)
        return
    mode = " --check (nothing was changed)" if report.check_mode else ""
    table = Table(title=f"coralpi {report.command}{mode}: fleet report")
    for column in (
        "host",
        "status",
        "board",
        "os/arch",
        "runtime",
        "python runtime",
        "smoke",
        "ms",
    ):
        table.add_column(column)
    for name in sorted(report.hosts):
        h = report.hosts[name]
        status = h.status if h.status == "ok" else f"{h.status}: {h.failed_task}"
        smoke = f"{h.smoke} ({h.smoke_device})" if h.smoke else ""
        table.add_row(
            *(
                escape(redact(cell))
                for cell in (
                    name,
                    status,
                    h.board or "not a Pi",
                    f"{h.os}/{h.arch}",
                    h.runtime,
                    h.python_runtime,
                    smoke,
                    f"{h.latency_ms:.1f}" if h.latency_ms is not None else "",
                )
            )
        )
    console = Console(file=out, width=None if out.isatty() else 160)
    console.print(table)
    for name in report.failed:
        h = report.hosts[name]
        console.print(f"[red]{name}[/]: " + escape(redact(f"{h.failed_task}: {h.message}")))
    for name in sorted(report.hosts):
        for warning in report.hosts[name].warnings:
            console.print(f"[yellow]{name}[/] warn: " + escape(redact(warning)))
    if report.check_mode:
        for name in sorted(report.hosts):
            h = report.hosts[name]
            what = ", ".join(h.changes) if h.changes else "nothing"
            console.print(f"[cyan]{name}[/] would change: " + escape(redact(what)))
            for diff in h.diffs:
                console.print(escape(redact(diff)), highlight=False)
    console.print(f"Logs and event stream: {escape(str(report.run_dir))}")


def render_markdown(report: FleetReport) -> str:
    """The report as a Markdown table (for CI job summaries)."""
    data = json.loads(report.to_json())
    mode = " (check mode: nothing was changed)" if data["check_mode"] else ""
    verdict = "all hosts ok" if data["ok"] else f"failed: {', '.join(data['failed_hosts'])}"
    lines = [
        f"### coralpi {data['command']}{mode}: {verdict}",
        "",
        "| host | status | board | os/arch | runtime | python runtime | smoke | median ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in data["hosts"]:
        status = h["status"] if h["status"] == "ok" else f"{h['status']}: {h['failed_task']}"
        median = f"{h['latency_ms']:.1f}" if h["latency_ms"] is not None else ""
        smoke = f"{h['smoke']} ({h['smoke_device']})" if h["smoke"] else ""
        cells = [h["host"], status, h["board"] or "not a Pi", f"{h['os']}/{h['arch']}"]
        cells += [h["runtime"], h["python_runtime"], smoke, median]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for h in data["hosts"]:
        if h["status"] != "ok" and h["message"]:
            lines.append(f"\n**{h['host']}**: {h['failed_task']}: {h['message']}")
    return "\n".join(lines) + "\n"
