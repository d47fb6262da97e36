"""``coralpi apply``: probe, plan, fetch once, provision every host, then verify it."""

from __future__ import annotations

import argparse

from provision.commands.fleet_args import (
    add_fleet_arguments,
    add_tag_arguments,
    run_fleet_command,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="provision the hosts of an inventory, then verify them",
        description="Gather facts, resolve each host's plan (refusing unsupported hosts "
        "before touching any), download the artifacts once, run playbooks/site.yml with "
        "live per-host progress, and print one fleet report. Exit 0 all good, 1 "
        "configuration error, 2 a host failed, 130 interrupted by Ctrl-C (ansible-playbook "
        "is stopped, the report marks unfinished hosts; applying again converges them).",
    )
    add_fleet_arguments(parser)
    add_tag_arguments(parser)
    parser.add_argument("--check", action="store_true", help="dry run: change nothing")
    parser.add_argument("--diff", action="store_true", help="show what files would change")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_fleet_command("apply", args)
