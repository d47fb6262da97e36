"""`make demo`: the whole coralpi job on a simulated fleet of throwaway Debian hosts.

Brings up three hosts (two bookworm, one trixie) in network namespaces with an apt proxy and
locally served STAND-INS for what cannot be reached from here (Coral's apt repository, the
community runtime releases, Coral's test data), runs `coralpi apply` and `coralpi verify`
against them with live progress, prints the fleet report and tears everything down, or keeps
it running with --keep (KEEP=1), printing how to reach the hosts and how to tear down.
Needs root (network namespaces, mounts).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testfleet import Fleet  # noqa: E402


def _coralpi(*args: str) -> int:
    cmd = [str(Path(sys.executable).parent / "coralpi"), *args]
    shown = " ".join(a if len(a) < 60 else a[:57] + "..." for a in args)
    print(f"\n$ coralpi {shown}", flush=True)
    return subprocess.run(cmd, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the fleet running")
    parser.add_argument("--workdir", type=Path, help="fleet directory (default: a new temp dir)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("make demo needs root: it creates network namespaces and mounts", file=sys.stderr)
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="coralpi-demo-"))
    fleet = Fleet(workdir)
    print("Bringing up the simulated fleet (first run builds cached Debian trees: minutes)...")
    fleet.up()
    torn_down = False
    try:
        print("\nSimulated fleet (every service below is local to this machine):")
        for host in fleet.hosts:
            print(f"  {host.name:<5} {host.spec.suite:<9} {host.address}")
        print(f"  STAND-IN Coral apt repository:        {fleet.urls['coral_apt']}")
        print(f"  STAND-IN community runtime .debs:     {fleet.urls['community']}")
        print(f"  STAND-IN Coral test data:             {fleet.urls['test_data']}")
        print(f"  apt proxy (real Debian packages):     {fleet.urls['apt_proxy']}")
        inventory = str(fleet.inventory_path)
        lock = str(workdir / "coralpi.lock")
        # The stand-in community .debs are served over plain http on the test bridge: pin
        # them by the sha256 of the files the fleet built, as a user pins a mirror's files.
        assert fleet.standin is not None
        pins = fleet.pin_args()
        rc_lock = _coralpi("lock", "-i", inventory, "--lock", lock, *pins)
        if rc_lock != 0:
            return rc_lock
        rc_apply = _coralpi("apply", "-i", inventory, "--lock", lock)
        rc_verify = _coralpi("verify", "-i", inventory, "--lock", lock)
        print(f"\ncoralpi apply exited {rc_apply}, coralpi verify exited {rc_verify}")
        if args.keep:
            print("\nThe fleet keeps running. Reach a host with:")
            first = fleet.hosts[0]
            print(f"  ssh -i {fleet.key_file} -o StrictHostKeyChecking=no pi@{first.address}")
            print(f"Inventory: {inventory}")
            print(f"Tear down: {sys.executable} -m testfleet down {workdir}")
            fleet.keep()  # on purpose: left up, past this process
            torn_down = True
            return max(rc_apply, rc_verify)
        return max(rc_apply, rc_verify)
    finally:
        if not torn_down:
            fleet.down()
            print("Fleet torn down.")


if __name__ == "__main__":
    sys.exit(main())
