"""``python -m testfleet``: bring a fleet up (foreground), tear one down, show status.

python -m testfleet build [--image bookworm/arm64 ...]   # warm the caches, print timings
python -m testfleet up WORKDIR [--host pi1:bookworm --host pi4:bookworm/arm64 ...]
python -m testfleet status [WORKDIR]
python -m testfleet down WORKDIR | --stale
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from . import interrupts, network, standin_coral
from .binfmt import BinfmtUse, remove_unused_registration
from .cmd import try_lock
from .errors import FleetError
from .fleet import DEFAULT_HOSTS, Fleet
from .hosts import HostSpec
from .paths import RUN_DIR, cache_root
from .rootfs import ensure_rootfs, recipe_for
from .state import FleetState, stale_states, teardown


def _host_spec(text: str) -> HostSpec:
    """NAME[:SUITE[/ARCH]], e.g. pi4:bookworm/arm64."""
    name, _, rest = text.partition(":")
    suite, _, arch = rest.partition("/")
    return HostSpec(name, suite or "bookworm", arch or "amd64")


def cmd_build(args: argparse.Namespace) -> int:
    cache = cache_root()
    report: dict[str, object] = {}
    start = time.monotonic()
    images = [_host_spec(f"x:{s}") for s in args.image or ["bookworm", "trixie"]]
    qemu = BinfmtUse({i.arch for i in images})
    try:
        for image in images:
            built = ensure_rootfs(recipe_for(image.suite, image.arch), cache)
            report[f"rootfs {image.suite}/{image.arch}"] = {
                "action": built.action,
                "seconds": built.seconds,
                "tarball": str(built.tarball),
            }
    finally:
        qemu.close()
    standin = standin_coral.ensure_standin(cache)
    report["stand-in coral"] = {
        "action": standin.action,
        "seconds": standin.seconds,
        "fingerprint": standin.key_fingerprint,
    }
    report["total seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(report, indent=2))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    specs = [_host_spec(h) for h in args.host] if args.host else list(DEFAULT_HOSTS)
    fleet = Fleet(Path(args.workdir), hosts=specs)
    # SIGTERM and SIGINT raise KeyboardInterrupt from here on, also during setup.
    interrupts.acquire()
    try:
        with fleet:
            info = {
                "inventory": str(fleet.inventory_path),
                "hosts": {h.name: h.address for h in fleet.hosts},
                "urls": fleet.urls,
                "standin_key_fingerprint": fleet.standin_key_fingerprint,
                "timings": fleet.timings,
            }
            (fleet.workdir / "fleet.json").write_text(json.dumps(info, indent=2) + "\n")
            print(json.dumps(info, indent=2), flush=True)
            print("fleet is up; Ctrl-C or SIGTERM tears it down", file=sys.stderr, flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        interrupts.release()
    print(json.dumps({"teardown seconds": fleet.timings.get("teardown")}), flush=True)
    return 0


def _states(workdir: str | None) -> list[tuple[FleetState, bool]]:
    """(state, live) pairs: one workdir, or every fleet registered under /run."""
    if workdir:
        state = FleetState.load(Path(workdir) / "state.json")
        return [(state, _live(state.slot))]
    found: list[tuple[FleetState, bool]] = []
    for pointer in sorted(RUN_DIR.glob("fleet-*.json")) if RUN_DIR.is_dir() else []:
        try:
            state = FleetState.load(Path(json.loads(pointer.read_text())["state"]))
        except (OSError, ValueError, KeyError):
            continue
        found.append((state, _live(state.slot)))
    return found


def _live(slot: int) -> bool:
    fd = try_lock(network.Slot(slot).lock_path())
    if fd is None:
        return True
    os.close(fd)
    return False


def cmd_status(args: argparse.Namespace) -> int:
    rows = []
    for state, live in _states(args.workdir):
        rows.append(
            {
                "slot": state.slot,
                "workdir": str(state.workdir),
                "owner": "running" if live else "gone (stale: `down --stale` cleans it)",
                "bridge": state.bridge,
                "netns": state.netns,
                "procs": [{"role": p.role, "pid": p.pid, "alive": p.alive()} for p in state.procs],
                "guardian": (
                    {"pid": state.guardian.pid, "alive": state.guardian.alive()}
                    if state.guardian
                    else None
                ),
                "binfmt": state.binfmt,
            }
        )
    print(json.dumps(rows, indent=2))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if args.stale:
        states = stale_states()
    elif args.workdir:
        states = [FleetState.load(Path(args.workdir) / "state.json")]
        if _live(states[0].slot) and not args.force:
            print(
                f"fleet in {args.workdir} is owned by a running process; "
                "stop that process or pass --force",
                file=sys.stderr,
            )
            return 1
    else:
        print("down: give WORKDIR or --stale", file=sys.stderr)
        return 1
    failed = False
    if args.stale and not remove_unused_registration():
        print("qemu binfmt registration kept: a running fleet uses it", file=sys.stderr)
    for state in states:
        problems = teardown(state)
        print(json.dumps({"workdir": str(state.workdir), "problems": problems}))
        failed = failed or bool(problems)
        if not problems:
            state.path.unlink(missing_ok=True)
    if not args.stale and any(s.binfmt for s in states) and not remove_unused_registration():
        print("qemu binfmt registration kept: a running fleet uses it", file=sys.stderr)
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testfleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build or reuse the cached images")
    build.add_argument(
        "--image", action="append", help="SUITE[/ARCH], e.g. bookworm/arm64 (repeatable)"
    )
    up = sub.add_parser("up", help="bring a fleet up and keep it until interrupted")
    up.add_argument("workdir")
    up.add_argument("--host", action="append", help="NAME:SUITE[/ARCH] (repeatable)")
    status = sub.add_parser("status", help="show registered fleets")
    status.add_argument("workdir", nargs="?")
    down = sub.add_parser("down", help="tear a fleet down from its state file")
    down.add_argument("workdir", nargs="?")
    down.add_argument("--stale", action="store_true", help="every fleet whose owner died")
    down.add_argument("--force", action="store_true", help="even if its owner still runs")
    args = parser.parse_args(argv)
    handlers = {"build": cmd_build, "up": cmd_up, "status": cmd_status, "down": cmd_down}
    try:
        return handlers[args.command](args)
    except FleetError as exc:
        print(f"testfleet: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
