"""`coralpi matrix golden|outdated`: the maintainer's commands that keep the matrix true.

- ``golden [--write | --check] [--file FILE]``: the planner's decisions as the checked-in
  table ``docs/decisions.md`` (:mod:`provision.planning.golden`); ``--check`` exits 1 when
  the file is stale (``make lint`` runs it), ``--write`` rewrites it.
- ``outdated [--json] [--index-url URL]``: what PyPI has that the matrix does not know yet
  (:mod:`provision.planning.outdated`): new versions, Python tags, platforms and glibc
  needs of every package the matrix chooses from; the GitHub sources, which this command
  does not read, are listed as not checked.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from provision.errors import ConfigError
from provision.planning import golden, outdated

HELP = "maintainer's tools: the golden table of decisions, what PyPI has that the matrix lacks"
#: The checkout this module runs from (the golden table is a file of the source tree).
CHECKOUT = Path(__file__).resolve().parents[2]


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("matrix", help=HELP, description=HELP)
    what = parser.add_subparsers(dest="matrix_command", metavar="{golden,outdated}")
    what.required = True
    gold = what.add_parser(
        "golden",
        help="print, check (--check) or rewrite (--write) the golden table docs/decisions.md",
        description="The planner's decision for every release x architecture x board class "
        "x accelerator x runtime variant, as the Markdown table checked in as "
        "docs/decisions.md.",
    )
    mode = gold.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the file")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 with a diff when the file is stale"
    )
    gold.add_argument(
        "--file",
        type=Path,
        default=None,
        help=f"the table's file (default: {golden.GOLDEN_PATH} in the checkout)",
    )
    gold.set_defaults(func=run_golden)
    old = what.add_parser(
        "outdated",
        help="list what PyPI has that the matrix does not know yet (network)",
        description="Ask PyPI for the releases of every package the matrix chooses from "
        f"({', '.join(outdated.PACKAGES)}) and list new versions, Python tags, platforms "
        "and glibc needs the matrix does not know. GitHub sources are listed as not checked.",
    )
    old.add_argument(
        "--index-url",
        default=outdated.PYPI_JSON,
        help="PyPI's JSON API, {name} for the project (default: %(default)s)",
    )
    old.add_argument("--json", action="store_true", help="print the findings as JSON")
    old.set_defaults(func=run_outdated)
    return parser


def run_golden(args: argparse.Namespace) -> int:
    path: Path = args.file or CHECKOUT / golden.GOLDEN_PATH
    if args.write:
        changed = golden.write(path)
        print(f"{'wrote' if changed else 'unchanged:'} {path}")
        return 0
    text = golden.render()
    if not args.check:
        sys.stdout.write(text)
        return 0
    have = path.read_text(encoding="utf-8") if path.is_file() else ""
    if have == text:
        return 0
    diff = difflib.unified_diff(
        have.splitlines(keepends=True), text.splitlines(keepends=True), str(path), "planner"
    )
    sys.stdout.writelines(list(diff)[:200])
    raise ConfigError(
        f"{path} is stale: the planner decides otherwise now (diff above); review it and run "
        "`coralpi matrix golden --write`"
    )


def run_outdated(args: argparse.Namespace) -> int:
    report = outdated.check(outdated.PypiClient(args.index_url))
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.render())
    return 0
