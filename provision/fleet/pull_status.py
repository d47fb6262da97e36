"""`coralpi status`: every Pi's last pull result (role coralpi_pull's last-pull.json) in the
fleet report, over SSH with `playbooks/pull_status.yml`; Pis that have not pulled for too
long are named (status ``stale``)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provision.driver.runner import run_playbook
from provision.fleet.report import FleetReport, HostReport
from provision.tools import playbook


def _when(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def host_row(
    name: str, last: Mapping[str, Any] | None, now: dt.datetime, stale_after: dt.timedelta
) -> HostReport:
    """One Pi's row: its last pull (ok | unchanged count as ok while fresh), the verify
    report of the run that converged it, and why not ok otherwise."""
    row = HostReport(name)
    if last is None:
        row.status, row.failed_task, row.message = "unreachable", "status", "no result read"
        return row
    if last.get("never_pulled"):
        row.status, row.failed_task = "failed", "never pulled"
        row.message = "no last-pull.json: run bootstrap.sh on the Pi (or check its timer)"
        return row
    verify = last.get("verify")
    if isinstance(verify, Mapping):
        facts = verify.get("facts") or {}
        row.os = f"{facts.get('os_id', '')} {facts.get('os_codename', '')}".strip()
        row.arch = str(facts.get("arch") or "")
        row.board = facts.get("board")
        row.absorb_verify(verify)
    row.changed = last.get("changed") if isinstance(last.get("changed"), int) else None
    commit = str(last.get("commit") or "")[:12]
    finished = _when(last.get("finished_at"))
    status = str(last.get("status", ""))
    if status == "failed":
        row.status, row.failed_task = "failed", "pull"
        good = (last.get("last_ok") or {}).get("commit") or "none"
        row.message = f"{last.get('message', '')} (last good commit {str(good)[:12]})"
    elif finished is None or now - finished > stale_after:
        row.status, row.failed_task = "stale", "pull"
        row.message = f"last pull {last.get('finished_at', 'unknown')}, more than {stale_after} ago"
    elif row.status == "ok":
        row.message = f"{status} at {last.get('finished_at')}, commit {commit}"
    return row


def gather(
    inventory: Path,
    run_dir: Path,
    *,
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    stale_after: dt.timedelta = dt.timedelta(hours=24),
    now: dt.datetime | None = None,
) -> FleetReport:
    out_dir = run_dir / "status"
    out_dir.mkdir(parents=True, exist_ok=True)
    run = run_playbook(
        playbook("pull_status.yml"),
        inventory,
        run_dir,
        extravars={**(extravars or {}), "coralpi_status_dir": str(out_dir)},
        limit=limit,
        ident="status",
    )
    report = FleetReport("status", run_dir)
    moment = now or dt.datetime.now(dt.UTC)
    for name, progress in sorted(run.hosts.items()):
        path = out_dir / f"{name}.json"
        last = json.loads(path.read_text()) if path.is_file() else None
        row = host_row(name, last, moment, stale_after)
        if last is None:
            row.status = "unreachable" if progress.status == "unreachable" else "failed"
            row.message = progress.message or row.message
        report.hosts[name] = row
    return report
