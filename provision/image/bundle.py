"""The first-boot bundle: everything a Pi needs to provision itself, as one directory.

Built once on the controller (``build_bundle``) and copied to as many cards as wanted;
only ``bundle.env`` and ``authorized_keys`` differ per card (``card_files``). Layout, as the
Pi sees it under ``/boot/firmware/coralpi/``::

    firstboot.sh  scrub_seed.py  bundle.env  bundle.json  ansible.cfg  inventory.ini
    vars/plan.json        {"coralpi_plans": {"localhost": plan}} (artifact paths on the Pi)
    vars/host.json        the host's coralpi_* variables (may hold a proxy credential)
    playbooks/            site.yml, provision.yml, verify.yml and roles/
    verify/               the verify package (playbooks/../verify, as the role expects)
    artifacts/            wheels/, debs/, keyring/, assets/ (the locked files)
    ansible/              the ansible-core wheel (see provision.artifacts.pi_ansible)
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import verify
from provision import __version__
from provision.artifacts import pi_ansible
from provision.artifacts.cache import ArtifactError, HashMismatch
from provision.artifacts.service import (
    ArtifactSettings,
    HostArtifacts,
    ensure_host_artifacts,
    ensure_pi_ansible_wheel,
    fetch_hint,
    open_cache,
    playbook_plan,
)
from provision.image.planning import HostPlan
from provision.tools import shared

BUNDLE_NAME = "coralpi"
BOOT_MOUNT = "/boot/firmware"
ON_PI = f"{BOOT_MOUNT}/{BUNDLE_NAME}"
PLAYBOOKS = ("site.yml", "provision.yml", "verify.yml", "image.yml")

ANSIBLE_CFG = """# Ansible settings for the first-boot run (ANSIBLE_CONFIG points here).
[defaults]
roles_path = playbooks/roles
inventory = inventory.ini
interpreter_python = /usr/bin/python3
retry_files_enabled = False
local_tmp = /tmp/coralpi-ansible-local
"""
INVENTORY = (
    "# The Pi provisions itself: no controller, no SSH.\n"
    "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n"
)


@dataclass(frozen=True)
class Bundle:
    dir: Path
    host: HostPlan
    artifacts: HostArtifacts  # the paths as the Pi sees them
    ansible: pi_ansible.PiAnsible
    route: str


def _ignore(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def _copy_files(files: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, dest / path.name)  # follows the cache's links


def gather_artifacts(
    host: HostPlan, *, cache_dir: Path | None = None, lock_file: Path | None = None
) -> tuple[HostArtifacts, pi_ansible.PiAnsible, Path]:
    """Every file the bundle carries, in the cache: (the host's artifacts, the
    Pi's Ansible, its wheel). The Pi's Ansible comes first: the one file only a bundle
    needs. With a lock the files are those it pins (platforms it lacks are added); a file
    that cannot be had is refused naming `coralpi fetch`. Cheap the second time in one
    process (``image build`` calls it before writing anything, then for the bundle)."""
    settings = ArtifactSettings.from_vars(host.variables, cache_dir=cache_dir, lock_file=lock_file)
    cache = open_cache(cache_dir)
    choice = pi_ansible.decide(host.plan)
    try:
        wheel = ensure_pi_ansible_wheel(host.plan, choice, cache, lock_path=lock_file)
        arts = ensure_host_artifacts(host.plan, settings, cache, lock_path=lock_file)
    except HashMismatch:
        raise
    except ArtifactError as exc:
        if lock_file is None or not lock_file.is_file():
            raise
        raise ArtifactError(str(exc) + fetch_hint(lock_file)) from None
    return arts, choice, wheel


def build_bundle(
    host: HostPlan,
    route: str,
    staging: Path,
    *,
    cache_dir: Path | None = None,
    lock_file: Path | None = None,
) -> Bundle:
    """Fill ``staging/coralpi`` (fresh) and return it."""
    arts, choice, wheel = gather_artifacts(host, cache_dir=cache_dir, lock_file=lock_file)

    root = staging / BUNDLE_NAME
    if root.exists():
        shutil.rmtree(root)
    books = shared("playbooks")
    (root / "playbooks").mkdir(parents=True)
    for name in PLAYBOOKS:
        shutil.copyfile(books / name, root / "playbooks" / name)
    shutil.copytree(books / "roles", root / "playbooks" / "roles", ignore=_ignore)
    shutil.copytree(books / "tasks", root / "playbooks" / "tasks", ignore=_ignore)
    shutil.copytree(Path(verify.__file__).parent, root / "verify", ignore=_ignore)

    art = root / "artifacts"
    _copy_files(sorted(arts.wheels_dir.iterdir()), art / "wheels")
    _copy_files(list(arts.runtime_debs.values()), art / "debs")
    if arts.driver_deb is not None:
        _copy_files([arts.driver_deb], art / "debs")
    if arts.coral_keyring is not None:
        _copy_files([arts.coral_keyring], art / "keyring")
    _copy_files(sorted(arts.verify_assets.iterdir()), art / "assets")
    _copy_files([arts.verify_package], art / "verify")
    _copy_files([wheel], root / "ansible")

    on_pi = Path(ON_PI) / "artifacts"
    keyring = arts.coral_keyring
    pi_arts = HostArtifacts(
        wheels_dir=on_pi / "wheels",
        runtime_debs={k: on_pi / "debs" / p.name for k, p in arts.runtime_debs.items()},
        coral_keyring=on_pi / "keyring" / keyring.name if keyring else None,
        verify_assets=on_pi / "assets",
        verify_package=on_pi / "verify" / arts.verify_package.name,
        runtime_questions=arts.runtime_questions,
        driver_deb=on_pi / "debs" / arts.driver_deb.name if arts.driver_deb else None,
        coral_key_fingerprints=arts.coral_key_fingerprints,
    )
    (root / "vars").mkdir()
    plans = {"localhost": playbook_plan(host.plan, pi_arts)}
    (root / "vars" / "plan.json").write_text(json.dumps({"coralpi_plans": plans}, indent=2) + "\n")
    (root / "vars" / "host.json").write_text(json.dumps(host.variables, indent=2) + "\n")
    (root / "ansible.cfg").write_text(ANSIBLE_CFG)
    (root / "inventory.ini").write_text(INVENTORY)
    pi_files = resources.files("provision.image") / "pi"
    for name in ("firstboot.sh", "scrub_seed.py"):
        (root / name).write_bytes((pi_files / name).read_bytes())
    manifest = {
        "coralpi_version": __version__,
        "for": host.label,
        "route": route,
        "target": host.plan.target.to_dict(),
        "ansible_on_pi": {
            "ansible_core": choice.version,
            "debian_packages": list(choice.debian_packages),
            "reason": choice.reason,
        },
        "files": _hashes(root),
    }
    (root / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Bundle(root, host, pi_arts, choice, route)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def card_files(bundle: Bundle, hostname: str, ssh_keys: str | None) -> dict[str, str]:
    """The per-card files, by path relative to the bundle directory."""
    variables = bundle.host.variables
    env = {
        "CORALPI_HOSTNAME": hostname,
        "CORALPI_USER": str(variables.get("coralpi_user") or "pi"),
        "CORALPI_APT_PROXY": str(variables.get("coralpi_apt_proxy") or ""),
        "CORALPI_ANSIBLE_VERSION": bundle.ansible.version,
        "CORALPI_ANSIBLE_DEBS": " ".join(bundle.ansible.debian_packages),
        "CORALPI_ROUTE": bundle.route,
    }
    files = {
        "bundle.env": "# Settings of this card's first-boot run (coralpi image prepare).\n"
        + "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())
    }
    if ssh_keys:
        files["authorized_keys"] = ssh_keys.strip() + "\n"
    return files
