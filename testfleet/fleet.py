"""The test fleet: throwaway Debian hosts reachable over SSH, plus their stand-in internet.

Use it as a context manager::

    with Fleet(workdir, hosts=[HostSpec("pi1", "bookworm"), HostSpec("pi3", "trixie")]) as f:
        subprocess.run(["ansible", "all", "-i", str(f.inventory_path), "-m", "ping"])

Everything it starts is recorded by PID and ended by PID on exit; namespaces, veths and the
bridge are removed. That also happens when the process is interrupted at any point of
setup, use or teardown: SIGTERM and SIGINT unwind through the teardown
(:mod:`testfleet.interrupts`), atexit catches a fleet nobody brought down, and the fleet's
guardian (:mod:`testfleet.guard`) tears it down if its owner dies without doing so (SIGKILL,
``os._exit``). ``python -m testfleet down`` remains for fleets whose guardian died as well.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from . import aptproxy, guard, httpserve, interrupts, network, standin_coral
from . import hosts as hostops
from .binfmt import BinfmtUse, native_arch
from .cmd import run
from .errors import FleetError
from .hosts import Host, HostSpec
from .httpserve import TestAsset
from .inventory import build_inventory, ssh_options, write_inventory
from .paths import RUN_DIR, cache_root, testdata_dir
from .rootfs import Rootfs, ensure_rootfs, recipe_for
from .state import FleetState, teardown

DEFAULT_HOSTS = (
    HostSpec("pi1", "bookworm"),
    HostSpec("pi2", "bookworm"),
    HostSpec("pi3", "trixie"),
)

HostRef = str | Host

#: Set to a step name (see PAUSE_STEPS) to pause a fleet there until a signal arrives, for
#: tests that interrupt a fleet at a known point of its setup or teardown.
PAUSE_ENV = "CORALPI_TESTFLEET_PAUSE_AT"
#: Where a fleet can pause: after its guardian is ready (slot and state recorded), after the
#: qemu registration, after bridge, services and host networks exist, after the hosts were
#: started (not yet reachable), at the start of teardown.
PAUSE_STEPS = ("guardian", "binfmt", "network", "hosts", "teardown")
#: A pause ends by itself after this long.
PAUSE_SECONDS = 120.0


class Fleet:
    """Throwaway Debian hosts in network namespaces, with apt proxy and stand-in services."""

    def __init__(
        self,
        workdir: Path,
        hosts: Sequence[HostSpec] = DEFAULT_HOSTS,
        *,
        host_vars: Mapping[str, Mapping[str, Any]] | None = None,
        group_vars: Mapping[str, Any] | None = None,
        cache: Path | None = None,
        slot: int | None = None,
    ) -> None:
        names = [h.name for h in hosts]
        if len(set(names)) != len(names) or not names:
            raise FleetError(f"host names must be unique and non-empty: {names}")
        unknown = set(host_vars or {}) - set(names)
        if unknown:
            raise FleetError(f"host_vars for unknown hosts: {sorted(unknown)}")
        self.workdir = Path(workdir).resolve()
        self.specs = [
            HostSpec(
                h.name,
                h.suite,
                h.arch,
                {**h.vars, **dict((host_vars or {}).get(h.name, {}))},
                h.tree,
                h.init,
            )
            for h in hosts
        ]
        self.extra_group_vars = dict(group_vars or {})
        self.cache = Path(cache) if cache is not None else cache_root()
        self._preferred_slot = slot
        self.timings: dict[str, float] = {}
        self.rootfs: dict[str, Rootfs] = {}
        self.hosts: list[Host] = []
        self.urls: dict[str, str] = {}
        self.assets: list[TestAsset] = []
        self.standin: standin_coral.StandinCoral | None = None
        self.slot: network.Slot | None = None
        self._slot_fd: int | None = None
        self._state: FleetState | None = None
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._proxy: aptproxy.AptProxy | None = None
        self._http: httpserve.HttpServer | None = None
        self._binfmt: BinfmtUse | None = None
        self._guardian: guard.Guardian | None = None
        self._holds_interrupts = False
        self._up = False

    # -- public API ---------------------------------------------------------------------

    @property
    def inventory_path(self) -> Path:
        return self.workdir / "inventory.yml"

    @property
    def key_file(self) -> Path:
        return self.workdir / "ssh" / "id_ed25519"

    @property
    def control_dir(self) -> Path:
        """Directory of SSH control sockets (short enough for a unix socket path: ssh binds
        ``<dir>/<40 hex of %C>.<16 random>`` first, and sun_path holds 107 bytes)."""
        preferred = self.workdir / "ssh" / "cp"
        if len(str(preferred)) + 58 <= 107 or self.slot is None:
            return preferred
        return RUN_DIR / f"cp{self.slot.number}"

    def pin_args(self) -> list[str]:
        """``--pin NAME=SHA256`` for each STAND-IN community runtime .deb (served over plain
        http on the test bridge), as a user pins a mirror's files in ``coralpi lock``."""
        if self.standin is None:
            raise FleetError("the fleet is not up")
        pins: list[str] = []
        for deb in sorted(self.standin.community_dir.glob("*.deb")):
            pins += ["--pin", f"{deb.name}={hashlib.sha256(deb.read_bytes()).hexdigest()}"]
        return pins

    @property
    def standin_key_fingerprint(self) -> str:
        if self.standin is None:
            raise FleetError("fleet is not up")
        return self.standin.key_fingerprint

    @property
    def bridge_address(self) -> str:
        if self.slot is None:
            raise FleetError("fleet is not up")
        return self.slot.bridge_address

    def host(self, ref: HostRef) -> Host:
        if isinstance(ref, Host):
            return ref
        for host in self.hosts:
            if host.name == ref:
                return host
        raise FleetError(f"no host named {ref!r} in this fleet")

    def ssh_command(self, host: HostRef, command: str | Sequence[str]) -> list[str]:
        target = self.host(host)
        remote = command if isinstance(command, str) else shlex.join(command)
        return [
            "ssh",
            *ssh_options(self.key_file, self.control_dir),
            f"pi@{target.address}",
            remote,
        ]

    def ssh(
        self,
        host: HostRef,
        command: str | Sequence[str],
        *,
        become: bool = False,
        input: str | None = None,
        timeout: float = 300,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run command on host as pi (as root with become=True); output captured as text."""
        remote = command if isinstance(command, str) else shlex.join(command)
        if become:
            remote = f"sudo -n sh -c {shlex.quote(remote)}"
        return subprocess.run(
            self.ssh_command(host, remote),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def set_link(self, host: HostRef, up: bool) -> None:
        """Take a host's network link down (unreachable) or up again, for failure tests.

        Taking it down also closes the SSH control master to the host, so later connections
        (Ansible's too) fail within ConnectTimeout instead of waiting on a dead connection.
        """
        target = self.host(host)
        network.set_link(target.veth, up)
        if not up:
            subprocess.run(
                [
                    "ssh",
                    *ssh_options(self.key_file, self.control_dir),
                    "-O",
                    "exit",
                    f"pi@{target.address}",
                ],
                capture_output=True,
                timeout=10,
                check=False,
            )

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Fleet:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self) -> None:
        """Bring the fleet up; on any failure, tear down what was created and re-raise.

        While the fleet is up, SIGTERM and SIGINT raise KeyboardInterrupt in the main thread
        (:mod:`testfleet.interrupts`), so ``with`` blocks and finalizers tear it down; a
        signal during setup tears down whatever setup had made.
        """
        if self._up:
            return
        if os.geteuid() != 0:
            raise FleetError("the test fleet needs root (network namespaces, mounts)")
        try:
            with interrupts.deferred():
                self._up = True
                atexit.register(self.down)
                self._holds_interrupts = interrupts.acquire()
            self._bring_up()
        except BaseException:
            self.down()
            raise

    def keep(self) -> None:
        """Leave the fleet up when this process exits: no teardown at exit, the guardian
        told so. Its state file stays, so ``python -m testfleet down WORKDIR`` (or
        ``down --stale``) tears it down later; its bridge keeps the network slot taken."""
        with interrupts.deferred():
            if not self._up:
                raise FleetError("keep(): the fleet is not up")
            self._up = False
            atexit.unregister(self.down)
            if self._guardian is not None:
                guard.release(self._guardian, guard.KEEP)
                self._guardian = None
            if self._state is not None:
                self._state.guardian = None
                self._state.save()
            if self._holds_interrupts:
                self._holds_interrupts = False
                interrupts.release()

    def down(self) -> list[str]:
        """Tear everything down (idempotent); return problems found, if any.

        Signals are held until the teardown is complete (then one is raised, if it is the
        first of the run).
        """
        with interrupts.deferred():
            if not self._up:
                return []
            try:
                return self._tear_down()
            finally:
                if self._holds_interrupts:
                    self._holds_interrupts = False
                    interrupts.release()

    def _tear_down(self) -> list[str]:
        self._up = False
        atexit.unregister(self.down)
        start = time.monotonic()
        self._pause("teardown")
        problems: list[str] = []
        if self._state is not None:
            problems = teardown(self._state, self._popens, keep_guardian=True)
            self._state.save() if problems else self._state.path.unlink(missing_ok=True)
        if self._binfmt is not None:
            self._binfmt.close()
            self._binfmt = None
        if self._guardian is not None:
            guard.release(self._guardian)
            self._guardian = None
        for fd in (self._slot_fd, self._proxy.cache_lock_fd if self._proxy else None):
            if fd is not None:
                os.close(fd)
        self._slot_fd = None
        self._proxy = None
        self.timings["teardown"] = round(time.monotonic() - start, 2)
        return problems

    def _pause(self, step: str) -> None:
        """Wait here if $CORALPI_TESTFLEET_PAUSE_AT names this step (see PAUSE_STEPS), with
        ``<workdir>/paused`` saying so, until a signal arrives (raised here during setup,
        held during teardown) or PAUSE_SECONDS have passed."""
        if os.environ.get(PAUSE_ENV) != step:
            return
        (self.workdir / "paused").write_text(step + "\n")
        deadline = time.monotonic() + PAUSE_SECONDS
        while time.monotonic() < deadline and not interrupts.pending():
            time.sleep(0.05)

    # -- bring-up steps -------------------------------------------------------------------

    def _timed(self, name: str, start: float) -> None:
        self.timings[name] = round(time.monotonic() - start, 2)

    def _bring_up(self) -> None:
        # Each resource is recorded in the state file before it is created; each process is
        # recorded right after it started, with signals held in between (interrupts.deferred).
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with interrupts.deferred():
            self.slot, self._slot_fd = network.claim_slot(self._preferred_slot)
            state = FleetState(self.workdir, self.slot.number)
            self._state = state
            state.control_dir = str(self.control_dir)
            state.binfmt = sorted({h.arch for h in self.specs} - {native_arch()})
            state.save()
            self._guardian = guard.start(state.path, self.workdir / "guard.log", [self._slot_fd])
            state.guardian = self._guardian.record
            state.save()
        self._make_ssh_key()
        guard.wait_ready(self._guardian)
        self._pause("guardian")

        start = time.monotonic()
        with interrupts.deferred():
            self._binfmt = BinfmtUse({h.arch for h in self.specs})
        self._pause("binfmt")
        trees = sorted({_tree_key(h) for h in self.specs if h.tree is None})
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(trees) + 2) as pool:
            standin_future = pool.submit(standin_coral.ensure_standin, self.cache)
            futures = {
                key: pool.submit(
                    ensure_rootfs,
                    recipe_for(key[0], key[1], systemd=key[2] == "systemd"),
                    self.cache,
                )
                for key in trees
            }
            for key, future in futures.items():
                self.rootfs["-".join(key)] = future.result()
            self.standin = standin_future.result()
        self._timed("images", start)

        start = time.monotonic()
        state.bridge = self.slot.bridge
        state.save()
        network.create_bridge(self.slot)
        address = self.slot.bridge_address
        with interrupts.deferred():
            self._proxy = aptproxy.start_proxy(address, self.workdir, self.cache)
            self._record(self._proxy.record, self._proxy.popen)
        site = self.workdir / "site"
        self.assets = httpserve.build_site(
            site, self.standin.repo_dir, self.standin.community_dir, testdata_dir()
        )
        with interrupts.deferred():
            self._http = httpserve.start_http(address, site, self.workdir / "http.log")
            self._record(self._http.record, self._http.popen)
        base = self._http.base_url
        self.urls = {
            "http": base,
            "coral_apt": f"{base}/coral-apt",
            "coral_apt_key": f"{base}/coral-apt/doc/apt-key.gpg",
            "community": f"{base}/community",
            "test_data": f"{base}/test_data",
            "apt_proxy": self._proxy.url,
        }

        authorized = (self.key_file.with_suffix(".pub")).read_text()
        for index, spec in enumerate(self.specs):
            host = Host(
                spec=spec,
                index=index,
                address=self.slot.host_address(index),
                netns=self.slot.netns(spec.name),
                veth=self.slot.veth(index),
                dir=self.workdir / "hosts" / spec.name,
            )
            self.hosts.append(host)
            state.netns.append(host.netns)
            state.veths.append(host.veth)
            state.save()
            network.create_host_network(self.slot, spec.name, index)
            hostops.prepare_host_dir(
                host, authorized_key=authorized, apt_proxy=self._proxy.url, direct_hosts=[address]
            )
        self._timed("network", start)
        self._pause("network")

        start = time.monotonic()
        for host in self.hosts:
            lower = host.spec.tree or self.rootfs["-".join(_tree_key(host.spec))].tree
            with interrupts.deferred():
                hostops.start_host(host, lower, host.dir / "console.log")
                assert host.unshare is not None and host.popen is not None
                self._record(host.unshare, host.popen)
            init = hostops.find_init(host)
            with interrupts.deferred():
                host.init = init
                self._record(init, None)
        self._pause("hosts")
        emulated = self._binfmt is not None and bool(self._binfmt.arches)
        booted = any(h.init == "systemd" for h in self.specs)
        self._wait_ready(timeout=120 if emulated else 60 if booted else 30)
        self._timed("hosts", start)

        write_inventory(self.inventory_path, self._inventory())
        self._timed("up", t0)

    def set_host_vars(self, name: str, variables: Mapping[str, Any]) -> None:
        """Add inventory variables to one host of the running fleet (for values known only
        once it is up, e.g. a URL served for it); the inventory file is written again."""
        host = next((h for h in self.hosts if h.name == name), None)
        if host is None:
            raise FleetError(f"no host {name!r} in this fleet")
        host.spec.vars.update(variables)
        write_inventory(self.inventory_path, self._inventory())

    def _record(self, rec: Any, popen: subprocess.Popen[bytes] | None) -> None:
        assert self._state is not None
        self._state.procs.append(rec)
        if popen is not None:
            self._popens[rec.pid] = popen
        self._state.save()

    def _make_ssh_key(self) -> None:
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self.control_dir.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "coralpi-testfleet",
                    "-f",
                    self.key_file,
                ]
            )

    def _wait_ready(self, timeout: float = 30) -> None:
        assert self._proxy is not None and self._http is not None
        deadline = time.monotonic() + timeout
        for host in self.hosts:
            left = max(0.1, deadline - time.monotonic())
            if not hostops.wait_port(host.address, 22, left):
                log = (host.dir / "console.log").read_text(errors="replace")[-2000:]
                raise FleetError(f"host {hostops.describe(host)}: sshd did not start\n{log}")
        while not aptproxy.proxy_ready(self._proxy):
            if time.monotonic() > deadline:
                raise FleetError("apt-cacher-ng did not answer")
            time.sleep(0.05)
        while not httpserve.http_ready(self._http):
            if time.monotonic() > deadline:
                raise FleetError("http.server did not answer")
            time.sleep(0.05)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            results = list(pool.map(lambda h: (h, self.ssh(h, "true", timeout=30)), self.hosts))
        for host, proc in results:
            if proc.returncode != 0:
                raise FleetError(f"ssh to {hostops.describe(host)} failed: {proc.stderr.strip()}")

    def _inventory(self) -> dict[str, Any]:
        assert self.standin is not None
        group_vars: dict[str, Any] = {
            "coralpi_coral_repo_url": self.urls["coral_apt"],
            "coralpi_community_runtime_url": self.urls["community"],
            "coralpi_apt_proxy": self.urls["apt_proxy"],
            "coralpi_assets_url": self.urls["test_data"],
            "coralpi_coral_key_fingerprints": [self.standin.key_fingerprint],
            **self.extra_group_vars,
        }
        return build_inventory(
            [(h.name, h.address, h.spec.vars) for h in self.hosts],
            key_file=self.key_file,
            control_dir=self.control_dir,
            group_vars=group_vars,
        )


def _tree_key(spec: HostSpec) -> tuple[str, str, str]:
    """(suite, arch, init): hosts booted by systemd run the suite's tree with systemd."""
    return (spec.suite, spec.arch, "systemd" if spec.init == "systemd" else "sshd")
