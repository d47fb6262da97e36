"""One fleet operation from inventory to report: probe, plan, fetch, run, gather.

`apply` and `verify` share every step but the playbook they run. Nothing touches a host
before every reachable host has a valid plan: bad variables and unsupported hosts stop the
run first (exit 1), naming each host and what to change.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from provision.artifacts.cache import ArtifactError
from provision.artifacts.lockfile import DEFAULT_LOCK_NAME
from provision.artifacts.service import (
    ArtifactSettings,
    HostArtifacts,
    ensure_host_artifacts,
    playbook_plan,
)
from provision.driver.playbook_tags import check_tags
from provision.driver.runner import HostProgress, RunInterrupted, RunResult, run_playbook
from provision.errors import ConfigError, signal_of
from provision.fleet.progress import live_progress
from provision.fleet.report import FleetReport
from provision.planning import run_wide
from provision.planning.inventory import InventoryHost, check_variables, load_inventory
from provision.planning.matrix import controller_supports
from provision.planning.plan import Plan
from provision.planning.probe import probe_hosts
from provision.planning.service import connection_vars, host_variables, plan_probed
from provision.planning.targets import choices_from_vars
from provision.tools import playbook


def default_runs_root() -> Path:
    """Where run directories go: $XDG_STATE_HOME/coralpi/runs (or ~/.local/state/...)."""
    override = os.environ.get("CORALPI_RUNS_DIR")
    if override:
        return Path(override)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "coralpi" / "runs"


def new_run_dir(command: str, root: Path | None = None) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = (root or default_runs_root()) / f"{stamp}-{command}"
    path.mkdir(parents=True, exist_ok=False)
    os.chmod(path, 0o700)
    return path


@dataclass
class FleetOptions:
    """What the user asked of one fleet operation."""

    inventory: Path
    limit: str | None = None
    check: bool = False
    diff: bool = False
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    runs_root: Path | None = None
    cache_dir: Path | None = None
    lock_file: Path | None = None
    retry_failed: bool = False
    #: ansible-playbook's -v count and --forks (the probe's and the playbook's).
    verbosity: int = 0
    forks: int = 20
    #: --tags / --skip-tags for apply's playbook (checked against the playbooks' tags).
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()


def check_choices(hosts: list[InventoryHost], extra: Mapping[str, Any]) -> None:
    """Refuse bad choices on any host before probing; every problem in one message."""
    check_variables("given with -e", {k: v for k, v in extra.items() if k.startswith("coralpi_")})
    problems = []
    for host in hosts:
        try:
            choices_from_vars(host_variables(host, extra))
        except ConfigError as exc:
            problems.append(f"host {host.name}: {exc}")
    if problems:
        raise ConfigError("invalid inventory variables:\n  " + "\n  ".join(problems))


def rollout_vars(hosts: list[InventoryHost], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Rolling-batch settings: play-level, so one value for the whole run (checked here;
    their kinds, batch and percent, were checked when the variables were read)."""
    return run_wide.rollout_vars(host_variables(h, extra) for h in hosts)


def take_controller_paths(options: FleetOptions, hosts: list[InventoryHost]) -> None:
    """--lock / --cache-dir, else the inventory's (or -e's) coralpi_lock / coralpi_cache_dir,
    else ./coralpi.lock when it exists (the lock) and the default cache."""
    per_host = [host_variables(h, options.extra_vars) for h in hosts]
    options.lock_file = run_wide.controller_path("coralpi_lock", options.lock_file, per_host)
    if options.lock_file is None and Path(DEFAULT_LOCK_NAME).exists():
        options.lock_file = Path(DEFAULT_LOCK_NAME)
    options.cache_dir = run_wide.controller_path("coralpi_cache_dir", options.cache_dir, per_host)


def plan_hosts(
    hosts: list[InventoryHost], facts: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Any]
) -> dict[str, Plan]:
    """Resolve a plan per probed host; any refusal aborts with every host's reason."""
    plans: dict[str, Plan] = {}
    problems = []
    for planned in plan_probed(hosts, facts, extra):
        if not planned.probed:
            continue  # the report already says why
        error = planned.error
        if planned.plan is not None:
            ok, why = controller_supports(planned.plan, metadata.version("ansible-core"))
            if ok:
                plans[planned.name] = planned.plan
                continue
            error = why
        problems.append(f"host {planned.name}: {error}")
    if problems:
        raise ConfigError(
            "no host was touched; these cannot be provisioned:\n  " + "\n  ".join(problems)
        )
    return plans


def _settings_for(
    host: InventoryHost, extra: Mapping[str, Any], options: FleetOptions
) -> ArtifactSettings:
    return ArtifactSettings.from_vars(
        host_variables(host, extra), cache_dir=options.cache_dir, lock_file=options.lock_file
    )


def _run(
    title: str,
    book: str,
    options: FleetOptions,
    run_dir: Path,
    extravars: Mapping[str, Any],
    limit: str,
    ident: str,
) -> RunResult:
    with live_progress(title, shown=not options.verbosity) as on_change:
        return run_playbook(
            playbook(book),
            options.inventory,
            run_dir,
            extravars=extravars,
            limit=limit,
            check=options.check,
            diff=options.diff,
            forks=options.forks,
            on_change=on_change,
            ident=ident,
            verbosity=options.verbosity,
            tags=options.tags,
            skip_tags=options.skip_tags,
        )


def _absorb_run(report: FleetReport, run: RunResult) -> None:
    for name, progress in run.hosts.items():
        row = report.host(name)
        row.changed = progress.changed if row.changed is None else row.changed + progress.changed
        row.changes.extend(progress.changes)
        row.diffs.extend(progress.diffs)
        if progress.status != "ok" and row.status == "ok":
            row.status = progress.status
            row.failed_task = progress.failed_task
            row.message = progress.message


def _absorb_verify_reports(report: FleetReport, report_dir: Path) -> None:
    for path in sorted(report_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            row = report.host(path.stem)
            row.status, row.failed_task, row.message = "failed", "verify", "verify printed no JSON"
            continue
        report.host(path.stem).absorb_verify(data)


def last_failed_hosts(command: str, runs_root: Path | None = None) -> list[str]:
    """Hosts that failed in the newest finished run of `command` (for --retry-failed)."""
    root = runs_root or default_runs_root()
    reports = sorted(root.glob(f"*-{command}/report.json"))
    if not reports:
        raise ConfigError(f"--retry-failed: no earlier `coralpi {command}` run in {root}")
    data = json.loads(reports[-1].read_text())
    return [str(h) for h in data.get("failed_hosts", [])]


def playbook_for(command: str, check: bool) -> str:
    """The playbook `apply` runs (provision then verify; provision alone in check mode) or
    `verify` runs."""
    if command == "apply":
        return "provision.yml" if check else "site.yml"
    return "verify.yml"


def run_fleet(
    command: str,
    options: FleetOptions,
    on_probe: Callable[[HostProgress, str], None] | None = None,
) -> FleetReport:
    """`apply` (site.yml: provision then verify) or `verify` (verify.yml) over the fleet.

    Ctrl-C (or SIGTERM) once the run directory exists ends ansible-playbook, saves the
    report with every unfinished host marked `interrupted` and returns it with
    `report.interrupted` set; the hosts are left for the next run to converge.
    """
    check_tags(playbook_for(command, options.check), options.tags, options.skip_tags)
    if options.retry_failed:
        failed = last_failed_hosts(command, options.runs_root)
        if not failed:
            raise ConfigError(f"--retry-failed: the last `coralpi {command}` had no failed host")
        options.limit = ",".join(failed)
    hosts = load_inventory(options.inventory, options.limit)
    check_choices(hosts, options.extra_vars)
    rollout = rollout_vars(hosts, options.extra_vars)
    take_controller_paths(options, hosts)
    run_dir = new_run_dir(command, options.runs_root)
    report = FleetReport(command=command, run_dir=run_dir, check_mode=options.check)
    try:
        _probe_plan_and_run(command, options, hosts, rollout, report)
    except RunInterrupted as exc:
        _absorb_run(report, exc.result)
        report.mark_interrupted(_signal_name(exc.result.interrupted_by), [h.name for h in hosts])
    except KeyboardInterrupt as exc:
        report.mark_interrupted(_signal_name(signal_of(exc)), [h.name for h in hosts])
    report.save()
    return report


def _signal_name(signum: int | None) -> str:
    return signal.Signals(signum or signal.SIGINT).name


def _probe_plan_and_run(
    command: str,
    options: FleetOptions,
    hosts: list[InventoryHost],
    rollout: Mapping[str, Any],
    report: FleetReport,
) -> None:
    run_dir = report.run_dir
    with live_progress("probing hosts", shown=not options.verbosity) as on_change:
        probe = probe_hosts(
            options.inventory,
            run_dir,
            options.limit,
            connection_vars(options.extra_vars),
            on_change,
            verbosity=options.verbosity,
            forks=options.forks,
        )
    for name, why in probe.failed.items():
        row = report.host(name)
        row.status = "unreachable" if why.startswith("unreachable") else "failed"
        row.failed_task, row.message = "probe", why

    plans = plan_hosts(hosts, probe.facts, options.extra_vars)
    by_name = {h.name: h for h in hosts}
    artifacts: dict[str, HostArtifacts] = {}
    for name, plan in plans.items():
        report.host(name).absorb_plan(plan)
        settings = _settings_for(by_name[name], options.extra_vars, options)
        try:
            artifacts[name] = ensure_host_artifacts(plan, settings)
        except ArtifactError as exc:
            raise ArtifactError(
                f"{exc}\nNo host was touched. To see the whole job on a simulated fleet "
                "with local stand-ins for these sources, run `make demo`."
            ) from exc
    if not plans:
        return

    report_dir = run_dir / "verify"
    report_dir.mkdir(exist_ok=True)
    extravars: dict[str, Any] = {
        "coralpi_plans": {name: playbook_plan(p, artifacts[name]) for name, p in plans.items()},
        "coralpi_verify_report_dir": str(report_dir),
        **{k: v for k, v in options.extra_vars.items() if not k.startswith("coralpi_plan")},
        **rollout,
    }
    limit = ",".join(sorted(plans))
    book = playbook_for(command, options.check)
    run = _run(f"coralpi {command}", book, options, run_dir, extravars, limit, command)
    _absorb_run(report, run)
    _absorb_verify_reports(report, report_dir)
