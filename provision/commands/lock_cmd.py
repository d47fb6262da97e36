"""`coralpi lock`: pin every artifact a fleet installs into `coralpi.lock`.

Targets come from an inventory (`-i`, hosts probed for their facts) and/or from
`--platform CODENAME/ARCH/PYVER` (e.g. `bookworm/aarch64/3.11`, no host needed). Platforms
already in the lock with unchanged inputs are kept as they are, so re-running with nothing
changed leaves the file untouched.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from provision import files
from provision.artifacts.lockfile import Lock, read_if_exists, write_if_changed
from provision.artifacts.service import ArtifactSettings, build_lock, open_cache
from provision.commands import options
from provision.commands.options import FlagFor
from provision.errors import ConfigError, CoralpiError, HostFailed
from provision.planning import run_wide
from provision.planning.matrix import platform_target, resolve
from provision.planning.plan import Plan
from provision.planning.service import plan_inventory
from provision.planning.targets import choices_from_vars
from provision.planning.variables import BY_NAME

HELP = "pin every wheel, runtime .deb, key and asset the fleet installs into coralpi.lock"

# Flag dest -> the flag and the variable it sets (for messages that name what was typed).
_FLAGS = {
    "runtime": FlagFor("--runtime", "coralpi_runtime"),
    "opencv": FlagFor("--opencv", "coralpi_opencv"),
}


def add_common_artifact_args(parser: argparse.ArgumentParser) -> None:
    options.add_lock(
        parser, f"lock file (default: ./{options.DEFAULT_LOCK})", default=options.DEFAULT_LOCK
    )
    options.add_cache_dir(parser)


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("lock", help=HELP, description=HELP)
    options.add_inventory(parser, "inventory whose hosts to lock for")
    options.add_limit(parser, "with -i: only these inventory hosts (Ansible pattern)")
    options.add_verbosity(parser, "with -i: the probe's")
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
        "coralpi_* settings for every target (NAME=VALUE, @FILE or a JSON object), e.g. "
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
    options.add_lock(
        parser,
        f"lock file (default: with -i the inventory's coralpi_lock, else ./{options.DEFAULT_LOCK})",
    )
    options.add_cache_dir(parser)
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


def unreachable_message(missing: Sequence[str]) -> str:
    return (
        f"lock: no facts from {', '.join(missing)} (unreachable?); their platforms are "
        "not locked unless another host or --platform covers them"
    )


def collect_hosts(
    args: argparse.Namespace, extra: Mapping[str, Any], missing: list[str] | None = None
) -> list[tuple[str, Plan, ArtifactSettings]]:
    """(label, plan, settings) for every inventory host and --platform; the hosts that
    could not be probed go to ``missing`` (HostFailed when nothing else is left)."""
    out: list[tuple[str, Plan, ArtifactSettings]] = []
    unprobed: list[str] = []
    if args.inventory is not None:
        planned = plan_inventory(
            args.inventory,
            args.limit,
            extra,
            prober=options.prober(getattr(args, "verbosity", 0)),
        )
        unprobed = [h.name for h in planned.hosts if not h.probed]
        if missing is not None:
            missing += unprobed
        refused = [
            f"host {h.name}: {h.error}" for h in planned.hosts if h.probed and h.error is not None
        ]
        if refused:
            raise ConfigError("cannot lock for these hosts:\n  " + "\n  ".join(refused))
        per_host = [h.variables for h in planned.hosts]
        args.lock = run_wide.controller_path("coralpi_lock", args.lock, per_host)
        args.cache_dir = run_wide.controller_path("coralpi_cache_dir", args.cache_dir, per_host)
        for host in planned.hosts:
            if host.plan is not None:
                out.append((host.name, host.plan, ArtifactSettings.from_vars(host.variables)))
    for spec in args.platform:
        plan = resolve(platform_target(spec), choices_from_vars(extra))
        out.append((spec, plan, ArtifactSettings.from_vars(extra)))
    if not out and unprobed:
        raise HostFailed(unreachable_message(unprobed))
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
    """Write the lock; messages name the flag a value came from. A host that could not be
    probed makes it HostFailed (exit 2) once the other targets are locked."""
    given = [spec for dest, spec in _FLAGS.items() if getattr(args, dest, None)]
    try:
        return _run(args)
    except CoralpiError as exc:
        exc.message = options.name_flags(exc.message, given, [s.variable for s in given])
        raise


def _run(args: argparse.Namespace) -> int:
    if args.limit and args.inventory is None:
        raise ConfigError("lock: --limit goes with -i INVENTORY")
    # With -i, -e may also carry what the probe's connection needs (ansible_user=...).
    given = options.parse_extra_vars(args.extra_vars, coralpi_only=args.inventory is None)
    extra = {**given, **_overrides(args)}
    missing: list[str] = []
    hosts = collect_hosts(args, extra, missing)
    # Without -i, -e may name them (with -i, collect_hosts took the hosts' values).
    args.lock = run_wide.controller_path("coralpi_lock", args.lock, [extra]) or options.DEFAULT_LOCK
    args.cache_dir = run_wide.controller_path("coralpi_cache_dir", args.cache_dir, [extra])
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
    if missing:
        raise HostFailed(unreachable_message(missing))
    return 0
