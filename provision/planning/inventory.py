"""Reading an Ansible inventory and checking the coralpi variables in it.

The inventory is read through `ansible-inventory --list`, so every format Ansible accepts
(YAML, INI, directories with group_vars/host_vars, plugins) works the same here. Checking
happens before any host is touched: an unknown `coralpi_*` variable or a value outside its
allowed set is a configuration error naming the host, the variable and what is allowed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import ConfigError
from provision.planning.kinds import check_host_name
from provision.planning.variables import REGISTRY, check
from provision.tools import tool_path

#: Every inventory variable coralpi reads, with a one-line meaning (from the registry,
#: provision.planning.variables; also in README.md and inventory/group_vars/all.yml).
KNOWN_VARIABLES: dict[str, str] = {v.name: v.help for v in REGISTRY}


@dataclass(frozen=True)
class InventoryHost:
    """One host of the inventory with its coralpi variables (already checked)."""

    name: str
    variables: Mapping[str, Any] = field(default_factory=dict)


def check_variables(host: str, hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """Return the host's coralpi_* variables, refusing unknown names and values their kind
    does not allow (booleans read as Ansible reads them)."""
    return dict(check(host, hostvars))


def parse_inventory_listing(listing: Mapping[str, Any], limit: str | None) -> list[InventoryHost]:
    """Turn `ansible-inventory --list` JSON into checked hosts (pure; tested on recordings)."""
    hostvars: Mapping[str, Mapping[str, Any]] = listing.get("_meta", {}).get("hostvars", {})
    names: set[str] = set(hostvars)
    for group, body in listing.items():
        if group == "_meta" or not isinstance(body, Mapping):
            continue
        names.update(body.get("hosts", []))
    if not names:
        where = f" matching --limit {limit}" if limit else ""
        raise ConfigError(f"the inventory has no hosts{where}")
    return [
        InventoryHost(check_host_name(name), check_variables(name, hostvars.get(name, {})))
        for name in sorted(names)
    ]


def load_inventory(inventory: Path, limit: str | None = None) -> list[InventoryHost]:
    """Read an inventory with ansible-inventory; a malformed one is a ConfigError."""
    if not inventory.exists():
        raise ConfigError(f"inventory {inventory} does not exist (pass -i PATH)")
    cmd = [tool_path("ansible-inventory"), "-i", str(inventory), "--list"]
    if limit:
        cmd += ["--limit", limit]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    stderr = proc.stderr.strip()
    if proc.returncode != 0 or "Unable to parse" in stderr or "Failed to parse" in stderr:
        first = next((ln for ln in stderr.splitlines() if ln.strip()), "no output")
        raise ConfigError(f"inventory {inventory} could not be parsed: {first}")
    try:
        listing = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"inventory {inventory}: ansible-inventory gave no JSON ({exc})") from exc
    return parse_inventory_listing(listing, limit)
