"""Gathering the facts that decide each host's plan, through `playbooks/probe.yml`.

The probe play is read-only: it gathers a minimal fact set plus the glibc version and the
board model and writes one JSON file per host into the run directory on the controller.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.driver.runner import HostProgress, RunResult, run_playbook
from provision.tools import playbook


@dataclass
class ProbeResult:
    """Facts per reachable host, and why each other host could not be probed."""

    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    run: RunResult | None = None


def probe_hosts(
    inventory: Path,
    run_dir: Path,
    limit: str | None = None,
    extravars: Mapping[str, Any] | None = None,
    on_change: Callable[[HostProgress, str], None] | None = None,
    *,
    verbosity: int = 0,
    forks: int = 20,
) -> ProbeResult:
    """Run the probe play; unreachable or failing hosts are reported, not raised.
    ``extravars``: the run's ``-e`` values (connection settings reach the probe too);
    ``verbosity`` and ``forks``: ansible-playbook's ``-v`` count and ``--forks``."""
    out_dir = run_dir / "probe"
    out_dir.mkdir(parents=True, exist_ok=True)
    run = run_playbook(
        playbook("probe.yml"),
        inventory,
        run_dir,
        extravars={**(extravars or {}), "coralpi_probe_dir": str(out_dir)},
        limit=limit,
        on_change=on_change,
        ident="probe",
        verbosity=verbosity,
        forks=forks,
    )
    result = ProbeResult(run=run)
    for name, progress in run.hosts.items():
        path = out_dir / f"{name}.json"
        if progress.status == "ok" and path.exists():
            result.facts[name] = json.loads(path.read_text())
        else:
            reason = progress.message or "no facts were gathered"
            result.failed[name] = f"{progress.status}: {reason}"
    return result
