"""Running arm64/armhf hosts on x86_64: qemu-user-static through binfmt_misc.

Registration is machine-wide, so it is shared: every fleet with a foreign-architecture host
holds a shared flock on /run/coralpi-testfleet/binfmt.lock while it lives; the last one to
leave removes the entries (only ours, named ``coralpi-qemu-*``). Registering and removing
happen under a second, short-held lock (``binfmt.register.lock``), so a fleet starting
while others run registers at once instead of waiting for them all to end. Flags ``POCF``:
``C`` makes setuid programs such as sudo work, ``F`` opens the interpreter at registration
so it works inside the host's chroot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
from collections.abc import Iterator
from pathlib import Path

from .cmd import run
from .errors import FleetError
from .paths import RUN_DIR

BINFMT = Path("/proc/sys/fs/binfmt_misc")
LOCK = RUN_DIR / "binfmt.lock"
#: Held only while entries are registered or removed.
REGISTER_LOCK = RUN_DIR / "binfmt.register.lock"

#: Debian architecture -> (qemu name, ELF magic, mask).
MAGIC = {
    "arm64": (
        "aarch64",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
    "armhf": (
        "arm",
        r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
}

NATIVE = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}


def native_arch() -> str:
    return NATIVE.get(platform.machine(), platform.machine())


def entry_name(arch: str) -> str:
    return f"coralpi-qemu-{MAGIC[arch][0]}"


def _interpreter(arch: str) -> Path:
    qemu = MAGIC[arch][0]
    # Debian's wrapper name tells qemu it runs with the P (preserve argv[0]) flag.
    for candidate in (
        Path(f"/usr/libexec/qemu-binfmt/{qemu}-binfmt-P"),
        Path(f"/usr/bin/qemu-{qemu}-static"),
    ):
        if candidate.exists():
            return candidate
    raise FleetError(f"{arch} hosts need qemu-user-static (qemu-{qemu}-static not found)")


def can_emulate(arch: str) -> bool:
    """True if hosts of arch can run here (native, or qemu-user-static is installed)."""
    if arch == native_arch():
        return True
    try:
        _interpreter(arch)
    except (FleetError, KeyError):
        return False
    return True


def _mount() -> None:
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=False)
    if not (BINFMT / "register").exists():
        raise FleetError("binfmt_misc is not available (cannot run foreign-architecture hosts)")


class BinfmtUse:
    """A fleet's share of the qemu registration (release with close())."""

    def __init__(self, arches: set[str]) -> None:
        self.arches = {a for a in arches if a != native_arch()}
        self._fd: int | None = None
        if not self.arches:
            return
        unknown = self.arches - set(MAGIC)
        if unknown:
            raise FleetError(f"unsupported host architecture(s): {sorted(unknown)}")
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with _register_lock():
            fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                # Shared with the other users from the start: no waiting for them to end.
                fcntl.flock(fd, fcntl.LOCK_SH)
                _mount()
                for arch in sorted(self.arches):
                    if not (BINFMT / entry_name(arch)).exists():
                        _, magic, mask = MAGIC[arch]
                        line = f":{entry_name(arch)}:M::{magic}:{mask}:{_interpreter(arch)}:POCF"
                        (BINFMT / "register").write_text(line)
            except BaseException:
                # Failed or interrupted half way: take back what we registered, unless
                # another fleet uses it (we hold the register lock already).
                try:
                    _remove_unlocked(fd)
                finally:
                    os.close(fd)
                raise
        self._fd = fd

    def close(self) -> None:
        """Drop our share; the last user removes the registration."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _remove_if_unused(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _register_lock() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(REGISTER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_if_unused(fd: int) -> bool:
    with _register_lock():
        return _remove_unlocked(fd)


def _remove_unlocked(fd: int) -> bool:
    """Remove our entries if fd's share is the only one (caller holds the register lock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # another fleet still uses it
    for arch in MAGIC:
        entry = BINFMT / entry_name(arch)
        if entry.exists():
            entry.write_text("-1")
    return True


def leftover_entries() -> list[str]:
    """Our qemu entries still registered although no fleet uses them (a crash left them).

    Only looks: under the register lock, a share-free binfmt.lock means no fleet holds one.
    """
    names = [entry_name(arch) for arch in MAGIC if (BINFMT / entry_name(arch)).exists()]
    if not names:
        return []
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with _register_lock():
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # a fleet uses them
        finally:
            os.close(fd)
        return [name for name in names if (BINFMT / name).exists()]


def remove_unused_registration() -> bool:
    """Remove our qemu entries if no running fleet uses them (after crashed runs)."""
    if not any((BINFMT / entry_name(arch)).exists() for arch in MAGIC):
        return True
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        return _remove_if_unused(fd)
    finally:
        os.close(fd)
