"""The planning service: inventory -> probe -> plan, written once.

``coralpi plan -i``, ``apply``/``verify``, ``lock -i`` and ``image prepare/build -i`` all
plan real hosts through here; each decides what a host without a plan means for it (plan
shows the reason, apply refuses the run, lock skips the platform, image refuses the card).
Plans stay typed (:class:`~provision.planning.plan.Plan`); callers turn them into the
playbooks' JSON where they write it out.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import CoralpiError
from provision.planning.inventory import InventoryHost, check_variables, load_inventory
from provision.planning.matrix import resolve
from provision.planning.plan import Plan
from provision.planning.probe import ProbeResult, probe_hosts
from provision.planning.targets import choices_from_vars, target_from_facts

#: Runs the probe play: (inventory, run directory, limit, extra vars) -> what it gathered.
Prober = Callable[[Path, Path, "str | None", Mapping[str, Any]], ProbeResult]


def connection_vars(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``-e`` values that are not coralpi settings (``ansible_user``, ``ansible_port``,
    become passwords...): the probe gets them as every other play does."""
    return {k: v for k, v in extra.items() if not k.startswith("coralpi_")}


@dataclass(frozen=True)
class PlannedHost:
    """One inventory host: its checked ``coralpi_*`` variables (``-e`` values included)
    and its plan, or why it has none (not probed, or refused by the matrix)."""

    name: str
    variables: dict[str, Any]
    plan: Plan | None = None
    error: str | None = None
    probed: bool = True


@dataclass
class Planned:
    hosts: list[PlannedHost] = field(default_factory=list)
    probe: ProbeResult | None = None

    @property
    def plans(self) -> dict[str, Plan]:
        return {h.name: h.plan for h in self.hosts if h.plan is not None}

    @property
    def errors(self) -> dict[str, str]:
        return {h.name: h.error for h in self.hosts if h.error is not None}


def host_variables(host: InventoryHost, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The host's ``coralpi_*`` variables with those given with ``-e`` on top (checked and
    read like the inventory's: booleans as booleans)."""
    given = {k: v for k, v in extra.items() if k.startswith("coralpi_")}
    return {**host.variables, **check_variables("given with -e", given)}


def plan_host(facts: Mapping[str, Any], variables: Mapping[str, Any]) -> Plan:
    """One probed host's plan (the matrix decides; refusals raise)."""
    return resolve(target_from_facts(facts), choices_from_vars(variables))


def plan_probed(
    hosts: list[InventoryHost],
    facts: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Any],
    failed: Mapping[str, str] | None = None,
) -> list[PlannedHost]:
    """Plans for the hosts the probe reached; the others carry why not."""
    out = []
    for host in hosts:
        variables = host_variables(host, extra)
        if host.name not in facts:
            why = (failed or {}).get(host.name, "the probe gathered no facts")
            out.append(PlannedHost(host.name, variables, error=f"not probed: {why}", probed=False))
            continue
        try:
            plan = plan_host(facts[host.name], variables)
        except CoralpiError as exc:
            out.append(PlannedHost(host.name, variables, error=str(exc)))
            continue
        out.append(PlannedHost(host.name, variables, plan))
    return out


def plan_inventory(
    inventory: Path,
    limit: str | None,
    extra: Mapping[str, Any],
    *,
    run_dir: Path | None = None,
    prober: Prober = probe_hosts,
    check_hosts: Callable[[list[InventoryHost]], None] | None = None,
) -> Planned:
    """Read and check the inventory, probe its hosts (in ``run_dir``, else a temporary
    directory) and plan each. ``-e`` values (``extra``) are checked like inventory ones;
    ``check_hosts`` may refuse the host list before anything is probed."""
    check_variables("given with -e", {k: v for k, v in extra.items() if k.startswith("coralpi_")})
    hosts = load_inventory(inventory, limit)
    if check_hosts is not None:
        check_hosts(hosts)
    ansible = connection_vars(extra)
    if run_dir is not None:
        probe = prober(inventory, run_dir, limit, ansible)
    else:
        with tempfile.TemporaryDirectory(prefix="coralpi-probe-") as tmp:
            probe = prober(inventory, Path(tmp), limit, ansible)
    return Planned(plan_probed(hosts, probe.facts, extra, probe.failed), probe)
