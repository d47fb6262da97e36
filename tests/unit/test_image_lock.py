"""Everything a card or image installs comes from the lock: ``image build`` refuses, before
writing anything, when the lock's ansible-core wheel (the Pi's Ansible) is neither in the
artifact cache nor where the entry says (no network is used: the entry's URL is a file
that does not exist)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision.artifacts import lockfile, pi_ansible

REPO = Path(__file__).resolve().parents[2]


def test_image_build_names_the_lock_entry_and_coralpi_fetch(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("image build refuses to run without root before it reads the lock")
    base = tmp_path / "base.img.xz"  # a real .xz: the card checks come after decompressing
    base.write_bytes(
        subprocess.run(["xz", "-c"], input=b"\0" * 65536, capture_output=True, check=True).stdout
    )
    version = pi_ansible.controller_version()
    name = f"ansible_core-{version}-py3-none-any.whl"
    entry = lockfile.Artifact(
        "wheel",
        name,
        version,
        (tmp_path / "gone" / name).as_uri(),
        hashlib.sha256(b"wheel").hexdigest(),
        5,
        "the Pi's Ansible",
    )
    lock = tmp_path / "coralpi.lock"
    lockfile.write_if_changed(lock, lockfile.Lock(shared=(entry,)))
    before = lock.read_bytes()
    out = tmp_path / "golden.img"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provision",
            "image",
            "build",
            "--base",
            str(base),
            "--out",
            str(out),
            "--platform",
            "bookworm/x86_64/3.11",
            "--lock",
            str(lock),
            "--cache-dir",
            str(tmp_path / "empty-cache"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=120,
        env=dict(os.environ, CORALPI_NO_PROGRESS="1"),
    )
    assert proc.returncode == 1, proc.stderr
    assert f"[[shared]] wheel {name} (ansible-core {version}" in proc.stderr, proc.stderr
    assert entry.sha256 in proc.stderr
    assert f"coralpi fetch --lock {lock}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "base.img.xz",
        "coralpi.lock",
        "empty-cache",
    ], "nothing written beside --out"
    assert lock.read_bytes() == before
