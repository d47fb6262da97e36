"""Settings that apply to a whole run, not to one host: one value for every host it takes.

The rolling-batch settings are play-level in Ansible; the lock and the artifact cache are the
controller's. Each may be set in an inventory (group all) or with ``-e``; hosts that disagree
are refused, naming the values, before any host is touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from provision.errors import ConfigError

#: Passed to the playbook once, as play keywords (serial, max_fail_percentage).
ROLLOUT = ("coralpi_serial", "coralpi_max_fail_percentage")
#: Paths on the controller (a command's --lock / --cache-dir wins over them).
CONTROLLER_PATHS = ("coralpi_lock", "coralpi_cache_dir")


def one_value(name: str, per_host: Iterable[Mapping[str, Any]]) -> Any | None:
    """The value every host gives ``name`` (None when none sets it); ConfigError when
    hosts differ."""
    values = {str(v): v for v in (h.get(name) for h in per_host) if v not in (None, "")}
    if len(values) > 1:
        raise ConfigError(
            f"{name} differs between hosts ({', '.join(sorted(values))}): it applies to the "
            "whole run, set it once for group all (or with -e)"
        )
    return next(iter(values.values()), None)


def rollout_vars(per_host: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The rolling-batch settings the hosts agree on, for the playbook's extra vars."""
    hosts = list(per_host)
    found = {name: one_value(name, hosts) for name in ROLLOUT}
    return {name: value for name, value in found.items() if value is not None}


def controller_path(
    name: str, given: Path | None, per_host: Iterable[Mapping[str, Any]]
) -> Path | None:
    """``given`` (the command's flag) when set, else the hosts' one value of ``name``
    (``~`` expanded; a relative path is taken from the current directory, as Ansible
    takes a relative path given on its command line)."""
    if given is not None:
        return given
    value = one_value(name, per_host)
    return None if value is None else Path(str(value)).expanduser()
