"""The image manifest's package list, venv hashes and the comparison of two builds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from provision.image import manifest

STATUS = """Package: python3-numpy
Status: install ok installed
Architecture: amd64
Version: 1:1.24.2-1+deb12u1

Package: libfoo1
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u9
Description: GNU C Library
 multi-line description: Version: not a field

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.36-9+deb12u9
"""


def test_installed_packages_reads_dpkg_status(tmp_path: Path) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(STATUS)
    assert manifest.installed_packages(tmp_path) == {
        "libc6": "2.36-9+deb12u9",
        "libc6:i386": "2.36-9+deb12u9",
        "python3-numpy": "1:1.24.2-1+deb12u1",
    }


def test_tree_hashes_hash_files_and_record_links(tmp_path: Path) -> None:
    venv = tmp_path / "opt/venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python3.11").write_bytes(b"elf")
    os.symlink("python3.11", venv / "bin/python")
    os.symlink("lib", venv / "lib64")
    (venv / "lib").mkdir()
    assert manifest.tree_hashes(tmp_path, "/opt/venv") == {
        "bin/python": "-> python3.11",
        "bin/python3.11": hashlib.sha256(b"elf").hexdigest(),
        "lib64": "-> lib",
    }
    assert manifest.tree_hashes(tmp_path, "/opt/missing") == {}


def test_compare_lists_every_difference_and_nothing_else() -> None:
    a = {"packages": {"a": "1", "b": "2"}, "venv_files": {"x.py": "h1", "y.py": "h2"}}
    b = {"packages": {"a": "1", "b": "3", "c": "1"}, "venv_files": {"x.py": "h1"}}
    assert manifest.compare(a, a) == {"packages": [], "venv_files": []}
    assert manifest.compare(a, b) == {
        "packages": ["b: 2 != 3", "c: (absent) != 1"],
        "venv_files": ["y.py: h2 != (absent)"],
    }
