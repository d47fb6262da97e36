"""Plans for the pull repository, made on the controller: each inventory host's platform
is given (``--platform [HOST=]CODENAME/ARCH/PYVER``: Pis behind NAT cannot be probed) or,
for the hosts without one, probed as ``coralpi apply`` probes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, CoralpiError
from provision.planning.inventory import load_inventory
from provision.planning.matrix import platform_target, resolve
from provision.planning.service import host_variables, plan_inventory
from provision.planning.targets import Target, choices_from_vars
from provision.pull.repo import PullHost

DEFAULT_BOARD = "Raspberry Pi"


def parse_platforms(items: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """``--platform`` values: (the one for every host, {host: spec})."""
    default: str | None = None
    per_host: dict[str, str] = {}
    for item in items:
        host, sep, spec = item.partition("=")
        if sep:
            per_host[host.strip()] = spec.strip()
        elif default is not None:
            raise ConfigError(f"--platform {item}: a platform for every host is given twice")
        else:
            default = item.strip()
    return default, per_host


def plan_hosts(
    inventory: Path,
    limit: str | None,
    extra: Mapping[str, Any],
    platforms: Sequence[str],
    board: str | None = DEFAULT_BOARD,
) -> tuple[list[PullHost], dict[str, str]]:
    """(planned hosts, {host: why not}) for every inventory host ``limit`` selects."""
    default, per_host = parse_platforms(platforms)
    hosts = load_inventory(inventory, limit)
    unknown = sorted(set(per_host) - {h.name for h in hosts})
    if unknown:
        raise ConfigError(f"--platform for {', '.join(unknown)}: not in the inventory")
    planned: list[PullHost] = []
    refused: dict[str, str] = {}
    to_probe = [h.name for h in hosts if h.name not in per_host and default is None]
    for host in hosts:
        spec = per_host.get(host.name, default)
        if spec is None:
            continue
        variables = host_variables(host, extra)
        base = platform_target(spec)
        target = Target(
            base.os_id, base.codename, base.arch, base.python, base.glibc, board or None
        )
        try:
            planned.append(
                PullHost(host.name, resolve(target, choices_from_vars(variables)), variables)
            )
        except CoralpiError as exc:
            refused[host.name] = str(exc)
    if to_probe:
        probed = plan_inventory(inventory, ":".join(to_probe), extra)
        for got in probed.hosts:
            if got.plan is None:
                refused[got.name] = got.error or "no plan"
            else:
                planned.append(PullHost(got.name, got.plan, got.variables))
    return sorted(planned, key=lambda h: h.name), refused
