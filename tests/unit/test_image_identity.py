"""No cloned identity: ``provision.image.identity.clear_identity`` on a recorded root tree
(the built-image test in tests/image checks the same on a real build and two booted copies)."""

from __future__ import annotations

import os
from pathlib import Path

from provision.image.identity import SSH_UNIT, clear_identity, summary


def _tree(root: Path) -> None:
    files = {
        "etc/machine-id": "4f1c0de2b3a94c55a1e2d3f4a5b6c7d8\n",
        "var/lib/dbus/machine-id": "4f1c0de2b3a94c55a1e2d3f4a5b6c7d8\n",
        "etc/ssh/ssh_host_ed25519_key": "PRIVATE\n",
        "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA root@build\n",
        "etc/ssh/sshd_config": "PermitRootLogin no\n",
        "var/lib/systemd/random-seed": "seed",
        "var/lib/dhcp/dhclient.eth0.leases": "lease { fixed-address 10.0.0.5; }\n",
        "var/log/dpkg.log": "2026-12-01 install python3-venv\n",
        "var/log/dpkg.log.1": "older\n",
        "var/log/apt/term.log": "Setting up ...\n",
        "var/log/apt/eipp.log.xz": "xz",
        "var/log/journal/4f1c0de2b3a94c55a1e2d3f4a5b6c7d8/system.journal": "j",
        "root/.bash_history": "sudo reboot\n",
        "root/.ansible/tmp/x": "",
        "home/pi/.bash_history": "ls\n",
        "home/pi/notes.txt": "mine\n",
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "Date: ...\n",
        "var/lib/apt/lists/lock": "",
        "var/cache/apt/pkgcache.bin": "bin",
        "usr/bin/ssh-keygen": "#!/bin/sh\n",
        "etc/ansible/facts.d/coralpi.fact": "{}\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "var/lib/apt/lists/partial").mkdir()


def test_a_build_trees_identity_is_cleared_and_what_is_kept_stays(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _tree(root)
    cleared = clear_identity(root)

    machine_id = root / "etc/machine-id"
    assert machine_id.is_file() and not machine_id.is_symlink()
    assert machine_id.read_text() == "", "empty, so systemd makes a new one at first boot"
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "etc/ssh/sshd_config").read_text() == "PermitRootLogin no\n"
    for gone in (
        "var/lib/systemd/random-seed",
        "var/lib/dhcp/dhclient.eth0.leases",
        "var/log/dpkg.log.1",
        "var/log/apt/eipp.log.xz",
        "root/.bash_history",
        "root/.ansible",
        "home/pi/.bash_history",
        "var/cache/apt/pkgcache.bin",
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
    ):
        assert not (root / gone).exists(), gone
    assert not list((root / "var/log/journal").iterdir())
    assert (root / "var/log/dpkg.log").read_text() == ""
    assert (root / "var/log/apt/term.log").read_text() == ""
    for kept in ("home/pi/notes.txt", "etc/ansible/facts.d/coralpi.fact", "var/lib/apt/lists/lock"):
        assert (root / kept).is_file(), kept
    assert (root / "var/lib/apt/lists/partial").is_dir()

    unit = root / "etc/systemd/system" / SSH_UNIT
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit.read_text()
    assert "ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key" in unit.read_text()
    assert "Before=ssh.service" in unit.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants" / SSH_UNIT
    assert os.readlink(wants) == f"/etc/systemd/system/{SSH_UNIT}"

    paths = {entry["path"]: entry["action"] for entry in summary(cleared)}
    assert paths["/etc/machine-id"] == "emptied"
    assert paths["/etc/ssh/ssh_host_ed25519_key"] == "removed"
    assert paths["/var/log/dpkg.log"] == "truncated"
    assert paths["/var/lib/dbus/machine-id"] == "linked to /etc/machine-id"
    assert "/home/pi/notes.txt" not in paths

    again = clear_identity(root)
    assert again == [], f"a cleared tree has nothing left to clear: {again}"


def test_links_in_the_image_are_never_followed_out_of_the_root(tmp_path: Path) -> None:
    """An image whose machine-id, home or log directory points at this machine's files
    (absolute links resolve against the build machine) leaves those files alone."""
    outside = tmp_path / "outside"
    (outside / "pi").mkdir(parents=True)
    (outside / "machine-id").write_text("the build machine's id\n")
    (outside / "pi" / ".bash_history").write_text("the build machine's history\n")
    (outside / "log").mkdir()
    (outside / "log" / "syslog").write_text("the build machine's log\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "etc/machine-id").symlink_to(outside / "machine-id")
    (root / "home").symlink_to(outside)
    (root / "var/log").symlink_to(outside / "log")

    clear_identity(root)

    assert (outside / "machine-id").read_text() == "the build machine's id\n"
    assert (outside / "pi" / ".bash_history").is_file()
    assert (outside / "log" / "syslog").read_text() == "the build machine's log\n"
    machine_id = root / "etc/machine-id"
    assert not machine_id.is_symlink() and machine_id.read_text() == ""
    assert not (root / "etc/systemd").exists(), "no ssh-keygen in this tree: no unit"
