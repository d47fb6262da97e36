"""The registry of every inventory variable coralpi reads (``coralpi_*``): one place.

Each :class:`Variable` has its name, kind, allowed values, default (as the user writes it),
one line of help and whether its value may hold a secret. The registry feeds:

- inventory checking (:func:`provision.planning.inventory.check_variables`): unknown names
  are refused with the nearest known one and booleans read by :func:`parse_bool`, before
  any host is touched; the plan's choices take their allowed values from here;
- the choices and artifact settings read from a host's variables (one rule for booleans);
- the documentation: ``inventory/group_vars/all.yml`` and the README's table, which a test
  compares with this registry (``tests/unit/test_variables_registry.py``).

Kinds: ``choice`` (one of ``choices``), ``bool`` (Ansible's own rule), ``url`` (of the
variable's ``schemes``), ``user``, ``fingerprints`` (a list), ``batch`` (a number or a
percentage), ``percent`` (0-100) and ``path`` (a controller path); what each allows is
:mod:`provision.planning.kinds`. Role variables (``<role>_*``) have their own registry,
:mod:`provision.planning.role_variables`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from provision.errors import ConfigError
from provision.planning import kinds
from provision.planning.kinds import parse_bool
from provision.planning.role_variables import ROLE_BY_NAME, check_role_value

__all__ = ["BY_NAME", "INTERNAL", "REGISTRY", "Variable", "check", "check_value", "parse_bool"]

_WEB = ("https", "http")
#: Sources only the controller downloads from may also be local directories.
_FETCHED = ("https", "http", "file")


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str
    default: str  # as written in group_vars/all.yml; "" for none
    help: str
    choices: tuple[str, ...] = ()
    secret: bool = False
    #: For ``url``: the schemes allowed, the ``{field}`` names a template may hold, and
    #: whether its login goes into a netrc-style file on the hosts.
    schemes: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    netrc_login: bool = False


REGISTRY: tuple[Variable, ...] = (
    Variable(
        "coralpi_runtime", "choice", "std", "Edge TPU runtime variant: std or max", ("std", "max")
    ),
    Variable(
        "coralpi_accept_max_eula",
        "bool",
        "false",
        "must be true to install the max (overclocked) runtime",
    ),
    Variable("coralpi_accelerator", "choice", "usb", "usb or pcie", ("usb", "pcie")),
    Variable("coralpi_opencv", "choice", "apt", "OpenCV from apt or pip", ("apt", "pip")),
    Variable("coralpi_camera", "bool", "true", "configure the camera (true/false)"),
    Variable(
        "coralpi_allow_reboot",
        "bool",
        "false",
        "reboot a host when its boot configuration (camera, PCIe) changed",
    ),
    Variable("coralpi_user", "user", "pi", "user put into plugdev/apex"),
    Variable(
        "coralpi_coral_repo_url",
        "url",
        "https://packages.cloud.google.com/apt",
        "Coral apt repository or a mirror of it",
        schemes=_WEB,
    ),
    Variable(
        "coralpi_coral_key_fingerprints",
        "fingerprints",
        "",
        "accepted fingerprints of Coral's apt signing key",
    ),
    Variable(
        "coralpi_coral_source_enabled", "bool", "true", "configure the Coral apt source at all"
    ),
    Variable(
        "coralpi_community_runtime_url",
        "url",
        "https://github.com/feranick/libedgetpu/releases/download/{release}",
        "base URL of the community libedgetpu .debs; {release} (optional) is the plan's "
        "release tag, e.g. 16.0TF2.19.1-1; without it the files are fetched flat from the URL",
        schemes=_FETCHED,
        fields=("release",),
    ),
    Variable(
        "coralpi_community_wheels",
        "bool",
        "false",
        "also offer the community tflite_runtime wheels (feranick/TFlite-builds; e.g. 2.17.1 "
        "for cp311-cp313, paired with libedgetpu 16.0tf2.17.1); preferred when they fit",
    ),
    Variable(
        "coralpi_community_wheel_url",
        "url",
        "https://github.com/feranick/TFlite-builds/releases/download/{release}",
        "base URL of the community tflite_runtime wheels; {release} (optional) is the plan's "
        "release tag, e.g. v2.17.1; without it the files are fetched flat from the URL",
        schemes=_FETCHED,
        fields=("release",),
    ),
    Variable(
        "coralpi_gasket_dkms_url",
        "url",
        "https://github.com/feranick/gasket-driver/releases/download/1.0-18.4",
        "base URL of the community gasket-dkms .deb (PCIe driver)",
        schemes=_FETCHED,
    ),
    Variable(
        "coralpi_assets_url",
        "url",
        "https://raw.githubusercontent.com/google-coral/test_data",
        "base URL of the smoke-test assets (Coral's test_data layout)",
        schemes=_FETCHED,
        fields=("commit", "file"),
    ),
    Variable(
        "coralpi_apt_proxy",
        "url",
        '""',
        "apt proxy for the hosts, e.g. http://10.0.0.1:3142",
        secret=True,
        schemes=_WEB,
        netrc_login=True,
    ),
    Variable(
        "coralpi_pip_index_url",
        "url",
        "",
        "extra wheel index for wheels PyPI lacks (piwheels)",
        secret=True,
        schemes=_FETCHED,
    ),
    Variable(
        "coralpi_serial", "batch", "", "rolling batches: hosts per batch (a number or a percentage)"
    ),
    Variable(
        "coralpi_max_fail_percentage",
        "percent",
        "100",
        "stop the run when more than this % of a batch fails",
    ),
    Variable(
        "coralpi_lock",
        "path",
        "",
        "the coralpi.lock whose files are installed, one for the run (a command's --lock wins)",
    ),
    Variable(
        "coralpi_cache_dir",
        "path",
        "",
        "the controller's artifact cache, one for the run (a command's --cache-dir wins)",
    ),
)

BY_NAME: dict[str, Variable] = {v.name: v for v in REGISTRY}

#: Names coralpi itself passes to the playbooks (never set by users, never refused).
INTERNAL = frozenset({"coralpi_plans", "coralpi_plan"})


def check_value(variable: Variable, value: object) -> object:
    """The value as coralpi uses it (a bool for ``bool``, a number for ``percent``...);
    ConfigError when its kind does not allow it. Choices are checked where the plan's
    choices are made (:class:`provision.planning.targets.Choices`, from the same registry),
    so that every host's bad choice is named in one message."""
    name = variable.name
    if variable.kind == "bool":
        return parse_bool(name, value)
    if variable.kind == "url":
        url = kinds.check_url(name, value, variable.schemes, variable.fields)
        return kinds.check_netrc_login(name, url) if variable.netrc_login else url
    if variable.kind == "user":
        return kinds.check_user(name, value)
    if variable.kind == "fingerprints":
        return list(kinds.check_fingerprints(name, value))
    if variable.kind == "batch":
        return kinds.check_batch(name, value)
    if variable.kind == "percent":
        return kinds.check_percent(name, value)
    if variable.kind == "path":
        return kinds.check_path(name, value)
    return value


def check(host: str, hostvars: Mapping[str, object]) -> dict[str, object]:
    """A host's ``coralpi_*`` settings, checked against the registry (others ignored).

    Role variables (:mod:`provision.planning.role_variables`) are checked by their type
    and passed on to the roles by Ansible itself; they are not part of what is returned."""
    chosen: dict[str, object] = {}
    for name, value in hostvars.items():
        if not name.startswith("coralpi_") or name in INTERNAL:
            continue
        variable = BY_NAME.get(name)
        if variable is None:
            role_variable = ROLE_BY_NAME.get(name)
            if role_variable is not None:
                try:
                    check_role_value(role_variable, value)
                except ConfigError as exc:
                    raise ConfigError(f"host {host}: {exc}") from exc
                continue
            close = difflib.get_close_matches(name, [*BY_NAME, *ROLE_BY_NAME], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"host {host}: unknown variable {name}{hint}; known: {', '.join(sorted(BY_NAME))}"
                " and the role variables of README's table (each role's defaults/main.yml)"
            )
        try:
            chosen[name] = check_value(variable, value)
        except ConfigError as exc:
            raise ConfigError(f"host {host}: {exc}") from exc
    return chosen
