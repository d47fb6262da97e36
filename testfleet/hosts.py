"""Test hosts: a private mount/PID/UTS/IPC namespace in the host's network namespace, an
overlay of the cached Debian tree, and ``sshd -D`` as the only service; or, for a host with
``init="systemd"``, the same overlay booted by ``systemd-nspawn --boot`` (systemd as its init,
sshd as a systemd service), started again whenever the container reboots.

The process tree per host is ``unshare`` (started by Popen from the test process) with one
child, PID 1 of the host's PID namespace (a shell that ends by exec-ing chroot + sshd).
Killing that child with SIGKILL ends every process of the host; ``unshare`` then exits and is
reaped by whoever started it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FleetError
from .procs import ProcRecord, children

#: Runs as root in the host's new namespaces; $1 lower tree, $2 host dir, $3 hostname.
START_SCRIPT = r"""
set -eu
LOWER="$1"; D="$2"; NAME="$3"; R="$D/root"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$D/upper,workdir=$D/work" "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n; mknod -m 666 "$R/dev/$1" c "$2" "$3"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
hostname "$NAME"
chroot "$R" /usr/bin/ssh-keygen -A >/dev/null
exec chroot "$R" /usr/sbin/sshd -D -e
"""

#: Like START_SCRIPT, for a systemd-booted host: the overlay, then systemd-nspawn --boot
#: joined to the host's network namespace (the script itself runs in the root one: `ip netns
#: exec` would replace /sys, and the cgroup mount nspawn needs with it). A reboot inside
#: the container ends nspawn with exit status 133 (what systemd-nspawn@.service restarts
#: on): the loop boots it again, so the host comes back as a rebooted machine does, with
#: a fresh /run and a new boot id. Any other exit ends the host.
BOOT_SCRIPT = r"""
set -eu
LOWER="$1"; D="$2"; NAME="$3"; NETNS="$4"; R="$D/root"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$D/upper,workdir=$D/work" "$R"
chroot "$R" /usr/bin/ssh-keygen -A >/dev/null
boots=0
while :; do
  boots=$((boots + 1))
  echo "test fleet: boot $boots of $NAME"
  rc=0
  systemd-nspawn --boot --quiet --directory "$R" --register=no --keep-unit \
    --network-namespace-path="/run/netns/$NETNS" --machine="$NETNS" --hostname="$NAME" \
    --console=read-only || rc=$?
  [ "$rc" -eq 133 ] || exit "$rc"
done
"""


@dataclass
class HostSpec:
    """A host to create: inventory name, Debian suite, extra inventory variables.

    ``tree``: a root file system to run instead of the cached debootstrap tree of
    suite/arch (e.g. a built image's mounted root); it is the read-only lower layer of the
    host's overlay, so the host never changes it. ``init="systemd"`` boots the host
    with systemd (systemd-nspawn): for roles that manage services or reboot.
    """

    name: str
    suite: str = "bookworm"
    arch: str = "amd64"
    vars: dict[str, Any] = field(default_factory=dict)
    tree: Path | None = None
    #: "sshd" (sshd alone, in a chroot) or "systemd" (booted by systemd-nspawn, on the
    #: suite's tree with systemd; reboots like a machine).
    init: str = "sshd"


@dataclass
class Host:
    """A running (or stopped) test host."""

    spec: HostSpec
    index: int
    address: str
    netns: str
    veth: str
    dir: Path
    popen: subprocess.Popen[bytes] | None = None
    unshare: ProcRecord | None = None
    init: ProcRecord | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def prepare_host_dir(
    host: Host, *, authorized_key: str, apt_proxy: str, direct_hosts: list[str]
) -> None:
    """Write the host's own overlay layer: hostname, hosts file, SSH key, apt proxy."""
    upper = host.dir / "upper"
    for sub in ("upper", "work", "root"):
        (host.dir / sub).mkdir(parents=True, exist_ok=True)
    etc = upper / "etc"
    (etc / "apt" / "apt.conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "hostname").write_text(host.name + "\n")
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n{host.address}\t{host.name}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    direct = "".join(f'Acquire::http::Proxy::{h} "DIRECT";\n' for h in direct_hosts)
    (etc / "apt" / "apt.conf.d" / "01coralpi-testfleet-proxy").write_text(
        "// test fleet: Debian packages come through the fleet's apt proxy; a download the\n"
        "// proxy could not finish from the mirror (503) is tried again\n"
        f'Acquire::http::Proxy "{apt_proxy}";\nAcquire::Retries "5";\n' + direct
    )
    ssh_dir = upper / "home" / "pi" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key.strip() + "\n")
    # uid/gid 1000 is the pi user created when the tree was prepared.
    for path in (upper / "home" / "pi", ssh_dir, keys):
        os.chown(path, 1000, 1000)
    ssh_dir.chmod(0o700)
    keys.chmod(0o600)


def start_host(host: Host, lower: Path, log: Path) -> None:
    """Start the host's namespaces and sshd (returns at once; see wait_ssh)."""
    unshare = ["unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child"]
    if host.spec.init == "systemd":
        unshare.append("--mount-proc")
        script = [BOOT_SCRIPT, "boot-host", str(lower), str(host.dir), host.name, host.netns]
    elif host.spec.init == "sshd":
        script = [START_SCRIPT, "start-host", str(lower), str(host.dir), host.name]
    else:
        raise FleetError(f"host {host.name}: init must be sshd or systemd, not {host.spec.init}")
    # A systemd host's script joins the network namespace through nspawn (BOOT_SCRIPT).
    netns = [] if host.spec.init == "systemd" else ["ip", "netns", "exec", host.netns]
    argv = [*netns, *unshare, "--propagation", "private", "sh", "-c", *script]
    with log.open("ab") as out:
        host.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host.unshare = ProcRecord.of(f"unshare:{host.name}", host.popen.pid)


def find_init(host: Host, timeout: float = 5.0) -> ProcRecord:
    """The child of unshare: PID 1 of the host's PID namespace."""
    assert host.popen is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(host.popen.pid)
        if kids:
            return ProcRecord.of(f"init:{host.name}", kids[0])
        if host.popen.poll() is not None:
            break
        time.sleep(0.01)
    raise FleetError(f"host {host.name}: namespace init did not start; see its log")


def wait_port(address: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5) as conn:
                banner = conn.recv(64)
                if banner.startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def describe(host: Host) -> str:
    return f"{host.name} ({host.spec.suite}/{host.spec.arch}) at {host.address} in {host.netns}"
