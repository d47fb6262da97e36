"""The Ansible inventory of a fleet: group ``coralpi_fleet``, SSH as ``pi`` with become."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

GROUP = "coralpi_fleet"


def ssh_options(key_file: Path, control_dir: Path) -> list[str]:
    """OpenSSH options shared by Ansible and Fleet.ssh (host keys are throwaway)."""
    return [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"IdentityFile={key_file}",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=2",
        "-o",
        "ControlMaster=auto",
        "-o",
        "ControlPersist=60s",
        "-o",
        f"ControlPath={control_dir}/%C",
    ]


def build_inventory(
    hosts: Sequence[tuple[str, str, Mapping[str, Any]]],
    *,
    key_file: Path,
    control_dir: Path,
    group_vars: Mapping[str, Any],
) -> dict[str, Any]:
    """hosts: (inventory name, address, extra host vars) in order."""
    common_args = " ".join(
        opt
        for opt in ssh_options(key_file, control_dir)
        if opt != "-o" and not opt.startswith("IdentityFile=")
    )
    common_args = " ".join(f"-o {opt}" for opt in common_args.split())
    entries: dict[str, Any] = {}
    for name, address, extra in hosts:
        entries[name] = {
            "ansible_host": address,
            "ansible_user": "pi",
            "ansible_become": True,
            "ansible_ssh_private_key_file": str(key_file),
            "ansible_ssh_common_args": common_args,
            "ansible_python_interpreter": "/usr/bin/python3",
            **dict(extra),
        }
    return {"all": {"children": {GROUP: {"hosts": entries, "vars": dict(group_vars)}}}}


def write_inventory(path: Path, inventory: Mapping[str, Any]) -> None:
    header = "# Test fleet inventory (throwaway hosts in network namespaces); generated.\n"
    path.write_text(header + yaml.safe_dump(dict(inventory), sort_keys=False))
