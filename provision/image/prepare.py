"""``coralpi image prepare``: check the card, build the bundle, write bundle and hook.

Order matters: every check that can refuse (target kind, mounted or own disk, partition
table, FAT boot partition, release/arch/python on the card, an existing hook that cannot be
merged, free space) runs before the first byte is written, and a block device is written
only after confirmation (or ``--yes``).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provision.image import hook_cloudinit, hook_firstrun
from provision.image.bundle import BUNDLE_NAME, Bundle, build_bundle, card_files
from provision.image.device import (
    Target,
    check_block_device,
    check_image_file,
    check_size,
    confirm,
    open_target,
    system_state,
)
from provision.image.errors import ImageError
from provision.image.fat import FatVolume, tree_size
from provision.image.partitions import (
    Partition,
    find_boot_partition,
    find_root_partition,
    read_table,
)
from provision.image.planning import HostPlan, check_against_card
from provision.image.rootfs_probe import RootInfo, probe_root

REPORT_DIR = "coralpi-report"
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
#: Room kept free on the boot partition beyond the bundle (firmware updates, the report).
MARGIN = 4 * 2**20


@dataclass(frozen=True)
class Card:
    target: Target
    boot: Partition
    root: Partition
    info: RootInfo

    @property
    def fat(self) -> FatVolume:
        return FatVolume(self.target.path, self.boot.start)


@dataclass
class Prepared:
    card: Card
    route: str
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def check_hostname(name: str) -> str:
    if not _HOSTNAME.match(name):
        raise ImageError(
            f"--hostname {name!r}: a hostname is 1-63 letters, digits and inner hyphens"
        )
    return name


def read_ssh_key(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImageError(f"--ssh-key {path}: {exc.strerror or exc}") from None
    if "PRIVATE KEY" in text:
        raise ImageError(f"--ssh-key {path} is a private key; give the .pub file")
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not keys or not all(re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", k) for k in keys):
        raise ImageError(f"--ssh-key {path}: not an OpenSSH public key (authorized_keys lines)")
    return "\n".join(keys)


def inspect_card(
    path: Path,
    *,
    mountinfo: str | None = None,
    swaps: str = "",
    root_devnos: list[str] | None = None,
) -> Card:
    """Open and check the target without writing (ImageError names the first problem)."""
    target = open_target(path)
    if mountinfo is None:
        mountinfo, swaps = system_state()
    if target.is_block:
        check_block_device(path, mountinfo, swaps, root_devnos)
    else:
        check_image_file(path, mountinfo)
    table = read_table(path)
    check_size(target, table.end)
    boot = find_boot_partition(path, table)
    root = find_root_partition(path, table)
    return Card(target, boot, root, probe_root(path, root.start))


def hook_files(card: Card, route: str, hostname: str) -> dict[str, str]:
    """The boot-partition files the hook needs, merged with what is there (may refuse)."""
    fat = card.fat
    where = f"{card.target.path}: boot partition"
    cmdline = fat.read_text("/cmdline.txt")
    if cmdline is None:
        raise ImageError(f"{where} has no cmdline.txt: not a Raspberry Pi OS boot partition")
    if route == "firstrun":
        return {
            "/firstrun.sh": hook_firstrun.firstrun_with_hook(
                fat.read_text("/firstrun.sh"), f"{where}: firstrun.sh"
            ),
            "/cmdline.txt": hook_firstrun.cmdline_with_hook(cmdline, f"{where}: cmdline.txt"),
        }
    used = card.info.cloud_instances
    meta = hook_cloudinit.meta_data_with_hook(
        fat.read_text("/meta-data"),
        hostname,
        salt=f"{hostname}:{time.time_ns()}",
        where=f"{where}: meta-data",
        used_ids=used,
    )
    files = {
        "/user-data": hook_cloudinit.user_data_with_hook(
            fat.read_text("/user-data"), hostname, f"{where}: user-data"
        ),
        "/meta-data": meta,
        "/cmdline.txt": hook_cloudinit.cmdline_with_nocloud(
            cmdline, hook_cloudinit.meta_instance_id(meta), f"{where}: cmdline.txt", used
        ),
    }
    network = hook_cloudinit.network_config_default(fat.read_text("/network-config"))
    if network is not None:
        files["/network-config"] = network
    return files


def plan_for_card(card: Card, host: HostPlan) -> str:
    route = check_against_card(host.plan, card.info, str(card.target.path))
    return route


def write_card(
    card: Card, bundle: Bundle, hostname: str, ssh_keys: str | None, hooks: dict[str, str]
) -> list[str]:
    """Write bundle, per-card files and hook files; return what was written."""
    fat = card.fat
    fat.remove_tree(f"/{BUNDLE_NAME}")
    fat.remove_tree(f"/{REPORT_DIR}")
    fat.copy_tree(bundle.dir, "/")
    written = [f"/{BUNDLE_NAME}/"]
    for rel, text in card_files(bundle, hostname, ssh_keys).items():
        fat.write_text(f"/{BUNDLE_NAME}/{rel}", text)
        written.append(f"/{BUNDLE_NAME}/{rel}")
    for path, text in hooks.items():
        if fat.read_text(path) != text:
            fat.write_text(path, text)
            written.append(path)
    return written


def check_room(card: Card, bundle: Bundle) -> None:
    need = tree_size(bundle.dir) + MARGIN
    fat = card.fat
    free = fat.free_bytes()
    if fat.exists(f"/{BUNDLE_NAME}"):
        # Preparing again: the old bundle is replaced, its room counts as free.
        free += tree_size_on_card(fat)
    if free < need:
        raise ImageError(
            f"{card.target.path}: the boot partition has {free / 2**20:.1f} MiB free, the "
            f"bundle needs {need / 2**20:.1f} MiB (with {MARGIN // 2**20} MiB to spare): "
            "card or boot partition too small"
        )


def tree_size_on_card(fat: FatVolume) -> int:
    import subprocess

    proc = subprocess.run(
        ["mdu", "-s", "-i", fat.spec, f"::/{BUNDLE_NAME}"],
        capture_output=True,
        text=True,
        check=False,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    match = re.search(r"(\d+)\s*$", proc.stdout.strip())
    # mdu counts clusters; a cluster is at most 64 KiB, count it low at 4 KiB.
    return int(match.group(1)) * 4096 if match and proc.returncode == 0 else 0


def prepare(
    path: Path,
    hostname: str,
    host_plan: Callable[[], HostPlan],
    *,
    ssh_key: Path | None = None,
    lock_file: Path | None = None,
    cache_dir: Path | None = None,
    assume_yes: bool = False,
    ask: Callable[[str], str] | None = None,
    bundle: Bundle | None = None,
    dry_run: bool = False,
    inspect: Callable[[Path], Card] = inspect_card,
) -> Prepared:
    """Prepare one card. ``host_plan`` is called once the card passed its own checks;
    ``bundle`` reuses a bundle built for an earlier card (10 cards, one bundle)."""
    start = time.monotonic()
    check_hostname(hostname)
    keys = read_ssh_key(ssh_key)
    card = inspect(path)
    host = bundle.host if bundle is not None else host_plan()
    route = plan_for_card(card, host)
    hooks = hook_files(card, route, hostname)
    result = Prepared(card, route)
    if not dry_run:
        confirm(card.target, assume_yes, ask)
    with tempfile.TemporaryDirectory(prefix="coralpi-bundle-") as tmp:
        if bundle is None:
            bundle = build_bundle(host, route, Path(tmp), cache_dir=cache_dir, lock_file=lock_file)
        elif bundle.route != route:
            raise ImageError(f"{path}: a {route} card cannot take a {bundle.route} bundle")
        check_room(card, bundle)
        result.notes.append(bundle.ansible.reason)
        if dry_run:
            result.notes.append("dry run: nothing written")
        else:
            result.written = write_card(card, bundle, hostname, keys, hooks)
    result.seconds = round(time.monotonic() - start, 2)
    return result
