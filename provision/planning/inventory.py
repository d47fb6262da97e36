"""Reading an Ansible inventory and checking the coralpi variables in it.

The inventory is read through `ansible-inventory --list`, so every format Ansible accepts
(YAML, INI, directories with group_vars/host_vars, plugins) works the same here. Checking
happens before any host is touched: an unknown `coralpi_*` variable or a value outside its
allowed set is a configuration error naming the host, the variable and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import ConfigError
from provision.planning.targets import parse_bool
from provision.tools import tool_path

#: Every inventory variable coralpi reads, with a one-line meaning (also in README.md).
KNOWN_VARIABLES: dict[str, str] = {
    "coralpi_runtime": "Edge TPU runtime variant: std or max",
    "coralpi_accept_max_eula": "must be true to install the max (overclocked) runtime",
    "coralpi_accelerator": "usb or pcie",
    "coralpi_opencv": "OpenCV from apt or pip",
    "coralpi_camera": "configure the camera (true/false)",
    "coralpi_allow_reboot": "reboot a host when the camera configuration changed",
    "coralpi_user": "user put into plugdev/apex",
    "coralpi_coral_repo_url": "Coral apt repository or a mirror of it",
    "coralpi_coral_key_fingerprints": "accepted fingerprints of Coral's apt signing key",
    "coralpi_coral_source_enabled": "configure the Coral apt source at all",
    "coralpi_community_runtime_url": "base URL of the community libedgetpu .debs",
    "coralpi_assets_url": "base URL of the smoke-test assets (Coral's test_data layout)",
    "coralpi_apt_proxy": "apt proxy for the hosts, e.g. http://10.0.0.1:3142",
    "coralpi_pip_index_url": "extra wheel index for wheels PyPI lacks (piwheels)",
    "coralpi_serial": "rolling batches: hosts per batch (a number or a percentage)",
    "coralpi_max_fail_percentage": "stop the run when more than this % of a batch fails",
}

_BOOL_VARIABLES = {
    "coralpi_accept_max_eula",
    "coralpi_camera",
    "coralpi_allow_reboot",
    "coralpi_coral_source_enabled",
}


@dataclass(frozen=True)
class InventoryHost:
    """One host of the inventory with its coralpi variables (already checked)."""

    name: str
    variables: Mapping[str, Any] = field(default_factory=dict)


def check_variables(host: str, hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """Return the host's coralpi_* variables, refusing unknown names and non-boolean flags."""
    chosen: dict[str, Any] = {}
    for name, value in hostvars.items():
        if not name.startswith("coralpi_") or name in {"coralpi_plans", "coralpi_plan"}:
            continue
        if name not in KNOWN_VARIABLES:
            close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"host {host}: unknown variable {name}{hint}; "
                f"known: {', '.join(sorted(KNOWN_VARIABLES))}"
            )
        if name in _BOOL_VARIABLES:
            try:
                value = parse_bool(name, value)
            except ConfigError as exc:
                raise ConfigError(f"host {host}: {exc}") from exc
        chosen[name] = value
    return chosen


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
        InventoryHost(name, check_variables(name, hostvars.get(name, {}))) for name in sorted(names)
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
