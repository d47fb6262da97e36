"""What release a card holds, read from its ext4 root with ``debugfs`` (read-only).

e2fsprogs take ``IMAGE?offset=BYTES``, so nothing is mounted. Read: ``os-release``
(codename), dpkg's architecture, the ``python3.X`` directories under ``/usr/lib``, and
whether cloud-init is installed.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision.errors import ConfigError
from provision.image.errors import ImageError
from provision.planning.targets import normalize_arch


@dataclass(frozen=True)
class RootInfo:
    codename: str | None
    os_id: str | None
    arch: str | None  # normalised: x86_64, aarch64, armv7l
    pythons: tuple[str, ...]  # "3.11", ...
    cloud_init: bool
    #: Instances cloud-init already ran on this card (/var/lib/cloud/instances/*).
    cloud_instances: tuple[str, ...] = ()


def _debugfs(device: str, request: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["debugfs", "-R", request, device],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def _cat(device: str, path: str) -> str | None:
    proc = _debugfs(device, f"cat {path}")
    if proc.returncode != 0 or not proc.stdout or "short read" in proc.stderr:
        return None
    return proc.stdout


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def dpkg_arch(status: str) -> str | None:
    """The architecture dpkg itself is built for, from /var/lib/dpkg/status."""
    for stanza in status.split("\n\n"):
        if re.search(r"^Package: dpkg$", stanza, re.M):
            match = re.search(r"^Architecture: (\S+)$", stanza, re.M)
            return match.group(1) if match else None
    return None


def probe_root(target: Path, offset: int) -> RootInfo:
    """Read the root file system at ``offset``; ImageError when it is not ext2/3/4."""
    device = f"{target}?offset={offset}"
    check = _debugfs(device, "stats -h")
    if check.returncode != 0 or "Filesystem magic number" not in check.stdout:
        raise ImageError(
            f"{target}: the root partition (at byte {offset}) is not an ext4 file system; "
            "is this a Raspberry Pi OS image?"
        )
    text = _cat(device, "/etc/os-release") or _cat(device, "/usr/lib/os-release") or ""
    release = parse_os_release(text)
    codename = release.get("VERSION_CODENAME") or None
    status = _cat(device, "/var/lib/dpkg/status") or ""
    raw_arch = dpkg_arch(status)
    arch = None
    if raw_arch:
        try:
            arch = normalize_arch(raw_arch)
        except ConfigError:
            arch = raw_arch
    listing = _debugfs(device, "ls -p /usr/lib").stdout
    pythons = sorted(
        set(re.findall(r"/python(3\.\d+)/", listing)), key=lambda v: int(v.split(".")[1])
    )
    cloud = _debugfs(device, "stat /usr/bin/cloud-init")
    instances = _debugfs(device, "ls -p /var/lib/cloud/instances")
    return RootInfo(
        codename=codename,
        os_id=release.get("ID") or None,
        arch=arch,
        pythons=tuple(pythons),
        cloud_init=cloud.returncode == 0 and "Inode:" in cloud.stdout,
        cloud_instances=tuple(listed_dirs(instances.stdout)),
    )


def listed_dirs(ls_p: str) -> list[str]:
    """Directory names in ``debugfs ls -p`` output (``/inode/mode/uid/gid/name/size/``)."""
    names = []
    for line in ls_p.splitlines():
        parts = line.split("/")
        if len(parts) >= 6 and parts[2].startswith("04") and parts[5] not in (".", ".."):
            names.append(parts[5])
    return sorted(names)
