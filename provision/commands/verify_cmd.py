"""``coralpi verify``: run the verify module on every host and print one fleet table."""

from __future__ import annotations

import argparse

from provision.commands.fleet_args import add_fleet_arguments, options_from_args
from provision.fleet import run_fleet
from provision.report import render


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check every host and run the Coral smoke test on it",
        description="Push the verify package and the smoke-test assets to each host, run "
        "it there in the provisioned venv, gather the JSON and print one fleet table. "
        "Exit 2 if any host fails.",
    )
    add_fleet_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = run_fleet("verify", options_from_args(args))
    render(report, as_json=args.json)
    return 2 if report.failed else 0
