"""`coralpi status -i INVENTORY`: every Pi's last pull result in the fleet report.

Reads ``/var/lib/coralpi/last-pull.json`` (role coralpi_pull) from each reachable Pi over
SSH (:mod:`provision.fleet.pull_status`); a Pi whose last pull failed, that never pulled,
or whose last pull is older than ``--stale-after`` hours is not ok (exit 2). For Pis behind
NAT, the same JSON arrives where ``coralpi_pull_report_url`` PUTs it.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from provision.commands import options
from provision.errors import HostFailed
from provision.fleet.pull_status import gather
from provision.fleet.report import render
from provision.fleet.run import default_runs_root, new_run_dir

HELP = "pull mode: every Pi's last pull result (and its verify report) in the fleet report"


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("status", help=HELP, description=HELP)
    options.add_inventory(parser, "the Pis' inventory", default=options.DEFAULT_INVENTORY)
    options.add_limit(parser, "only these inventory hosts (Ansible pattern)")
    parser.add_argument(
        "--stale-after",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="a Pi whose last pull is older is named stale (default: %(default)s)",
    )
    options.add_extra_vars(parser, "what the SSH connection needs, e.g. ansible_user=pi")
    options.add_runs_dir(parser)
    options.add_json(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    extra = options.parse_extra_vars(args.extra_vars)
    run_dir = new_run_dir("status", args.runs_dir or default_runs_root())
    report = gather(
        args.inventory,
        run_dir,
        limit=args.limit,
        extravars=extra,
        stale_after=dt.timedelta(hours=args.stale_after),
    )
    report.save()
    render(report, args.json)
    if report.failed:
        raise HostFailed(f"not ok: {', '.join(report.failed)}")
    return 0
