"""What the collection's action plugins do, on the controller, for one host.

``coralpi.coral.plan`` and ``coralpi.coral.artifacts`` are thin: they hand the host's
facts (``tasks/probe_facts.yml``) and variables to these functions, which use the same
code as ``coralpi plan`` and ``coralpi apply`` (the registry's check, the matrix, the
artifact service), so a run without the CLI gets the same ``coralpi_plan``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from provision import files
from provision.artifacts.service import (
    ArtifactSettings,
    ensure_host_artifacts,
    open_cache,
    platform_inputs,
)
from provision.errors import ConfigError
from provision.planning.matrix import controller_supports
from provision.planning.plan import Plan
from provision.planning.role_variables import ROLE_BY_NAME
from provision.planning.service import plan_host
from provision.planning.variables import BY_NAME, check

#: Turns a raw variable (possibly a Jinja2 template) into its value.
Render = Callable[[Any], Any]


def host_settings(host: str, task_vars: Mapping[str, Any], render: Render) -> dict[str, Any]:
    """The host's ``coralpi_*`` settings, checked as the CLI checks an inventory.

    Settings are rendered first (they may be templates); role variables are checked as
    given (their defaults are templates over the plan this is about to make). Other
    ``coralpi_*`` names (what the playbooks register) are Ansible's business here."""
    given: dict[str, Any] = {}
    for name, value in task_vars.items():
        if name in BY_NAME:
            given[name] = render(value)
        elif name in ROLE_BY_NAME:
            given[name] = value
    return check(host, given)


def plan_for(
    host: str, facts: Mapping[str, Any], settings: Mapping[str, Any], ansible_core: str
) -> Plan:
    """The host's plan, refused (ConfigError) when the matrix or this controller cannot
    serve it."""
    if not isinstance(facts, Mapping) or not facts:
        raise ConfigError(f"host {host}: no facts to plan from (include tasks/probe_facts.yml)")
    try:
        plan = plan_host(facts, settings)
    except ConfigError as exc:
        raise ConfigError(f"host {host}: {exc}") from exc
    ok, why = controller_supports(plan, ansible_core)
    if not ok:
        raise ConfigError(f"host {host}: {why}")
    return plan


def artifacts_for(
    plan: Plan,
    settings: Mapping[str, Any],
    *,
    lock: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The plan's ``artifacts`` (controller paths), its files downloaded and checked into
    the cache (from the lock when it pins this platform).

    Ansible runs this in one fork per host: a host waits while another of the same
    platform fills the cache (:func:`provision.files.locked`), then finds its files there."""
    arts = ArtifactSettings.from_vars(settings, cache_dir=cache_dir, lock_file=lock)
    store = open_cache(arts.cache_dir)
    gate = store.root / "locks" / f"platform-{platform_inputs(plan, arts).slug}"
    with files.locked(gate):
        found = ensure_host_artifacts(plan, arts, store)
    return found.to_dict()
