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


def test_kernel_summary_names_kernels_headers_and_the_driver_built_for_each(
    tmp_path: Path,
) -> None:
    """A Pi 5 image with kernel8's headers and the DKMS-built driver for it, and the
    default 16k kernel without headers (so without the driver)."""
    modules = tmp_path / "usr/lib/modules"
    v8, k2712 = "6.12.25+rpt-rpi-v8", "6.12.25+rpt-rpi-2712"
    for release in (v8, k2712):
        (modules / release / "kernel").mkdir(parents=True)
    (modules / v8 / "build").mkdir()
    (modules / v8 / "updates/dkms").mkdir(parents=True)
    for name in ("apex.ko.xz", "gasket.ko.xz"):
        (modules / v8 / "updates/dkms" / name).write_bytes(b"module")
    packages = {
        "gasket-dkms": "1.0-18.4",
        "linux-headers-rpi-v8": "1:6.12.25-1+rpt1",
        "linux-image-rpi-2712": "1:6.12.25-1+rpt1",
        "linux-image-rpi-v8": "1:6.12.25-1+rpt1",
        "python3-numpy": "1:1.24.2-1+deb12u1",
    }
    summary = manifest.kernel_summary(tmp_path, packages)
    assert summary == {
        "packages": {k: v for k, v in packages.items() if k != "python3-numpy"},
        "releases": [k2712, v8],
        "headers_for": [v8],
        "driver_modules": {v8: ["updates/dkms/apex.ko.xz", "updates/dkms/gasket.ko.xz"]},
    }
    # an image root without modules (a stand-in card): empty, not an error
    assert manifest.kernel_summary(tmp_path / "none", {})["releases"] == []
