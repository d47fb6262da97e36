"""Command-line options shared by the fleet commands (apply, verify)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, CoralpiError
from provision.fleet.report import FleetReport, render
from provision.fleet.run import FleetOptions, interrupted_exit_code, run_fleet
from provision.redaction import redact
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


def interrupted_message(report: FleetReport) -> str:
    """What the user reads after stopping a run: what state the hosts are in, what to do."""
    stopped = [n for n, h in sorted(report.hosts.items()) if h.status == "interrupted"]
    how = "Ctrl-C" if report.interrupted == "SIGINT" else report.interrupted
    return (
        f"coralpi {report.command}: interrupted ({how}); ansible-playbook was stopped.\n"
        f"  Unfinished hosts: {', '.join(stopped) or 'none'} (marked 'interrupted' in the "
        "report; they may be part-way through a task).\n"
        f"  Run `coralpi {report.command}` again (or with --retry-failed) to converge them.\n"
        f"  Run directory (logs, event stream, report.json): {report.run_dir}"
    )


def run_fleet_command(command: str, args: argparse.Namespace) -> int:
    """Run `apply` or `verify` and print the report; the exit status (0 all good, 2 a
    host failed, 130 interrupted by Ctrl-C). Secrets in URLs never reach the terminal."""
    try:
        report = run_fleet(command, options_from_args(args))
    except KeyboardInterrupt:
        print(f"coralpi {command}: interrupted before any host was touched", file=sys.stderr)
        return 130
    except CoralpiError as exc:
        exc.message = redact(exc.message)
        raise
    render(report, as_json=args.json)
    if report.interrupted:
        print(interrupted_message(report), file=sys.stderr)
        return interrupted_exit_code(report)
    return 2 if report.failed else 0
