"""No cloned identity: what makes a machine itself, cleared from a golden image.

A golden image is copied to many cards. Whatever the base image, the package scripts run
by the roles or the build itself left that belongs to *one* machine must not be on all of
them: ``clear_identity(root)`` runs on the image's root after the roles (nothing runs in
the chroot any more) and returns what it cleared, for the manifest. What comes back at the
first boot of each card:

- ``/etc/machine-id`` is left empty (not removed): systemd takes an empty file as "first
  boot" and writes a new id; ``/var/lib/dbus/machine-id`` becomes a link to it (D-Bus reads
  the same id, as Debian sets it up);
- ``/etc/ssh/ssh_host_*`` are removed; ``coralpi-ssh-host-keys.service`` (installed here
  where the image has ``ssh-keygen``) makes new keys before ``ssh.service`` starts, only
  while none exist (Raspberry Pi OS's own regenerate_ssh_host_keys.service, where present,
  runs first and ours is then skipped);
- the systemd random seed and credential secret, DHCP leases, logs and the journal, shell
  and Python history, Ansible's leftovers, and apt's package lists and caches (a card
  fetches fresh lists when it next installs something, instead of trusting the build
  day's) are removed.

Paths are taken inside ``root`` only: a symlink in the image is removed as a link, never
followed, and a directory that resolves outside the root is skipped.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SSH_UNIT = "coralpi-ssh-host-keys.service"
SSH_UNIT_TEXT = """\
# Written by coralpi image build: the golden image carries no SSH host keys, so that no two
# cards copied from it share them. This makes the card's own keys at its first boot.
[Unit]
Description=coralpi: SSH host keys of this card
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
After=regenerate_ssh_host_keys.service
Before=ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

#: (glob inside the root, what happens to it). Globs name files or whole directories.
REMOVED = (
    ("etc/ssh/ssh_host_*", "SSH host keys (new ones at first boot)"),
    ("var/lib/systemd/random-seed", "the random seed"),
    ("var/lib/systemd/credential.secret", "systemd's credential secret"),
    ("var/lib/dhcp/*.leases", "DHCP leases"),
    ("var/lib/dhcpcd/*.lease*", "DHCP leases"),
    ("var/lib/dhcpcd5/*.lease*", "DHCP leases"),
    ("var/lib/NetworkManager/*.lease", "DHCP leases"),
    ("var/lib/NetworkManager/timestamps", "NetworkManager's connection times"),
    ("var/log/journal/*", "the journal"),
    ("root/.bash_history", "shell history"),
    ("root/.python_history", "Python history"),
    ("root/.ansible", "Ansible's leftovers"),
    ("root/.cache/pip", "pip's cache"),
    ("home/*/.bash_history", "shell history"),
    ("home/*/.python_history", "Python history"),
    ("home/*/.ansible", "Ansible's leftovers"),
    ("var/lib/apt/lists/*_*", "apt's package lists of the build day"),
    ("var/cache/apt/*.bin", "apt's package caches"),
    ("var/cache/debconf/*-old", "debconf's backups"),
)


@dataclass(frozen=True)
class Cleared:
    path: str  # as the Pi sees it, e.g. /etc/machine-id
    action: str  # "emptied" | "removed" | "linked to /etc/machine-id" | "truncated"
    what: str


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path``'s directory resolves inside ``root`` (links in the image are
    resolved as this machine sees them, so an absolute link leaves the root)."""
    real_root = root.resolve()
    parent = path.parent.resolve()
    return parent == real_root or real_root in parent.parents


def _on_pi(root: Path, path: Path) -> str:
    return "/" + str(path.relative_to(root))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _empty_file(path: Path) -> None:
    """``path`` as an empty regular file (a link there is replaced, never followed)."""
    if path.is_symlink() or path.is_dir():
        _remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o444)
    os.close(fd)
    os.chmod(path, 0o444, follow_symlinks=False)


def clear_identity(root: Path) -> list[Cleared]:
    """Clear what belongs to one machine from the image mounted at ``root``."""
    done: list[Cleared] = []
    machine_id = root / "etc" / "machine-id"
    if _inside(root, machine_id) and machine_id.parent.is_dir():
        had = machine_id.is_symlink() or (machine_id.is_file() and machine_id.stat().st_size > 0)
        _empty_file(machine_id)
        if had:
            done.append(
                Cleared(
                    "/etc/machine-id",
                    "emptied",
                    "the machine id (systemd writes a new one at first boot)",
                )
            )
    dbus = root / "var" / "lib" / "dbus" / "machine-id"
    linked = dbus.is_symlink() and os.readlink(dbus) == "/etc/machine-id"
    if _inside(root, dbus) and dbus.parent.is_dir() and not linked:
        if dbus.exists() or dbus.is_symlink():
            _remove(dbus)
        dbus.symlink_to("/etc/machine-id")
        done.append(
            Cleared("/var/lib/dbus/machine-id", "linked to /etc/machine-id", "D-Bus's machine id")
        )
    for pattern, what in REMOVED:
        for path in sorted(root.glob(pattern)):
            if not _inside(root, path) or not (path.exists() or path.is_symlink()):
                continue
            _remove(path)
            done.append(Cleared(_on_pi(root, path), "removed", what))
    done += _truncate_logs(root)
    if _has_ssh_keygen(root):
        _install_ssh_unit(root)
    return done


def _truncate_logs(root: Path) -> list[Cleared]:
    """The build's logs: rotated ones removed, the others emptied (their owners and modes
    kept, as logrotate's ``copytruncate`` leaves them)."""
    log = root / "var" / "log"
    if log.is_symlink() or not log.is_dir() or not _inside(root, log / "x"):
        return []
    done = []
    for path in sorted(log.rglob("*")):
        if path.is_symlink() or not path.is_file() or not _inside(root, path):
            continue
        rotated = path.suffix in {".gz", ".xz", ".old"} or path.name.rsplit(".", 1)[-1].isdigit()
        if rotated:
            path.unlink()
            done.append(Cleared(_on_pi(root, path), "removed", "an old log"))
        elif path.stat().st_size:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
            os.close(fd)
            done.append(Cleared(_on_pi(root, path), "truncated", "the build's log"))
    return done


def _has_ssh_keygen(root: Path) -> bool:
    keygen = root / "usr" / "bin" / "ssh-keygen"
    return keygen.is_file() or keygen.is_symlink()


def _install_ssh_unit(root: Path) -> None:
    units = root / "etc" / "systemd" / "system"
    if not _inside(root, units / SSH_UNIT):
        return
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    unit = units / SSH_UNIT
    if unit.is_symlink():
        unit.unlink()
    unit.write_text(SSH_UNIT_TEXT)
    unit.chmod(0o644)
    link = wants / SSH_UNIT
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(f"/etc/systemd/system/{SSH_UNIT}")


def summary(cleared: list[Cleared]) -> list[dict[str, str]]:
    """The manifest's ``identity_cleared``: one entry per path."""
    return [{"path": c.path, "action": c.action, "what": c.what} for c in cleared]
