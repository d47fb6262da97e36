"""An image's root file system, opened for a build: loop device, mounts, and a chroot that
can run Debian's maintainer scripts without touching this machine.

Everything mounted or created here is undone on the way out, in reverse order, also after a
failure: ``/proc``, ``/sys`` (read-only), a private ``/dev`` (tmpfs with the usual nodes and
its own devpts), tmpfs on ``/run`` and ``/tmp`` (nothing the build leaves there ends up in
the image), the boot directory bound on ``/boot/firmware``, a ``policy-rc.d`` that keeps
services from starting, this machine's DNS settings, and for a foreign architecture the
qemu-user interpreter when its binfmt handler does not hold it open (no ``F`` flag).
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from provision.image.errors import ImageError
from provision.image.partitions import Partition

BINFMT = Path("/proc/sys/fs/binfmt_misc")
#: qemu-user binfmt handler per target architecture (as the matrix names it).
QEMU_HANDLERS = {"aarch64": "qemu-aarch64", "armv7l": "qemu-arm"}
POLICY_RC_D = "usr/sbin/policy-rc.d"
DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def interpreter_for(
    arch: str, machine: str | None = None, binfmt: Path = BINFMT
) -> tuple[Path, bool] | None:
    """None when ``arch`` runs natively; else (interpreter, held open by the kernel).
    ImageError, saying what to install, when no enabled qemu-user handler exists."""
    machine = machine or platform.machine()
    if arch == machine or (arch == "x86_64" and machine == "amd64"):
        return None
    name = QEMU_HANDLERS.get(arch) or f"qemu-{arch}"
    text = ""
    # Debian's qemu-user-static registers "qemu-aarch64"; other tools prefix the name.
    entries = sorted(binfmt.glob("*qemu-*")) if binfmt.is_dir() else []
    for entry in entries:
        if entry.name == name or entry.name.endswith("-" + name):
            content = entry.read_text()
            if content.startswith("enabled"):
                text = content
                break
    if not text:
        raise ImageError(
            f"building a {arch} image on this {machine} machine needs qemu-user: install "
            f"qemu-user-static (Debian registers its binfmt handlers), then check that "
            f"{binfmt}/{name} exists and says 'enabled'"
        )
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    interpreter = Path(fields.get("interpreter", "").strip())
    held = "F" in fields.get("flags:", fields.get("flags", ""))
    return interpreter, held


class OpenRoot:
    """Mount bookkeeping for one build (use :func:`open_root`)."""

    def __init__(self, stack: ExitStack, root: Path) -> None:
        self.stack = stack
        self.root = root

    def mount(self, *args: str, target: Path) -> None:
        _run("mount", *args, str(target))
        self.stack.callback(_umount, target)

    def created(self, path: Path, make: Callable[[], None]) -> None:
        """Create ``path`` with ``make`` (if missing) and remove it on the way out."""
        if path.exists() or path.is_symlink():
            return
        make()
        self.stack.callback(_remove, path)


def _umount(target: Path) -> None:
    proc = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # Busy: detach it now (it goes when the last user ends) and fail the build.
        subprocess.run(["umount", "--lazy", str(target)], check=False)
        raise ImageError(
            f"{target} was still busy ({proc.stderr.strip()}); detached lazily, "
            "the build is not used"
        )


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """End a process started with ``start_new_session=True`` and everything in its group:
    SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def rooted_in(root: Path, proc_dir: Path = Path("/proc")) -> list[int]:
    """PIDs of processes whose root directory is ``root`` or below it (what the build
    started in the chroot, e.g. a dpkg run that outlived its parent)."""
    found = []
    prefix = str(root).rstrip("/")
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            where = os.readlink(entry / "root")
        except OSError:
            continue
        if where == prefix or where.startswith(prefix + "/"):
            found.append(int(entry.name))
    return found


def end_rooted(root: Path, grace: float = 10.0) -> None:
    """Stop what still runs inside the chroot before its file systems are unmounted."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = rooted_in(root)
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and rooted_in(root):
            time.sleep(0.2)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def loop_device(image: Path, part: Partition) -> Iterator[str]:
    device = _run(
        "losetup",
        "--find",
        "--show",
        "--offset",
        str(part.start),
        "--sizelimit",
        str(part.size),
        str(image),
    ).strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)
        check_detached(image)


#: Seconds the kernel gets to detach an autoclear loop device after the last unmount (it
#: waits for every other opener, e.g. udev's probe of the device, to close it first).
DETACH_WAIT = 20.0


def check_detached(image: Path, wait: float = DETACH_WAIT) -> None:
    deadline = time.monotonic() + wait
    while True:
        still = subprocess.run(
            ["losetup", "--associated", str(image)], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not still:
            return
        if time.monotonic() >= deadline:
            raise ImageError(
                f"{image} is still attached to a loop device ({still}) {wait:.0f}s after the "
                "last unmount; the build is not used"
            )
        time.sleep(0.5)


def grow_ext4(device: str) -> None:
    """Check the file system, then let it fill its (grown) partition."""
    proc = subprocess.run(
        ["e2fsck", "-f", "-y", device], capture_output=True, text=True, check=False
    )
    if proc.returncode >= 4:
        raise ImageError(
            f"e2fsck found errors it could not fix on the root file system: "
            f"{proc.stdout[-500:]}{proc.stderr[-500:]}"
        )
    _run("resize2fs", device)


@contextmanager
def open_root(
    image: Path, part: Partition, mountpoint: Path, boot_dir: Path, arch: str
) -> Iterator[Path]:
    """Mount the ext4 ``part`` of ``image`` at ``mountpoint`` ready for ``chroot``;
    ``boot_dir`` appears as ``/boot/firmware`` inside. The loop device is mount's own
    (autoclear): it goes with the last mount even if this process is killed."""
    interp = interpreter_for(arch)
    with ExitStack() as stack:
        root = mountpoint
        root.mkdir(parents=True, exist_ok=True)
        stack.callback(check_detached, image)
        ctx = OpenRoot(stack, root)
        ctx.mount("-o", f"loop,offset={part.start},sizelimit={part.size}", str(image), target=root)
        ctx.mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", target=root / "proc")
        ctx.mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", target=root / "sys")
        _private_dev(ctx)
        ctx.mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", target=root / "run")
        ctx.mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", target=root / "tmp")
        firmware = root / "boot" / "firmware"
        ctx.created(firmware, lambda: firmware.mkdir(parents=True))
        ctx.mount("--bind", str(boot_dir), target=firmware)
        policy = root / POLICY_RC_D
        ctx.created(
            policy,
            lambda: _write_exec(
                policy,
                "#!/bin/sh\n# coralpi image build: no service starts in the chroot\nexit 101\n",
            ),
        )
        _dns(ctx)
        if interp is not None and not interp[1]:
            inside = root / str(interp[0]).lstrip("/")
            missing = [d for d in reversed(inside.parents) if not d.exists()]
            if missing:
                ctx.created(missing[0], lambda: inside.parent.mkdir(parents=True))
            ctx.created(inside, lambda: inside.touch())
            ctx.mount("--bind", "-o", "ro", str(interp[0]), target=inside)
        # Last in, first out: nothing runs in the chroot any more when the unmounting starts.
        stack.callback(end_rooted, root)
        yield root


def _write_exec(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _private_dev(ctx: OpenRoot) -> None:
    dev = ctx.root / "dev"
    ctx.mount("-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", target=dev)
    for name, major, minor in DEV_NODES:
        os.mknod(dev / name, 0o20666, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)
    for sub in ("pts", "shm"):
        (dev / sub).mkdir()
    ctx.mount(
        "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620", "devpts", target=dev / "pts"
    )
    ctx.mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", target=dev / "shm")
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "fd").symlink_to("/proc/self/fd")
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        (dev / name).symlink_to(f"/proc/self/fd/{number}")


def _dns(ctx: OpenRoot) -> None:
    """This machine's resolv.conf for the build, leaving the image's own setting as it was
    (a file is bound over; a link into /run gets its target written in the build's tmpfs)."""
    host = Path("/etc/resolv.conf")
    if not host.is_file():
        return
    inside = ctx.root / "etc" / "resolv.conf"
    if inside.is_symlink():
        target = os.readlink(inside)
        resolved = Path(os.path.normpath(target if target.startswith("/") else f"/etc/{target}"))
        if resolved.parts[:2] == ("/", "run"):
            dest = ctx.root / str(resolved).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(host, dest)
        return
    if not inside.exists():
        ctx.created(inside, lambda: inside.touch())
    ctx.mount("--bind", "-o", "ro", str(host), target=inside)


def chroot_argv(root: Path, *argv: str, env: dict[str, str] | None = None) -> list[str]:
    base = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
    }
    base.update(env or {})
    return [
        "chroot",
        str(root),
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in sorted(base.items())),
        *argv,
    ]
