"""What a fleet has created, on disk, so it can be torn down even after a crash.

The state file (``<workdir>/state.json``) is rewritten before each resource is created (and
right after each process is started, with no signal let in between), and a pointer to it is
kept in /run/coralpi-testfleet/fleet-<slot>.json so ``python -m testfleet down --stale`` finds
fleets whose owning process and guardian died. Teardown works from whatever was recorded, so
a half-built fleet is torn down as well as a complete one. Order (TESTING.md): close SSH
control sockets, SIGKILL each namespace's PID 1 and reap, stop the proxy and HTTP server,
delete namespaces, veths and the bridge. Only recorded PIDs are signalled, and only while they
still name the recorded process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import network
from .cmd import try_lock
from .paths import RUN_DIR
from .procs import ProcRecord, wait_gone


@dataclass
class FleetState:
    """Names and PIDs a fleet owns."""

    workdir: Path
    slot: int
    bridge: str = ""
    netns: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    procs: list[ProcRecord] = field(default_factory=list)
    control_dir: str = ""
    #: The fleet's guardian (testfleet.guard), not one of the fleet's own processes.
    guardian: ProcRecord | None = None
    #: Foreign architectures whose qemu registration the fleet shares (testfleet.binfmt).
    binfmt: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.workdir / "state.json"

    @property
    def pointer(self) -> Path:
        return RUN_DIR / f"fleet-{self.slot}.json"

    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "slot": self.slot,
            "bridge": self.bridge,
            "netns": self.netns,
            "veths": self.veths,
            "procs": [p.to_dict() for p in self.procs],
            "control_dir": self.control_dir,
            "guardian": self.guardian.to_dict() if self.guardian else None,
            "binfmt": self.binfmt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FleetState:
        return cls(
            workdir=Path(data["workdir"]),
            slot=int(data["slot"]),
            bridge=str(data.get("bridge", "")),
            netns=[str(n) for n in data.get("netns", [])],
            veths=[str(v) for v in data.get("veths", [])],
            procs=[ProcRecord.from_dict(p) for p in data.get("procs", [])],
            control_dir=str(data.get("control_dir", "")),
            guardian=ProcRecord.from_dict(data["guardian"]) if data.get("guardian") else None,
            binfmt=[str(a) for a in data.get("binfmt", [])],
        )

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(self.path)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.pointer.write_text(json.dumps({"state": str(self.path)}) + "\n")

    @classmethod
    def load(cls, path: Path) -> FleetState:
        return cls.from_dict(json.loads(path.read_text()))


def close_control_sockets(control_dir: str) -> None:
    """Ask every SSH control master (Ansible's and ours) to exit."""
    if not control_dir or not Path(control_dir).is_dir():
        return
    for sock in Path(control_dir).iterdir():
        if sock.is_socket():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "fleet-host"],
                capture_output=True,
                timeout=10,
                check=False,
            )


def teardown(
    state: FleetState,
    popens: dict[int, subprocess.Popen[bytes]] | None = None,
    *,
    keep_guardian: bool = False,
) -> list[str]:
    """End everything in state; return problems (empty when all is gone).

    The fleet's guardian is ended first (it would tear down too), unless keep_guardian (the
    owner releases it afterwards) or it is the process running this.
    """
    popens = popens or {}
    problems: list[str] = []
    guardian = state.guardian
    if guardian is not None and not keep_guardian and guardian.pid != os.getpid():
        _reap([guardian], popens, problems, first=signal.SIGTERM)
    close_control_sockets(state.control_dir)

    inits = [p for p in state.procs if p.role.startswith("init:")]
    unshares = [p for p in state.procs if p.role.startswith("unshare:")]
    for rec in inits:
        rec.signal(signal.SIGKILL)
    # An unshare whose namespace init was not recorded yet (setup interrupted right after
    # starting it): SIGKILL it, and --kill-child ends the init.
    with_init = {p.role.partition(":")[2] for p in inits}
    for rec in unshares:
        if rec.role.partition(":")[2] not in with_init:
            rec.signal(signal.SIGKILL)
    _reap(unshares, popens, problems, first=None)
    _reap(inits, popens, problems, first=None)
    services = [p for p in state.procs if not p.role.startswith(("init:", "unshare:"))]
    _reap(services, popens, problems, first=signal.SIGTERM)

    for ns in state.netns:
        network.delete_netns(ns)
    for veth in state.veths:
        network.delete_link(veth)
    if state.bridge:
        network.delete_link(state.bridge)
    leftovers = set(state.netns) & set(network.netns_names())
    leftovers |= {n for n in [*state.veths, state.bridge] if n} & set(network.link_names())
    problems += [f"still present: {name}" for name in sorted(leftovers)]
    if not problems:
        state.pointer.unlink(missing_ok=True)
        if state.control_dir and RUN_DIR in Path(state.control_dir).parents:
            shutil.rmtree(state.control_dir, ignore_errors=True)
    return problems


def _reap(
    records: list[ProcRecord],
    popens: dict[int, subprocess.Popen[bytes]],
    problems: list[str],
    first: signal.Signals | None,
) -> None:
    if first is not None:
        for rec in records:
            rec.signal(first)
    left = wait_gone(records, timeout=5)
    for rec in left:
        rec.signal(signal.SIGKILL)
    left = wait_gone(left, timeout=5)
    for rec in records:
        popen = popens.get(rec.pid)
        if popen is not None:
            try:
                popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                problems.append(f"{rec.role} (pid {rec.pid}) was not reaped")
    problems += [f"{rec.role} (pid {rec.pid}) still running" for rec in left]


def stale_states() -> list[FleetState]:
    """Fleets registered under /run whose owner and guardian no longer hold the slot lock."""
    found: list[FleetState] = []
    if not RUN_DIR.is_dir():
        return found
    for pointer in sorted(RUN_DIR.glob("fleet-*.json")):
        slot = int(pointer.stem.split("-", 1)[1])
        fd = try_lock(network.Slot(slot).lock_path())
        if fd is None:
            continue  # a live fleet owns it
        os.close(fd)
        try:
            path = Path(json.loads(pointer.read_text())["state"])
            found.append(FleetState.load(path))
        except (OSError, ValueError, KeyError):
            pointer.unlink(missing_ok=True)
    return found
