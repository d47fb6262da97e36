"""Command-line options shared by the fleet commands (apply, verify)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from provision.errors import ConfigError
from provision.fleet import FleetOptions
from provision.tools import repo_root

DEFAULT_INVENTORY = repo_root() / "inventory" / "localhost.yml"
DEFAULT_LOCK = Path("coralpi.lock")


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i",
        "--inventory",
        type=Path,
        default=DEFAULT_INVENTORY,
        help="Ansible inventory (default: inventory/localhost.yml, this machine)",
    )
    parser.add_argument("-l", "--limit", help="only hosts matching this Ansible pattern")
    parser.add_argument(
        "-e",
        "--extra-vars",
        dest="extra_vars",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="set an inventory variable for every host (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the fleet report as JSON")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="only the hosts that failed in the last run of this command",
    )
    parser.add_argument("--runs-dir", type=Path, help="where run directories go")
    parser.add_argument("--cache-dir", type=Path, help="artifact cache (default XDG cache)")
    parser.add_argument(
        "--lock",
        type=Path,
        help="lock file pinning every artifact (default: ./coralpi.lock when it exists)",
    )


def parse_extra_vars(items: list[str]) -> dict[str, Any]:
    """`-e VAR=VALUE` pairs; anything else is a usage error naming the item."""
    result: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"-e {item!r}: expected VAR=VALUE")
        result[name.strip()] = value
    return result


def options_from_args(args: argparse.Namespace) -> FleetOptions:
    return FleetOptions(
        inventory=args.inventory,
        limit=args.limit,
        check=getattr(args, "check", False),
        diff=getattr(args, "diff", False),
        extra_vars=parse_extra_vars(args.extra_vars),
        runs_root=args.runs_dir,
        cache_dir=args.cache_dir,
        retry_failed=args.retry_failed,
        lock_file=args.lock or (DEFAULT_LOCK if DEFAULT_LOCK.exists() else None),
    )
