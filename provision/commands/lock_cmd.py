"""`coralpi lock`: pin every artifact a fleet installs into `coralpi.lock`.

Targets come from an inventory (`-i`, hosts probed for their facts) and/or from
`--platform CODENAME/ARCH/PYVER` (e.g. `bookworm/aarch64/3.11`, no host needed). Platforms
already in the lock with unchanged inputs are kept as they are, so re-running with nothing
changed leaves the file untouched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from provision import files
from provision.artifacts.lockfile import Lock, read_if_exists, write_if_changed
from provision.artifacts.service import ArtifactSettings, build_lock, open_cache
from provision.commands import options
from provision.errors import ConfigError
from provision.planning.matrix import platform_target, resolve
from provision.planning.plan import Plan
from provision.planning.service import plan_inventory
from provision.planning.targets import choices_from_vars
from provision.planning.variables import BY_NAME

HELP = "pin every wheel, runtime .deb, key and asset the fleet installs into coralpi.lock"


def add_common_artifact_args(parser: argparse.ArgumentParser) -> None:
    options.add_lock(
        parser, f"lock file (default: ./{options.DEFAULT_LOCK})", default=options.DEFAULT_LOCK
    )
    options.add_cache_dir(parser)


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("lock", help=HELP, description=HELP)
    options.add_inventory(parser, "inventory whose hosts to lock for")
    options.add_limit(parser, "only these inventory hosts (Ansible pattern)")
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="CODENAME/ARCH/PYVER",
        help="a target platform without a host, e.g. bookworm/aarch64/3.11 (repeatable)",
    )
    parser.add_argument(
        "--runtime", choices=BY_NAME["coralpi_runtime"].choices, help="override coralpi_runtime"
    )
    parser.add_argument(
        "--opencv", choices=BY_NAME["coralpi_opencv"].choices, help="override coralpi_opencv"
    )
    options.add_extra_vars(
        parser,
        "a coralpi_* setting for every target, e.g. "
        "coralpi_community_runtime_url=https://mirror/...; with -i also what the probe's "
        "connection needs, e.g. ansible_user=pi (repeatable)",
    )
    parser.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="URL_OR_FILE=SHA256",
        help="pin a file (by URL or file name) served over plain http before its first "
        "download (repeatable)",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="resolve everything again and trust new hashes (drops the lock's pins)",
    )
    add_common_artifact_args(parser)
    parser.set_defaults(func=run)
    return parser


def parse_pins(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, sha = item.rpartition("=")
        sha = sha.strip().lower()
        if not sep or not key or len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
            raise ConfigError(f"--pin {item!r}: expected URL=SHA256 or FILE=SHA256 (64 hex digits)")
        out[key.strip()] = sha
    return out


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    if args.runtime:
        over["coralpi_runtime"] = args.runtime
        if args.runtime == "max":
            over["coralpi_accept_max_eula"] = True
    if args.opencv:
        over["coralpi_opencv"] = args.opencv
    return over


def collect_hosts(
    args: argparse.Namespace, extra: Mapping[str, Any]
) -> list[tuple[str, Plan, ArtifactSettings]]:
    """(label, plan, settings) for every inventory host and --platform."""
    out: list[tuple[str, Plan, ArtifactSettings]] = []
    if args.inventory is not None:
        planned = plan_inventory(args.inventory, args.limit, extra)
        missing = [h.name for h in planned.hosts if not h.probed]
        if missing:
            print(
                f"coralpi lock: no facts from {', '.join(missing)} (unreachable?); "
                "their platforms are not locked unless another host or --platform "
                "covers them",
                file=sys.stderr,
            )
        refused = [
            f"host {h.name}: {h.error}" for h in planned.hosts if h.probed and h.error is not None
        ]
        if refused:
            raise ConfigError("cannot lock for these hosts:\n  " + "\n  ".join(refused))
        for host in planned.hosts:
            if host.plan is not None:
                out.append((host.name, host.plan, ArtifactSettings.from_vars(host.variables)))
    for spec in args.platform:
        plan = resolve(platform_target(spec), choices_from_vars(extra))
        out.append((spec, plan, ArtifactSettings.from_vars(extra)))
    if not out:
        raise ConfigError(
            "coralpi lock needs targets: -i INVENTORY and/or --platform "
            "CODENAME/ARCH/PYVER (e.g. --platform bookworm/aarch64/3.11)"
        )
    return out


def summarize(lock: Lock) -> list[str]:
    lines = []
    for pid, plat in sorted(lock.platforms.items()):
        size = sum(a.size for a in plat.artifacts)
        kinds = {k: sum(1 for a in plat.artifacts if a.kind == k) for k in ("wheel", "deb")}
        lines.append(
            f"  {pid}: {kinds['wheel']} wheel(s), {kinds['deb']} .deb(s), {size / 1e6:.1f} MB"
        )
    shared = sorted({a.kind for a in lock.shared})
    if shared:
        lines.append(f"  shared: {len(lock.shared)} file(s) ({', '.join(shared)})")
    return lines


def run(args: argparse.Namespace) -> int:
    # With -i, -e may also carry what the probe's connection needs (ansible_user=...).
    given = options.parse_extra_vars(args.extra_vars, coralpi_only=args.inventory is None)
    extra = {**given, **_overrides(args)}
    hosts = collect_hosts(args, extra)
    cache = open_cache(args.cache_dir)
    # One `coralpi lock` (or apply adding a platform) at a time per lock file.
    with files.locked(args.lock):
        previous = read_if_exists(args.lock)
        lock = build_lock(
            [(plan, settings) for _, plan, settings in hosts],
            cache,
            previous=previous,
            refresh=args.refresh,
            extra_pins=parse_pins(args.pin),
        )
        changed = write_if_changed(args.lock, lock)
    state = "written" if changed else "unchanged"
    print(f"{args.lock}: {state} ({len(hosts)} target(s), {len(lock.platforms)} platform(s))")
    for line in summarize(lock):
        print(line)
    if cache.stats.files_downloaded:
        print(
            f"downloaded {cache.stats.files_downloaded} file(s), "
            f"{cache.stats.bytes_downloaded / 1e6:.1f} MB into {cache.root}"
        )
    return 0
