"""The manifest written beside a built image, and the comparison of two of them.

Two builds from the same base image and lock must install the same Debian package versions
and the same files in the venv (``compare`` lists any difference). What legitimately still
differs between two builds is listed in ``STILL_DIFFERS`` and written into every manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Differences two builds from the same base and lock still have (and why).
STILL_DIFFERS = (
    "the output image's sha256: ext4 keeps inode times, and dpkg and ansible write state "
    "with the build's date (/var/lib/dpkg, /var/cache/debconf, the local fact's build time; "
    "the logs, apt's lists and the machine's identity are cleared: identity_cleared)",
    "Debian's own byte-code outside the venv (py3compile at package install) and ld.so.cache",
    "apt's package lists, when the mirror published new versions between the builds "
    "(then the installed versions differ too, and compare() says which)",
)


def installed_packages(root: Path) -> dict[str, str]:
    """Package -> version of every installed package, from dpkg's status file."""
    status = root / "var" / "lib" / "dpkg" / "status"
    found: dict[str, str] = {}
    for stanza in status.read_text(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            arch = fields.get("Architecture", "")
            name = fields["Package"]
            if arch and arch != "all" and name in found:
                name = f"{name}:{arch}"
            found[name] = fields.get("Version", "")
    return dict(sorted(found.items()))


#: Packages of the kernel, its headers and the PCIe Coral's driver (by name prefix).
KERNEL_PACKAGE_PREFIXES = ("linux-image-", "linux-headers-", "raspberrypi-kernel", "gasket-dkms")
#: The PCIe Coral's driver modules (DKMS puts them under updates/dkms).
DRIVER_MODULES = ("apex", "gasket")


def kernel_summary(root: Path, packages: Mapping[str, str]) -> dict[str, Any]:
    """The image's kernels: the kernel, headers and driver packages with their versions,
    the kernel releases under /lib/modules, and for each the driver modules DKMS built
    (what the card boots, and whether the driver is there for it before first boot)."""
    modules_dir = root / "usr" / "lib" / "modules"
    if not modules_dir.is_dir():
        modules_dir = root / "lib" / "modules"
    releases = (
        sorted(p.name for p in modules_dir.iterdir() if p.is_dir())
        if (modules_dir.is_dir())
        else []
    )
    driver: dict[str, list[str]] = {}
    for release in releases:
        found = sorted(
            str(path.relative_to(modules_dir / release))
            for name in DRIVER_MODULES
            for path in (modules_dir / release).rglob(f"{name}.ko*")
        )
        if found:
            driver[release] = found
    return {
        "packages": {
            name: version
            for name, version in packages.items()
            if name.split(":")[0].startswith(KERNEL_PACKAGE_PREFIXES)
        },
        "releases": releases,
        "headers_for": [r for r in releases if (modules_dir / r / "build").exists()],
        "driver_modules": driver,
    }


def tree_hashes(root: Path, directory: str) -> dict[str, str]:
    """Relative path -> sha256 (or ``-> target`` for a link) of every file under
    ``directory`` of the image root."""
    base = root / directory.lstrip("/")
    out: dict[str, str] = {}
    if not base.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            path = Path(dirpath) / name
            rel = str(path.relative_to(base))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256()
                with path.open("rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
                out[rel] = digest.hexdigest()
    return dict(sorted(out.items()))


def compare(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, list[str]]:
    """Differences in installed package versions and venv files (empty lists: the same)."""
    result: dict[str, list[str]] = {}
    for key in ("packages", "venv_files"):
        a: Mapping[str, str] = first.get(key, {})
        b: Mapping[str, str] = second.get(key, {})
        result[key] = [
            f"{name}: {a.get(name, '(absent)')} != {b.get(name, '(absent)')}"
            for name in sorted(set(a) | set(b))
            if a.get(name) != b.get(name)
        ]
    return result


def write(path: Path, manifest: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
