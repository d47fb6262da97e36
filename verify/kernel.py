"""Facts about the running kernel and the PCIe Coral's driver: page size, loaded modules, the
apex module files per kernel, the device nodes and their group, a pending reboot.

Read through a `RootFS`, so a recorded tree (`--root`) stands in for `/`; pure parsers are
separate and tested from recorded text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .rootfs import RootFS
from .safetext import clean

#: Where the driver's module can live under /lib/modules/<release>: DKMS's default
#: destination for gasket-dkms, the older DKMS one, and the in-tree staging driver.
MODULE_DIRS = ("updates/dkms", "extra", "kernel/drivers/staging/gasket")
DRIVER_MODULE = "apex"
#: coralpi_boot's record of a reboot still needed (in /run: gone after the next boot), and
#: Debian's own flag file.
REBOOT_PENDING = "/run/coralpi/reboot-pending"
REBOOT_REQUIRED = "/run/reboot-required"


@dataclass
class KernelFacts:
    release: str | None = None  # /proc/sys/kernel/osrelease (uname -r)
    page_size: int | None = None  # bytes
    loaded_modules: list[str] = field(default_factory=list)  # /proc/modules
    #: kernel release -> the apex module files found for it under /lib/modules
    module_files: dict[str, list[str]] = field(default_factory=dict)
    #: kernel releases whose headers are installed (/lib/modules/<release>/build)
    headers_for: list[str] = field(default_factory=list)
    apex_nodes: list[str] = field(default_factory=list)  # /dev/apex_*
    apex_group: str | None = None  # group owning /dev/apex_0, by name (or its gid)
    reboot_pending: list[str] = field(default_factory=list)
    reboot_required: bool = False

    @property
    def driver_loaded(self) -> bool:
        return DRIVER_MODULE in self.loaded_modules

    @property
    def driver_for_running(self) -> bool:
        return bool(self.release and self.module_files.get(self.release))


def parse_proc_modules(text: str) -> list[str]:
    """Module names from /proc/modules (`name size refs deps state address`)."""
    return [line.split()[0] for line in text.splitlines() if line.split()]


def parse_kernel_page_size(smaps: str) -> int | None:
    """The first `KernelPageSize:  4 kB` of /proc/self/smaps, in bytes."""
    for line in smaps.splitlines():
        if line.startswith("KernelPageSize:"):
            parts = line.split()
            if len(parts) >= 3 and parts[1].isdigit() and parts[2] == "kB":
                return int(parts[1]) * 1024
    return None


def group_name(group_text: str, gid: int) -> str:
    for line in group_text.splitlines():
        parts = line.strip().split(":")
        if len(parts) >= 3 and parts[2] == str(gid):
            return parts[0]
    return str(gid)


def _page_size(fs: RootFS) -> int | None:
    if fs.is_real:
        try:
            return int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return parse_kernel_page_size(fs.read_text("/proc/self/smaps") or "")


def _module_files(fs: RootFS) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for directory in MODULE_DIRS:
        for path in fs.glob(f"/lib/modules/*/{directory}/{DRIVER_MODULE}.ko*"):
            release = path.split("/")[3]
            found.setdefault(release, []).append(path)
    return found


def _apex_group(fs: RootFS, node: str) -> str | None:
    try:
        gid = os.stat(fs.resolve(node)).st_gid
    except OSError:
        return None
    return group_name(fs.read_text("/etc/group") or "", gid)


def gather_kernel(fs: RootFS) -> KernelFacts:
    facts = KernelFacts()
    release = fs.read_text("/proc/sys/kernel/osrelease")
    facts.release = (clean(release.strip()) or None) if release is not None else None
    facts.page_size = _page_size(fs)
    facts.loaded_modules = parse_proc_modules(fs.read_text("/proc/modules") or "")
    facts.module_files = _module_files(fs)
    facts.headers_for = [p.split("/")[3] for p in fs.glob("/lib/modules/*/build")]
    facts.apex_nodes = fs.glob("/dev/apex_*")
    if "/dev/apex_0" in facts.apex_nodes:
        facts.apex_group = _apex_group(fs, "/dev/apex_0")
    pending = fs.read_text(REBOOT_PENDING)
    if pending is not None:
        facts.reboot_pending = [clean(ln.strip()) for ln in pending.splitlines() if ln.strip()]
    facts.reboot_required = fs.exists(REBOOT_REQUIRED)
    return facts
