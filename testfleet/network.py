"""The fleet's private network: one bridge, one network namespace and veth pair per host.

Slot N gives bridge ``cpbrN`` with 10.123.N.1/24 and hosts at 10.123.N.11, .12, ... There is
no NAT, no forwarding and no default route: a host can reach the bridge address and its
siblings, nothing else. Slots are taken with a lock under /run so fleets running at the same
time (other test sessions on this machine) never share one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .cmd import run, try_lock
from .errors import FleetError
from .paths import RUN_DIR

SUBNET_PREFIX = "10.123"
MAX_SLOTS = 250
FIRST_HOST_OCTET = 11


@dataclass(frozen=True)
class Slot:
    """A network slot: bridge name and addresses derived from its number."""

    number: int

    @property
    def bridge(self) -> str:
        return f"cpbr{self.number}"

    @property
    def bridge_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.number}.1"

    @property
    def subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.number}.0/24"

    def host_address(self, index: int) -> str:
        return f"{SUBNET_PREFIX}.{self.number}.{FIRST_HOST_OCTET + index}"

    def netns(self, host: str) -> str:
        return f"cpf{self.number}-{host}"

    def veth(self, index: int) -> str:
        """Root-namespace end of host index's veth pair (at most 15 characters)."""
        return f"cpv{self.number}h{index}"

    def lock_path(self) -> Path:
        return RUN_DIR / f"slot-{self.number}.lock"


def link_names() -> list[str]:
    out = run(["ip", "-j", "link", "show"]).stdout
    return [str(link["ifname"]) for link in json.loads(out or "[]")]


def netns_names() -> list[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return [str(ns["name"]) for ns in json.loads(out or "[]")]


def _addresses() -> list[str]:
    out = run(["ip", "-j", "-4", "addr", "show"]).stdout
    return [
        str(info["local"]) for link in json.loads(out or "[]") for info in link.get("addr_info", [])
    ]


def slot_in_use(slot: Slot) -> bool:
    """True if anything on this machine already uses the slot's names or subnet."""
    prefix = f"{SUBNET_PREFIX}.{slot.number}."
    return (
        any(name == slot.bridge or name.startswith(f"cpv{slot.number}h") for name in link_names())
        or any(ns.startswith(f"cpf{slot.number}-") for ns in netns_names())
        or any(addr.startswith(prefix) for addr in _addresses())
    )


def claim_slot(preferred: int | None = None) -> tuple[Slot, int]:
    """Lock a free slot; return it and the lock fd (hold it for the fleet's lifetime)."""
    order = [preferred] if preferred is not None else list(range(MAX_SLOTS))
    for number in order:
        slot = Slot(number)
        fd = try_lock(slot.lock_path())
        if fd is None:
            continue
        if slot_in_use(slot):
            os.close(fd)
            continue
        return slot, fd
    raise FleetError(
        "no free test-fleet network slot (10.123.N.0/24); run `python -m testfleet "
        "down --stale` to clean up after crashed runs"
    )


def create_bridge(slot: Slot) -> None:
    run(["ip", "link", "add", slot.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{slot.bridge_address}/24", "dev", slot.bridge])
    run(["ip", "link", "set", slot.bridge, "up"])


def create_host_network(slot: Slot, host: str, index: int) -> None:
    """Namespace with lo and eth0 (the far end of a veth on the bridge); no default route."""
    ns = slot.netns(host)
    veth = slot.veth(index)
    peer = f"{veth}p"
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
    run(["ip", "link", "set", peer, "netns", ns])
    run(["ip", "link", "set", veth, "master", slot.bridge])
    run(["ip", "link", "set", veth, "up"])
    inside = ["ip", "netns", "exec", ns, "ip"]
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "link", "set", peer, "name", "eth0"])
    run([*inside, "addr", "add", f"{slot.host_address(index)}/24", "dev", "eth0"])
    run([*inside, "link", "set", "eth0", "up"])


def set_link(veth: str, up: bool) -> None:
    run(["ip", "link", "set", veth, "up" if up else "down"])


def delete_netns(name: str) -> None:
    if name in netns_names():
        run(["ip", "netns", "del", name], check=False)


def delete_link(name: str) -> None:
    if name in link_names():
        run(["ip", "link", "del", name], check=False)
