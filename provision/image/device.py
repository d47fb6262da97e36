"""Is it safe to write to this target? Image file or block device, checked before any write.

A block device is refused when it or one of its partitions is mounted (or used as swap),
when it holds this machine's root file system, or when it is smaller than its own partition
table says (a truncated copy); writing to one asks for confirmation unless ``--yes``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from provision.image.errors import ImageError

SYS_BLOCK = Path("/sys/class/block")


@dataclass(frozen=True)
class Target:
    path: Path
    is_block: bool
    size: int  # bytes
    description: str  # for the confirmation question


def _dev_numbers(path: Path) -> str:
    st = path.stat()
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _sys_entry(devno: str) -> Path | None:
    for entry in SYS_BLOCK.iterdir() if SYS_BLOCK.is_dir() else []:
        try:
            if (entry / "dev").read_text().strip() == devno:
                return entry.resolve()
        except OSError:
            continue
    return None


def disk_and_parts(path: Path) -> tuple[str, set[str]]:
    """(the whole disk's "maj:min", "maj:min" of it and all its partitions)."""
    devno = _dev_numbers(path)
    entry = _sys_entry(devno)
    if entry is None:
        return devno, {devno}
    if (entry / "partition").exists():
        raise ImageError(
            f"{path} is a partition; give the whole card ({Path('/dev') / entry.parent.name}), "
            "coralpi finds the boot partition itself"
        )
    numbers = {devno}
    for child in entry.iterdir():
        dev_file = child / "dev"
        if (child / "partition").exists() and dev_file.exists():
            numbers.add(dev_file.read_text().strip())
    for holder in (entry / "holders").iterdir() if (entry / "holders").is_dir() else []:
        dev_file = holder / "dev"
        if dev_file.exists():
            numbers.add(dev_file.read_text().strip())
    return devno, numbers


def mounted_devnos(mountinfo: str) -> dict[str, str]:
    """``{"maj:min": mount point}`` from /proc/self/mountinfo text (pure)."""
    found: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            found.setdefault(fields[2], fields[4])
    return found


def swap_devnos(swaps: str) -> set[str]:
    numbers = set()
    for line in swaps.splitlines()[1:]:
        name = line.split()[0] if line.split() else ""
        try:
            numbers.add(_dev_numbers(Path(name)))
        except (OSError, ValueError):
            continue
    return numbers


def root_disk_devnos(mountinfo: str) -> set[str]:
    """The "maj:min" of the device holding / and of its whole disk (when it has one)."""
    numbers = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            numbers.add(fields[2])
    for devno in list(numbers):
        entry = _sys_entry(devno)
        if entry is not None and (entry / "partition").exists():
            numbers.add((entry.parent / "dev").read_text().strip())
    return numbers


def check_block_device(
    path: Path,
    mountinfo: str,
    swaps: str = "",
    root_devnos: Iterable[str] | None = None,
) -> None:
    """Refuse a mounted card, a card used as swap, or this machine's own disk."""
    disk, numbers = disk_and_parts(path)
    own = set(root_devnos) if root_devnos is not None else root_disk_devnos(mountinfo)
    if disk in own or numbers & own:
        raise ImageError(f"{path} holds this machine's root file system: refusing to write to it")
    mounts = mounted_devnos(mountinfo)
    busy = sorted(mounts[n] for n in numbers if n in mounts)
    busy += looped_mounts(path, mounts)
    if busy:
        raise ImageError(
            f"{path} is mounted (at {', '.join(busy)}): unmount every partition of the card "
            "first (a desktop may have auto-mounted it)"
        )
    if numbers & swap_devnos(swaps):
        raise ImageError(f"{path} is in use as swap: refusing to write to it")


def loop_backing_file(devno: str) -> Path | None:
    entry = _sys_entry(devno)
    if entry is None:
        return None
    try:
        return Path((entry / "loop" / "backing_file").read_text().strip())
    except OSError:
        return None


def looped_mounts(path: Path, mounts: dict[str, str]) -> list[str]:
    """Mount points of loop devices whose backing file is ``path`` (a partition of the
    image or card mounted with ``mount -o loop,offset=...`` or ``losetup -o``)."""
    real = path.resolve()
    found = []
    for devno, where in mounts.items():
        backing = loop_backing_file(devno)
        if backing is not None and backing.resolve() == real:
            found.append(where)
    return sorted(found)


def check_image_file(path: Path, mountinfo: str) -> None:
    """Refuse an image file while a partition of it is loop-mounted."""
    busy = looped_mounts(path, mounted_devnos(mountinfo))
    if busy:
        raise ImageError(
            f"{path} is mounted (at {', '.join(busy)}) through a loop device: unmount it first"
        )


def block_size(path: Path) -> int:
    with path.open("rb") as handle:
        return handle.seek(0, os.SEEK_END)


def _describe_block(path: Path) -> str:
    entry = _sys_entry(_dev_numbers(path))
    bits = []
    if entry is not None:
        for name in ("device/vendor", "device/model"):
            try:
                bits.append((entry / name).read_text().strip())
            except OSError:
                continue
    return " ".join(b for b in bits if b)


def open_target(path: Path) -> Target:
    """The target, or ImageError when it is neither a regular file nor a block device."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file or device") from None
    if stat.S_ISREG(st.st_mode):
        return Target(path, False, st.st_size, f"image file {path}")
    if stat.S_ISBLK(st.st_mode):
        size = block_size(path)
        what = _describe_block(path)
        gib = size / 2**30
        return Target(
            path, True, size, f"block device {path}{f' ({what})' if what else ''}, {gib:.1f} GiB"
        )
    raise ImageError(f"{path}: not a disk image or block device")


def check_size(target: Target, table_end: int) -> None:
    if target.size < table_end:
        raise ImageError(
            f"{target.path}: {target.size} bytes, but its partition table ends at byte "
            f"{table_end}: a truncated image or a card too small for what was written to it"
        )


def confirm(target: Target, assume_yes: bool, ask: Callable[[str], str] | None = None) -> None:
    """Ask before writing to a block device; refuse without a terminal unless ``--yes``."""
    if not target.is_block or assume_yes:
        return
    if ask is None:
        if not sys.stdin.isatty():
            raise ImageError(
                f"{target.description}: writing to a block device needs confirmation; "
                "run on a terminal or pass --yes"
            )
        ask = input
    answer = ask(f"Write the coralpi bundle to {target.description}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise ImageError(f"{target.path}: not confirmed, nothing written")


def system_state() -> tuple[str, str]:
    """(/proc/self/mountinfo, /proc/swaps) of this machine."""

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    return read("/proc/self/mountinfo"), read("/proc/swaps")
