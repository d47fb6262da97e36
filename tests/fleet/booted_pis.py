"""systemd-booted test Pis for pull mode, and the servers they pull from (imported by name).

Each booted Pi is ``systemd-nspawn --boot`` on an overlay of the fleet's bookworm tree with
systemd (the image tests' recipe, cached like the fleet's own trees), in the network
namespace of one of the fleet's sshd hosts: it gets that host's address on the test bridge
and reaches only the bridge (apt proxy, git daemon, artifact mirror). The overlay is
mounted in a private mount namespace (``unshare --mount``, which then execs nspawn), so it
goes with the container. Every process is started here and ended by its PID.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from testfleet import Fleet
from testfleet import hosts as hostops
from testfleet.mirror import debian_mirror
from testfleet.paths import cache_root
from testfleet.procs import children
from testfleet.rootfs import INCLUDE, RootfsRecipe, ensure_rootfs

SYSTEMD_INCLUDE = (*INCLUDE, "systemd", "systemd-sysv", "dbus")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}

OVERLAY_BOOT = r"""
set -eu
LOWER="$1"; D="$2"; shift 2
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$D/upper,workdir=$D/work" "$D/root"
exec "$@"
"""


def systemd_tree() -> Path:
    recipe = RootfsRecipe("bookworm", "amd64", debian_mirror(), include=SYSTEMD_INCLUDE)
    return ensure_rootfs(recipe, cache_root()).tree


@dataclass
class BootedPi:
    name: str
    address: str
    proc: subprocess.Popen[bytes]
    log: Path

    def init_pid(self) -> int:
        """The container's systemd (PID 1 inside), found below nspawn."""
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "systemd" and pid != self.proc.pid:
                return pid
            todo += children(pid)
        raise RuntimeError(f"{self.name}: no systemd under nspawn {self.proc.pid}")

    def run(
        self, command: str, *, timeout: float = 600, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A shell command inside the booted Pi (all its namespaces; as root)."""
        argv = ["nsenter", "--target", str(self.init_pid()), "--mount", "--uts", "--ipc"]
        argv += ["--net", "--pid", "--", "sh", "-c", command]
        return subprocess.run(
            argv,
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ENV,
            check=False,
        )

    def text(self, command: str, timeout: float = 600) -> str:
        proc = self.run(command, timeout=timeout)
        assert proc.returncode == 0, (self.name, command, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc.stdout


@contextmanager
def booted_pis(fleet: Fleet, names: list[str], tree: Path, work: Path) -> Iterator[list[BootedPi]]:
    """Boot one container per fleet host in ``names`` (in that host's namespace, with its
    address); powered off by PID on leaving (SIGTERM, SIGKILL after a minute)."""
    pis: list[BootedPi] = []
    try:
        for name in names:
            host = fleet.host(name)
            d = work / name
            fake = hostops.Host(host.spec, host.index, host.address, host.netns, host.veth, d)
            key = fleet.key_file.with_suffix(".pub").read_text()
            assert fleet.urls, "the fleet is not up"
            hostops.prepare_host_dir(
                fake,
                authorized_key=key,
                apt_proxy=fleet.urls["apt_proxy"],
                direct_hosts=[fleet.bridge_address],
            )
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                OVERLAY_BOOT,
                "overlay-boot",
                str(tree),
                str(d),
                "systemd-nspawn",
                "--boot",
                "--quiet",
                f"--directory={d / 'root'}",
                "--register=no",
                "--keep-unit",
                f"--network-namespace-path=/run/netns/{host.netns}",
                f"--machine={name}",
            ]
            log = work / f"{name}.console.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
            pis.append(BootedPi(name, host.address, proc, log))
        for pi in pis:
            deadline = time.monotonic() + 90
            while True:
                try:
                    state = pi.run("systemctl is-system-running --wait", timeout=60).stdout
                except RuntimeError:
                    state = ""
                if state.strip() in ("running", "degraded"):
                    break
                assert pi.proc.poll() is None, pi.log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, (pi.name, state)
                time.sleep(0.5)
        yield pis
    finally:
        for pi in pis:
            pi.proc.terminate()
        for pi in pis:
            try:
                pi.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pi.proc.kill()
                pi.proc.wait()


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_port(address: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {address}:{port}")


@contextmanager
def _serving(argv: list[str], url: str, address: str, port: int, log: Path) -> Iterator[Server]:
    """Run ``argv`` (a server listening on ``address:port``) for the block; stopped after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(url, proc)
    try:
        _wait_port(address, port, proc)
        yield server
    finally:
        server.stop()


def git_daemon(base: Path, address: str, port: int, log: Path) -> AbstractContextManager[Server]:
    """``git daemon`` serving every repository under ``base`` on the bridge address."""
    argv = [
        "git",
        "daemon",
        "--export-all",
        "--reuseaddr",
        "--informative-errors",
        f"--base-path={base}",
        f"--listen={address}",
        f"--port={port}",
        str(base),
    ]
    return _serving(argv, f"git://{address}:{port}", address, port, log)


def http_dir(root: Path, address: str, port: int, log: Path) -> AbstractContextManager[Server]:
    """A static HTTP server for ``root`` (the artifact mirror) on the bridge address."""
    argv = [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(root)]
    return _serving([*argv, str(port)], f"http://{address}:{port}", address, port, log)
