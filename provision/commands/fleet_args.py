"""Command-line options shared by the fleet commands (apply, verify)."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Iterable

from provision.commands import options
from provision.errors import ConfigError, CoralpiError, HostFailed, Interrupted, signal_of
from provision.fleet.report import FleetReport, render
from provision.fleet.run import FleetOptions, last_failed_hosts, run_fleet
from provision.redaction import redact


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inventory(
        parser,
        "Ansible inventory (default: inventory/localhost.yml, this machine)",
        default=options.DEFAULT_INVENTORY,
    )
    options.add_limit(parser, "only hosts matching this Ansible pattern")
    options.add_extra_vars(
        parser,
        "set variables for every host, as ansible-playbook takes them: NAME=VALUE, @FILE "
        "(YAML or JSON) or a JSON object (repeatable)",
    )
    options.add_json(parser, "print the fleet report as JSON")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="only the hosts that failed in the last run of this command",
    )
    options.add_list_hosts(parser)
    options.add_verbosity(parser)
    parser.add_argument(
        "--forks",
        type=options.positive_int,
        default=20,
        metavar="N",
        help="hosts Ansible works on at once (default: %(default)s)",
    )
    options.add_runs_dir(parser)
    options.add_cache_dir(parser)
    options.add_lock(
        parser,
        "lock file pinning every artifact (default: the inventory's coralpi_lock, else "
        "./coralpi.lock when it exists)",
    )


def add_tag_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tags`` / ``--skip-tags``: parts of the job by role (repeatable, comma lists)."""
    for flag, what in (("--tags", "only"), ("--skip-tags", "all but")):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            metavar="TAG[,TAG...]",
            help=f"run {what} the roles with these tags (one per role: coralpi_apt, "
            "coralpi_edgetpu, ...; repeatable)",
        )


def _split_tags(items: Iterable[str]) -> tuple[str, ...]:
    tags: list[str] = []
    for item in items:
        tags += [t.strip() for t in item.split(",") if t.strip() and t.strip() not in tags]
    return tuple(tags)


# ---------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------


def options_from_args(args: argparse.Namespace) -> FleetOptions:
    return FleetOptions(
        inventory=args.inventory,
        limit=args.limit,
        check=getattr(args, "check", False),
        diff=getattr(args, "diff", False),
        extra_vars=options.parse_extra_vars(args.extra_vars),
        runs_root=args.runs_dir,
        cache_dir=args.cache_dir,
        retry_failed=args.retry_failed,
        lock_file=args.lock,
        verbosity=args.verbosity,
        forks=args.forks,
        tags=_split_tags(getattr(args, "tags", ())),
        skip_tags=_split_tags(getattr(args, "skip_tags", ())),
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


def list_fleet_hosts(command: str, fleet: FleetOptions, as_json: bool) -> int:
    """--list-hosts: the hosts a run would take (--retry-failed's too); nothing touched."""
    limit = fleet.limit
    if fleet.retry_failed:
        failed = last_failed_hosts(command, fleet.runs_root)
        if not failed:
            raise ConfigError(f"--retry-failed: the last `coralpi {command}` had no failed host")
        limit = ",".join(failed)
    options.list_hosts(fleet.inventory, limit, as_json)
    return 0


def run_fleet_command(command: str, args: argparse.Namespace) -> int:
    """Run `apply` or `verify` and print the report; 0 when every host is good, else
    HostFailed (exit 2) or Interrupted (130 for Ctrl-C). Secrets in URLs never reach the
    terminal."""
    fleet = options_from_args(args)
    if args.list_hosts:
        return list_fleet_hosts(command, fleet, args.json)
    try:
        report = run_fleet(command, fleet)
    except KeyboardInterrupt as exc:
        raise Interrupted(
            f"coralpi {command}: interrupted before any host was touched",
            signal_of(exc),
            bare=True,
        ) from None
    except CoralpiError as exc:
        exc.message = redact(exc.message)
        raise
    render(report, as_json=args.json)
    if report.interrupted:
        raise Interrupted(
            interrupted_message(report), signal.Signals[report.interrupted].value, bare=True
        )
    if report.failed:
        raise HostFailed("")  # the report names the failed hosts
    return 0
