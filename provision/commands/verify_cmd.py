"""``coralpi verify``: run the verify module on every host and print one fleet table."""

from __future__ import annotations

import argparse

from provision.commands.fleet_args import add_fleet_arguments, run_fleet_command


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check every host and run the Coral smoke test on it",
        description="Push the verify package and the smoke-test assets to each host, run "
        "it there in the provisioned venv, gather the JSON and print one fleet table. "
        "Exit 2 if any host fails, 130 when interrupted by Ctrl-C.",
    )
    add_fleet_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_fleet_command("verify", args)
