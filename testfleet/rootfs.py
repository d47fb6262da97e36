"""Debian root filesystems for test hosts: debootstrap once, cache as tar.zst, reuse.

A tree is prepared like a freshly flashed Raspberry Pi OS card: no SSH host keys, an empty
machine-id, a ``pi`` user with passwordless sudo, and a ``policy-rc.d`` so apt starts no
daemons. Per-fleet details (the SSH key that may log in, the apt proxy address, the hostname)
are written into each host's own overlay layer by :mod:`testfleet.hosts`, not here.

The cache is keyed by the recipe (suite, architecture, package list, mirror, preparation
script): change any of them and the next run builds a new tree.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import interrupts
from .binfmt import BinfmtUse, native_arch
from .cmd import file_lock, run
from .errors import FleetError
from .mirror import debian_mirror

#: Packages on top of debootstrap's minbase: what Ansible and the roles need to start with.
INCLUDE = (
    "python3",
    "python3-apt",
    "python3-venv",
    "openssh-server",
    "sudo",
    "apt-utils",
    "ca-certificates",
    "gnupg",
    "iproute2",
)

#: A tree that boots with systemd (hosts with init="systemd"; the image tests' cards).
SYSTEMD_INCLUDE = (*INCLUDE, "systemd", "systemd-sysv", "dbus")

#: Prepares the tree like a freshly flashed Pi; $1 is the tree.
PREPARE_SCRIPT = r"""
set -eu
R="$1"
rm -f "$R"/etc/ssh/ssh_host_*
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
chroot "$R" useradd --create-home --shell /bin/bash --groups sudo pi
chroot "$R" usermod --password '*' pi
chroot "$R" install -d -m 700 -o pi -g pi /home/pi/.ssh
printf 'pi ALL=(ALL) NOPASSWD: ALL\n' > "$R/etc/sudoers.d/010_pi-nopasswd"
chmod 440 "$R/etc/sudoers.d/010_pi-nopasswd"
printf '#!/bin/sh\n# test fleet host: packages start no daemons\nexit 101\n' \
  > "$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"
printf '# test fleet host: no DNS server is reachable\n' > "$R/etc/resolv.conf"
printf 'raspberrypi\n' > "$R/etc/hostname"
chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/*
mkdir -p "$R/var/lib/apt/lists/partial"
"""

#: Bump when the way trees are built changes in a way the recipe does not show.
RECIPE_REVISION = 1


@dataclass(frozen=True)
class RootfsRecipe:
    """What goes into one cached root filesystem."""

    suite: str
    arch: str
    mirror: str
    include: tuple[str, ...] = INCLUDE
    variant: str = "minbase"

    def key(self) -> str:
        payload = json.dumps(
            {
                "suite": self.suite,
                "arch": self.arch,
                "mirror": self.mirror,
                "include": sorted(self.include),
                "variant": self.variant,
                "prepare": PREPARE_SCRIPT,
                "revision": RECIPE_REVISION,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Rootfs:
    """A ready tree (usable as an overlay lower layer) and how it was obtained."""

    suite: str
    arch: str
    tree: Path
    tarball: Path
    action: str  # "cached", "extracted" or "built"
    seconds: float


def recipe_for(
    suite: str, arch: str = "amd64", mirror: str | None = None, *, systemd: bool = False
) -> RootfsRecipe:
    """The recipe for suite/arch from this machine's mirror (foreign arches need binfmt);
    ``systemd``: with systemd as init (:data:`SYSTEMD_INCLUDE`)."""
    return RootfsRecipe(
        suite=suite,
        arch=arch,
        mirror=mirror or debian_mirror(),
        include=SYSTEMD_INCLUDE if systemd else INCLUDE,
    )


def ensure_rootfs(recipe: RootfsRecipe, cache: Path) -> Rootfs:
    """Return a prepared tree for the recipe, building or unpacking it if needed.

    Safe to call from several processes at once: one builds, the others wait.
    """
    base = cache / "rootfs" / f"{recipe.suite}-{recipe.arch}-{recipe.key()}"
    tree = base / "tree"
    tarball = base / "rootfs.tar.zst"
    ready = base / "tree.ok"
    start = time.monotonic()
    with file_lock(cache / "rootfs" / f"{base.name}.lock"):
        if ready.exists():
            action = "cached"
        elif tarball.exists():
            _extract(tarball, tree)
            ready.touch()
            action = "extracted"
        else:
            _build(recipe, cache, base)
            ready.touch()
            action = "built"
    seconds = round(time.monotonic() - start, 2)
    if action != "cached":
        (base / f"{action}.json").write_text(json.dumps({"seconds": seconds}) + "\n")
    return Rootfs(recipe.suite, recipe.arch, tree, tarball, action, seconds)


def _extract(tarball: Path, tree: Path) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    run(["tar", "--use-compress-program=zstd -d", "--numeric-owner", "-xpf", tarball, "-C", tree])


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path in this mount namespace, deepest first."""
    found: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]))
        if point == path or path in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unmount_under(path: Path) -> None:
    """Unmount what a build left mounted in its tree (debootstrap mounts proc and sys
    there and does not unmount them when it is killed)."""
    for point in mounts_under(path):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "--lazy", point], check=False)


def _build(recipe: RootfsRecipe, cache: Path, base: Path) -> None:
    """debootstrap (two stages under qemu for a foreign architecture), prepare, pack.

    A foreign tree's second stage and preparation run its own binaries, so the build holds
    a share of the qemu registration itself (released when it ends, even on failure): a
    caller need not have a fleet of that architecture up."""
    building = base / "tree.building"
    emulation = BinfmtUse({recipe.arch})
    try:
        _build_in(recipe, cache, base, building)
    except BaseException:
        with interrupts.deferred():
            _unmount_under(building.resolve())
        raise
    finally:
        emulation.close()


def _build_in(recipe: RootfsRecipe, cache: Path, base: Path, building: Path) -> None:
    if building.exists():
        _unmount_under(building.resolve())  # an earlier build was killed
        shutil.rmtree(building)
    building.mkdir(parents=True)
    debs = cache / "debootstrap-debs" / f"{recipe.suite}-{recipe.arch}"
    debs.mkdir(parents=True, exist_ok=True)
    log = base / "build.log"
    foreign = recipe.arch != native_arch()
    steps = [
        [
            "debootstrap",
            f"--variant={recipe.variant}",
            f"--arch={recipe.arch}",
            f"--include={','.join(recipe.include)}",
            f"--cache-dir={debs}",
            *(["--foreign"] if foreign else []),
            recipe.suite,
            str(building),
            recipe.mirror,
        ]
    ]
    if foreign:
        steps.append(["chroot", str(building), "/debootstrap/debootstrap", "--second-stage"])
    with log.open("w") as out:
        for step in steps:
            proc = run(step, timeout=3600, check=False)
            out.write(f"$ {' '.join(step)}\n{proc.stdout}{proc.stderr}")
            if proc.returncode != 0:
                raise FleetError(
                    f"{' '.join(step[:2])} for {recipe.suite}/{recipe.arch} failed "
                    f"(exit {proc.returncode}); see {log}"
                )
    run(["sh", "-c", PREPARE_SCRIPT, "prepare", building])
    (base / "recipe.json").write_text(
        json.dumps(
            {
                "suite": recipe.suite,
                "arch": recipe.arch,
                "mirror": recipe.mirror,
                "include": list(recipe.include),
                "variant": recipe.variant,
            },
            indent=2,
        )
        + "\n"
    )
    partial = base / "rootfs.tar.zst.part"
    run(
        [
            "sh",
            "-c",
            'tar --numeric-owner --xattrs -C "$1" -cf - . | zstd -q -T0 -3 -f -o "$2"',
            "pack",
            building,
            partial,
        ],
        timeout=1800,
    )
    partial.rename(base / "rootfs.tar.zst")
    tree = base / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    building.rename(tree)
