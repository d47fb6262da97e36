"""Which Ansible runs on the Pi at first boot, and why (the decision and its download).

Decision: the controller's own ansible-core release (the one coralpi's roles are tested
with) as its pure-Python wheel (``py3-none-any``) in the bundle, installed at first boot
into a venv ``/opt/coralpi/ansible`` that sees Debian's packages, with its compiled and
other dependencies taken from Debian: ``python3-yaml``, ``python3-jinja2`` (with
``python3-markupsafe``), ``python3-cryptography``, ``python3-packaging``,
``python3-resolvelib``. Why:

- PyPI has no armv7l wheels for PyYAML or cryptography (a 32-bit Pi cannot take them from
  the bundle), while Debian builds them for every Pi architecture;
- Debian's own ``ansible-core`` is 2.14 on Bookworm (2.19 on Trixie): Bookworm cards would
  run a line coralpi's roles are not tested with;
- the Pi runs the playbooks on its own Python, so that Python must be a *controller* Python
  of the release line: 2.19 runs on 3.11-3.13, i.e. Bookworm and Trixie, the two releases
  whose first-boot hooks ``image prepare`` writes. (A Python 3.7 Buster target would need
  ansible-core 2.17 only as a remote target; as its own controller no current line runs.)

The first boot therefore needs Debian's mirror or the apt proxy for those few packages,
which the roles need anyway (python3-venv, python3-numpy, ...).

The wheel is a lock entry like every other file a card installs: ``coralpi lock`` records
it (a ``[[shared]]`` wheel: pure Python, one file for every platform) for each platform a
first-boot bundle can serve, ``coralpi fetch`` downloads it, and ``image prepare`` /
``image build`` take it from the cache by its sha256
(:func:`provision.artifacts.service.ensure_pi_ansible_wheel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from provision.artifacts import wheels
from provision.artifacts.cache import ArtifactCache
from provision.artifacts.lockfile import Artifact, Lock
from provision.errors import ConfigError
from provision.planning.matrix import load_matrix
from provision.planning.plan import Plan
from provision.planning.targets import version_tuple

#: Debian packages that give the ansible-core wheel its dependencies on the Pi.
DEBIAN_DEPENDENCIES = (
    "python3-venv",
    "python3-yaml",
    "python3-jinja2",
    "python3-markupsafe",
    "python3-cryptography",
    "python3-packaging",
    "python3-resolvelib",
)
#: The wheel's own requirements that Debian provides (left out of the download).
FROM_DEBIAN = ("jinja2", "pyyaml", "cryptography", "packaging", "resolvelib", "markupsafe")
VENV = "/opt/coralpi/ansible"


@dataclass(frozen=True)
class PiAnsible:
    version: str
    debian_packages: tuple[str, ...]
    reason: str


def controller_version() -> str:
    try:
        return metadata.version("ansible-core")
    except metadata.PackageNotFoundError:
        raise ConfigError("ansible-core is not installed beside coralpi") from None


def decide(plan: Plan, version: str | None = None) -> PiAnsible:
    """The Ansible the Pi of ``plan`` runs itself; ConfigError when none can."""
    version = version or controller_version()
    python = plan.target.python
    line = ".".join(version.split(".")[:2])
    rows = [ln for ln in load_matrix().ansible_lines if ln.line == line]
    if rows:
        low, high = rows[0].controller_python
        if not version_tuple(low) <= version_tuple(python) <= version_tuple(high):
            raise ConfigError(
                f"the Pi's python {python} cannot run ansible-core {line} (its controller "
                f"Python range is {low} to {high}), and a first-boot bundle runs Ansible on "
                "the Pi itself"
            )
    spec = SpecifierSet(plan.controller.ansible_core)
    if not spec.contains(Version(version), prereleases=True):
        raise ConfigError(
            f"{plan.target.codename} with python {python} needs ansible-core{spec}; "
            f"this controller has {version}, which the bundle would carry to the Pi"
        )
    reason = (
        f"ansible on the Pi: ansible-core {version} (the controller's release, which the "
        f"roles are tested with) from its pure-Python wheel in the bundle, in a venv at "
        f"{VENV} over Debian's {', '.join(DEBIAN_DEPENDENCIES[1:])} (PyPI has no armv7l "
        "wheels for PyYAML or cryptography; Debian's own ansible-core is 2.14 on bookworm); "
        "those packages come from the mirror or apt proxy at first boot"
    )
    return PiAnsible(version, DEBIAN_DEPENDENCIES, reason)


def is_pi_ansible(art: Artifact, version: str | None = None) -> bool:
    """Whether a lock entry is the Pi's ansible-core wheel (of ``version``, if given)."""
    project = canonicalize_name(art.name.split("-", 1)[0])
    return (
        art.kind == "wheel"
        and project == "ansible-core"
        and (version is None or art.version == version)
    )


def locked(lock: Lock | None, version: str) -> Artifact | None:
    """The lock's shared entry for ansible-core ``version``, if it has one."""
    if lock is None:
        return None
    return next((a for a in lock.shared if is_pi_ansible(a, version)), None)


def lock_reason(choice: PiAnsible) -> str:
    return f"image prepare/build (first-boot bundle): {choice.reason}"


def resolve_artifact(
    choice: PiAnsible, plan: Plan, cache: ArtifactCache, pins: Mapping[str, str]
) -> Artifact:
    """Find ansible-core ``choice.version``'s one wheel on the index, download and check
    it, and record it as a lock entry (network)."""
    spec = wheels.WheelSpec(
        python=plan.target.python,
        python_tag=plan.python_runtime.python_tag,
        platform_tags=plan.python_runtime.platform_tags,
        arch=plan.target.arch,
    )
    res = wheels.resolve(spec, [f"ansible-core=={choice.version}"], exclude=FROM_DEBIAN)
    chosen = [w for w in res.wheels if w.name == "ansible-core"]
    others = [w.name for w in res.wheels if w.name != "ansible-core"]
    if not chosen or others:
        raise ConfigError(
            f"ansible-core {choice.version}: expected its one wheel, pip chose "
            f"{[w.filename for w in res.wheels]}"
        )
    wheel = chosen[0]
    got = wheels.fetch(cache, wheel, pins)
    return Artifact(
        "wheel",
        wheel.filename,
        choice.version,
        wheel.url,
        got.sha256,
        got.size,
        lock_reason(choice),
    )


def lock_entry(
    plan: Plan, cache: ArtifactCache, pins: Mapping[str, str], previous: Lock | None
) -> Artifact | None:
    """What ``coralpi lock`` records for the Pi's Ansible of ``plan``: the previous lock's
    entry when it has this version (no network), else a new one; None when no first-boot
    bundle can serve the plan (its Python cannot run this ansible-core)."""
    try:
        choice = decide(plan)
    except ConfigError:
        return None
    return locked(previous, choice.version) or resolve_artifact(choice, plan, cache, pins)
