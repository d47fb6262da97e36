"""``coralpi image build``: a golden image, provisioned by the same roles as ``apply``.

1. Checks, before anything is written: the base is a disk image (``.img`` or ``.img.xz``)
   with a FAT boot and an ext4 root partition, its release/arch/Python match the plan, the
   Pi's Python runs the bundle's Ansible, a foreign architecture has its qemu-user handler,
   the output does not exist (unless ``--force``) and its disk has room, and every file
   the image installs is at hand: the lock's (``coralpi fetch`` fills the cache ahead, so
   the build needs no network but the apt mirror or proxy), the Pi's ansible-core wheel
   included; a file that cannot be had is refused naming its lock entry.
2. The base is copied (or decompressed) to ``OUT.part``; the root partition and its ext4
   grow by ``--grow-mib`` (packages need room; Raspberry Pi OS grows the root to the card
   at its first boot anyway).
3. The first-boot bundle (:mod:`provision.image.bundle`: playbooks, plan, locked artifacts,
   Ansible) is staged in a directory that appears as ``/boot/firmware`` inside the root, with
   the card's ``config.txt``/``cmdline.txt`` beside it; in a chroot of the root,
   ``firstboot.sh image-build`` installs Ansible and runs ``playbooks/image.yml`` with
   ``-c local``: provision.yml (the roles of ``apply``), then verify installed as a one-shot
   first-boot unit. Debian packages come through the plan's mirror or ``coralpi_apt_proxy``;
   everything else from the bundle.
4. ``config.txt`` goes back to the boot partition when the camera role changed it; the
   manifest (:mod:`provision.image.manifest`) and the build log go beside the image, and
   ``OUT.part`` becomes ``OUT``. On any failure ``OUT.part`` is deleted, the log is kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provision import __version__
from provision.artifacts import pi_ansible
from provision.artifacts.cache import sha256_file
from provision.errors import HostFailed
from provision.image import chroot, identity, manifest
from provision.image.bundle import BUNDLE_NAME, build_bundle, card_files, gather_artifacts
from provision.image.device import check_image_file, open_target, system_state
from provision.image.errors import ImageError
from provision.image.fat import FatVolume
from provision.image.partitions import (
    Partition,
    PartitionTable,
    find_boot_partition,
    find_root_partition,
    read_table,
)
from provision.image.planning import HostPlan, check_against_card
from provision.image.rootfs_probe import RootInfo, probe_root

XZ_MAGIC = b"\xfd7zXZ\x00"
ROUTE = "image-build"
#: Boot-partition files the roles may read or change (the camera role edits config.txt).
BOOT_FILES = ("config.txt", "cmdline.txt")
DEFERRED = (
    "udev rules taking effect and the accelerator's device node (need the running Pi)",
    "the smoke test on the Edge TPU (or the CPU): coralpi-firstboot-verify.service writes "
    "coralpi-report/verify.json to the boot partition at the first boot",
    "the camera's detection (the firmware reads config.txt at boot)",
)


@dataclass(frozen=True)
class Opened:
    table: PartitionTable
    boot: Partition
    root: Partition
    info: RootInfo


@dataclass
class Built:
    out: Path
    manifest_path: Path
    log_path: Path
    manifest: dict[str, Any]
    seconds: float


def side_path(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def is_xz(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(6) == XZ_MAGIC


def xz_size(path: Path) -> int:
    proc = subprocess.run(
        ["xz", "--robot", "--list", str(path)], capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines() if proc.returncode == 0 else ():
        fields = line.split("\t")
        if fields[0] == "totals" and len(fields) > 4:
            return int(fields[4])
    raise ImageError(f"{path}: not a readable .xz file ({proc.stderr.strip()})")


def inspect_image(path: Path) -> Opened:
    table = read_table(path)
    boot = find_boot_partition(path, table)
    root = find_root_partition(path, table)
    return Opened(table, boot, root, probe_root(path, root.start))


SIDE_FILES = (".part", ".build.log", ".manifest.json", ".manifest.json.part", ".lock")


def check_paths(base: Path, out: Path, force: bool) -> None:
    target = open_target(base)
    if target.is_block:
        raise ImageError(f"--base {base}: a block device; give an image file (.img or .img.xz)")
    if out.exists() and out.resolve() == base.resolve():
        raise ImageError("--out is the base image itself: give a new file name")
    for suffix in SIDE_FILES:
        side = side_path(out, suffix)
        if side.exists() and side.resolve() == base.resolve():
            raise ImageError(
                f"--out {out}: the build writes {side.name}, which is the base "
                "image: choose another --out"
            )
    if out.exists() and not force:
        raise ImageError(f"--out {out} exists: pass --force to replace it")
    if out.exists() and not out.is_file():
        raise ImageError(f"--out {out} is not a regular file")
    if not out.parent.is_dir():
        raise ImageError(f"--out {out}: directory {out.parent} does not exist")


def check_room(out: Path, need: int) -> None:
    free = shutil.disk_usage(out.parent).free
    if free < need:
        raise ImageError(
            f"{out.parent} has {free / 2**30:.1f} GiB free, the image needs "
            f"{need / 2**30:.1f} GiB: free some space or choose another --out"
        )


def grow(part: Path, opened: Opened, grow_bytes: int) -> Partition:
    """Extend the file and its root partition (the last one) by ``grow_bytes``."""
    if grow_bytes <= 0:
        return opened.root
    size = part.stat().st_size
    with part.open("r+b") as handle:
        handle.truncate(max(size, opened.table.end) + grow_bytes)
    proc = subprocess.run(
        [
            "sfdisk",
            "--no-reread",
            "--no-tell-kernel",
            "--quiet",
            "-N",
            str(opened.root.number),
            str(part),
        ],
        input=", +\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageError(f"could not grow the root partition: {proc.stderr.strip()}")
    return find_root_partition(part, read_table(part))


#: Seconds the chroot's processes get after SIGTERM before SIGKILL.
STOP_GRACE = 20


def run_in_chroot(root: Path, log: Path, early_log: Path, progress: Callable[[str], None]) -> int:
    """firstboot.sh image-build in the chroot, in its own process group (ended as a whole
    if the build is interrupted); shows the task names as they start. ``early_log`` gets
    what is said before firstboot.sh opens its log (e.g. an exec format error)."""
    argv = chroot.chroot_argv(root, "/bin/sh", f"/boot/firmware/{BUNDLE_NAME}/firstboot.sh", ROUTE)
    with early_log.open("wb") as early:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=early,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seen = 0
    try:
        while True:
            done = proc.poll() is not None
            if log.is_file():
                lines = log.read_text(errors="replace").splitlines()
                for line in lines[seen:]:
                    if line.startswith(("TASK [", "coralpi-firstboot", "PLAY RECAP")):
                        progress(line.rstrip(" *"))
                seen = len(lines)
            if done:
                return proc.returncode
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            chroot.stop_group(proc, STOP_GRACE)


def _status(report: Path) -> dict[str, Any]:
    import json

    path = report / "status.json"
    if not path.is_file():
        return {"status": "failed", "failed_step": "firstboot.sh ended without a status"}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def build_image(
    base: Path,
    out: Path,
    host_plan: Callable[[], HostPlan],
    *,
    lock_file: Path | None = None,
    cache_dir: Path | None = None,
    grow_mib: int = 1536,
    force: bool = False,
    progress: Callable[[str], None] = lambda _line: None,
) -> Built:
    start = time.monotonic()
    base, out = base.absolute(), out.absolute()
    if os.geteuid() != 0:
        raise ImageError("image build needs root (loop devices, mounts, chroot): run it with sudo")
    check_paths(base, out, force)
    if grow_mib < 0:
        raise ImageError("--grow-mib must be 0 or more")
    compressed = is_xz(base)
    opened: Opened | None = None
    if not compressed:
        check_image_file(base, system_state()[0])
        opened = inspect_image(base)
        check_root_last(base, opened, grow_mib)
        size = max(base.stat().st_size, opened.table.end)
    else:
        size = xz_size(base)
    check_room(out, size + grow_mib * 2**20)
    host = host_plan()
    plan = host.plan
    if opened is not None:
        check_against_card(plan, opened.info, str(base), hook=False)
    pi_ansible.decide(plan)
    chroot.interpreter_for(plan.target.arch)
    lock = lock_file or side_path(out, ".lock")
    progress("checking the artifacts (from the lock where it pins them)")
    gather_artifacts(host, cache_dir=cache_dir, lock_file=lock)

    part = side_path(out, ".part")
    log_path = side_path(out, ".build.log")
    manifest_path = side_path(out, ".manifest.json")
    manifest_part = side_path(out, ".manifest.json.part")
    try:
        if opened is None:
            progress(f"decompressing {base.name} (the card checks follow)")
            with part.open("wb") as sink:
                unxz = subprocess.run(
                    ["xz", "-dc", str(base)],
                    stdout=sink,
                    stderr=subprocess.PIPE,
                    text=True,
                    check=False,
                )
            if unxz.returncode != 0:
                raise ImageError(f"{base}: not a readable .xz file ({unxz.stderr.strip()})")
            opened = inspect_image(part)
            check_root_last(base, opened, grow_mib)
            check_against_card(plan, opened.info, str(base), hook=False)
        else:
            progress(f"copying {base.name}")
            copy = subprocess.run(
                ["cp", "--sparse=always", str(base), str(part)],
                capture_output=True,
                text=True,
                check=False,
            )
            if copy.returncode != 0:
                raise ImageError(f"copying {base} to {part} failed: {copy.stderr.strip()}")
        root_part = grow(part, opened, grow_mib * 2**20)
        with tempfile.TemporaryDirectory(prefix="coralpi-build-") as tmp:
            data = _provision(
                part, opened, root_part, host, lock, cache_dir, Path(tmp), log_path, progress
            )
        progress("hashing the images")
        lock_text = lock.read_text() if lock.is_file() else ""
        result: dict[str, Any] = {
            "coralpi_version": __version__,
            "ansible_core": data.pop("ansible_core"),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": 0.0,
            "base": {"file": base.name, "sha256": sha256_file(base)},
            "output": {"file": out.name, "sha256": sha256_file(part), "bytes": part.stat().st_size},
            "lock": {
                "file": str(lock),
                "sha256": sha256_file(lock) if lock_text else None,
                "text": lock_text,
            },
            "for": host.label,
            "target": plan.target.to_dict(),
            "runtime": plan.runtime.to_dict(),
            "python_runtime": plan.python_runtime.to_dict(),
            "deferred_to_first_boot": list(DEFERRED),
            **data,
            "still_differs": list(manifest.STILL_DIFFERS),
        }
        result["seconds"] = round(time.monotonic() - start, 1)
        manifest.write(manifest_part, result)
        # The image and its manifest appear together (a failure before this leaves neither).
        part.replace(out)
        manifest_part.replace(manifest_path)
    except BaseException:
        part.unlink(missing_ok=True)
        manifest_part.unlink(missing_ok=True)
        raise
    return Built(out, manifest_path, log_path, result, float(result["seconds"]))


def check_root_last(base: Path, opened: Opened, grow_mib: int) -> None:
    if grow_mib and opened.root.end != opened.table.end:
        raise ImageError(
            f"{base}: the root partition is not the last one, so it cannot "
            "grow; pass --grow-mib 0 if it has room for the packages"
        )


def _provision(
    part: Path,
    opened: Opened,
    root_part: Partition,
    host: HostPlan,
    lock: Path,
    cache_dir: Path | None,
    tmp: Path,
    log_path: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    boot_dir = tmp / "boot"
    boot_dir.mkdir()
    fat = FatVolume(part, opened.boot.start)
    originals = {name: fat.read_text(f"/{name}") for name in BOOT_FILES}
    for name, text in originals.items():
        if text is not None:
            (boot_dir / name).write_text(text)
    progress("staging the bundle (locked artifacts, playbooks, Ansible)")
    bundle = build_bundle(host, ROUTE, boot_dir, cache_dir=cache_dir, lock_file=lock)
    for rel, text in card_files(bundle, "", None).items():
        (bundle.dir / rel).write_text(text)
    plan = host.plan
    report = boot_dir / "coralpi-report"
    venv = plan.venv.path
    early = tmp / "chroot-start.log"
    try:
        if root_part.size != opened.root.size:
            progress(f"growing the root file system to {root_part.size // 2**20} MiB")
            with chroot.loop_device(part, root_part) as device:
                chroot.grow_ext4(device)
        with chroot.open_root(part, root_part, tmp / "root", boot_dir, plan.target.arch) as root:
            progress(f"provisioning {opened.info.codename} {plan.target.arch} in a chroot")
            rc = run_in_chroot(root, report / "firstboot.log", early, progress)
            status = _status(report)
            if rc != 0 or status.get("status") != "ok":
                said = early.read_text(errors="replace").strip()[-800:] if early.is_file() else ""
                raise HostFailed(
                    f"image build failed at {status.get('failed_step') or 'firstboot.sh'} "
                    f"(exit {rc}){': ' + said if said else ''}; the log is {log_path}; "
                    "no image was written"
                )
            subprocess.run(
                chroot.chroot_argv(root, "apt-get", "clean"), check=False, capture_output=True
            )
            progress("clearing the machine's identity (machine id, SSH host keys, logs)")
            cleared = identity.clear_identity(root)
            packages = manifest.installed_packages(root)
            data = {
                "identity_cleared": identity.summary(cleared),
                "ansible_core": bundle.ansible.version,
                "packages": packages,
                "kernel": manifest.kernel_summary(root, packages),
                "venv": venv,
                "venv_files": manifest.tree_hashes(root, venv),
            }
    finally:
        # Kept also when the build failed or was interrupted (an older log is replaced).
        parts = [
            p.read_text(errors="replace") for p in (early, report / "firstboot.log") if p.is_file()
        ]
        log_path.write_text("".join(parts))
    expected = {*BOOT_FILES, BUNDLE_NAME, "coralpi-report"}
    for extra in sorted(p.name for p in boot_dir.iterdir() if p.name not in expected):
        progress(
            f"warning: the roles wrote /boot/firmware/{extra}; only "
            f"{', '.join(BOOT_FILES)} go back to the boot partition"
        )
    for name, text in originals.items():
        changed = boot_dir / name
        if text is not None and changed.is_file() and changed.read_text() != text:
            progress(f"writing the changed {name} back to the boot partition")
            fat.write_text(f"/{name}", changed.read_text())
    return data
