"""The plan for the Pi a card is prepared for: from ``--platform`` or one inventory host.

``--platform CODENAME/ARCH/PYVER`` needs no running Pi (the card is a Raspberry Pi, so the
board defaults to ``Raspberry Pi``: the camera gets set up); ``-i INVENTORY --limit HOST``
probes a running host of the same kind and takes its ``coralpi_*`` variables. Either way the
result is checked against what the card itself holds (release, architecture, Python).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, HostFailed
from provision.image.errors import ImageError
from provision.image.rootfs_probe import RootInfo
from provision.planning.inventory import InventoryHost, check_variables
from provision.planning.matrix import platform_target, resolve
from provision.planning.plan import Plan
from provision.planning.service import plan_inventory
from provision.planning.targets import Target, choices_from_vars

#: Releases whose first-boot hook ``image prepare`` writes, and the hook each uses.
HOOKS = {"bookworm": "firstrun", "trixie": "cloud-init"}
DEFAULT_BOARD = "Raspberry Pi"


@dataclass(frozen=True)
class HostPlan:
    label: str  # the --platform spec or the inventory host
    plan: Plan
    variables: dict[str, Any]  # the host's coralpi_* variables


def from_platform(
    spec: str, variables: Mapping[str, Any], board: str | None = DEFAULT_BOARD
) -> HostPlan:
    chosen = check_variables("given with -e", variables)
    base = platform_target(spec)
    target = Target(base.os_id, base.codename, base.arch, base.python, base.glibc, board)
    plan = resolve(target, choices_from_vars(chosen))
    return HostPlan(spec, plan, chosen)


def from_inventory(inventory: Path, limit: str | None, extra: Mapping[str, Any]) -> HostPlan:
    if not limit:
        raise ConfigError("image prepare -i INVENTORY needs --limit HOST (one card, one host)")

    def one_host(hosts: list[InventoryHost]) -> None:
        if len(hosts) != 1:
            raise ConfigError(
                f"--limit {limit} matches {len(hosts)} hosts "
                f"({', '.join(h.name for h in hosts)}); a card is prepared for exactly one"
            )

    planned = plan_inventory(inventory, limit, extra, check_hosts=one_host)
    (host,) = planned.hosts
    if not host.probed:
        # A host that cannot be reached is a failed host (exit 2), as for every command.
        raise HostFailed(f"host {host.name} could not be probed: {host.error}")
    if host.plan is None:
        raise ConfigError(f"host {host.name}: {host.error}")
    return HostPlan(host.name, host.plan, host.variables)


def check_against_card(plan: Plan, card: RootInfo, where: str, *, hook: bool = True) -> str:
    """The hook route for the card; ImageError when card and plan disagree or the release
    has no supported first-boot hook (``hook=False``, for image builds: the release must
    still be one whose Python runs the bundle's Ansible, i.e. one with a hook)."""
    target = plan.target
    codename = card.codename or ""
    if codename not in HOOKS:
        found = codename or "no VERSION_CODENAME in its os-release"
        raise ImageError(
            f"{where}: unsupported release ({found}); coralpi image works on "
            f"{' and '.join(sorted(HOOKS))} cards only (their first-boot hooks, and a Python "
            "that runs the bundle's Ansible)"
        )
    if target.codename != codename:
        raise ImageError(
            f"{where} holds {codename}, but the plan is for {target.codename}: prepare it "
            f"with --platform {codename}/... or a {codename} host"
        )
    if card.arch is not None and card.arch != target.arch:
        raise ImageError(f"{where} is a {card.arch} system, but the plan is for {target.arch}")
    if card.pythons and target.python not in card.pythons:
        raise ImageError(
            f"{where} has python {', '.join(card.pythons)}, but the plan is for python "
            f"{target.python}"
        )
    if hook and HOOKS[codename] == "cloud-init" and not card.cloud_init:
        raise ImageError(
            f"{where}: a {codename} card without cloud-init (the hook {codename} uses); is it "
            "a Raspberry Pi OS image?"
        )
    return HOOKS[codename]
