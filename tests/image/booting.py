"""Helpers shared by the image tests that boot a STAND-IN card with systemd-nspawn.

This kernel has no vfat: a card's boot partition is copied out with mtools before a boot
(and bound on /boot/firmware, where Raspberry Pi OS mounts it) and written back after it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from provision.image.fat import FatVolume
from provision.image.partitions import find_boot_partition, find_root_partition, read_table

MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}


def fat_of(image: Path) -> FatVolume:
    return FatVolume(image, find_boot_partition(image, read_table(image)).start)


def tree_mib(tree: Path) -> int:
    out = subprocess.run(["du", "-sm", str(tree)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def extract_boot(image: Path, dest: Path) -> None:
    fat = fat_of(image)
    dest.mkdir(parents=True)
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", fat.spec, "::/*", str(dest)], check=True, env=MTOOLS_ENV
    )
    # FAT has no permission bits: the vfat driver shows every file as 0755 with Raspberry
    # Pi OS's mount options (umask 022), which is why systemd can run firstrun.sh.
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755)


def write_back_boot(image: Path, src: Path) -> None:
    """What the Pi's vfat driver would have done: the card now holds the files as the
    first boot left them (deleted ones gone, changed ones replaced)."""
    fat = fat_of(image)
    kept = {p.name.lower() for p in src.iterdir()}
    for name in fat.listdir("/"):
        if name.lower() not in kept:
            fat.remove_tree(f"/{name}") if name.lower() in (
                "coralpi",
                "coralpi-report",
            ) else fat.remove(f"/{name}")
    for entry in sorted(src.iterdir()):
        if entry.is_dir():
            fat.remove_tree(f"/{entry.name}")
            fat.copy_tree(entry, "/")
        else:
            fat.copy_files([entry], "/")


@contextmanager
def mounted_root(image: Path, mnt: Path, *, readonly: bool = False) -> Iterator[Path]:
    """The card's ext4 root, loop-mounted at ``mnt`` (unmounted and detached afterwards)."""
    root = find_root_partition(image, read_table(image))
    mnt.mkdir(parents=True, exist_ok=True)
    options = f"loop,offset={root.start},sizelimit={root.size}" + (",ro" if readonly else "")
    subprocess.run(["mount", "-o", options, str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-d", str(mnt)], check=False)


def nspawn_argv(
    root: Path,
    boot: Path,
    name: str,
    *,
    netns: str | None = None,
    words: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """``systemd-nspawn --boot`` on ``root`` with ``boot`` bound on /boot/firmware: in the
    test fleet's network namespace ``netns``, else with no network at all; ``words`` go
    to the container's systemd as kernel command line words."""
    network = f"--network-namespace-path=/run/netns/{netns}" if netns else "--private-network"
    argv = [
        "systemd-nspawn",
        "--boot",
        "--directory",
        str(root),
        "--register=no",
        "--keep-unit",
        network,
        f"--bind={boot}:/boot/firmware",
        f"--machine={name}",
    ]
    return [*argv, "--", *words] if words else argv


@contextmanager
def booted(root: Path, boot: Path, log: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`nspawn_argv` with no network; on leaving, the container is powered off by the
    PID started here (SIGTERM: nspawn halts its systemd; SIGKILL after two minutes)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            nspawn_argv(root, boot, name),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(
    done: Callable[[], bool], procs: list[subprocess.Popen[bytes]], timeout: float
) -> float:
    """Seconds until ``done()``; returns early when a container ended or at ``timeout``."""
    start = time.monotonic()
    while (
        not done() and all(p.poll() is None for p in procs) and time.monotonic() - start < timeout
    ):
        time.sleep(1)
    return time.monotonic() - start
