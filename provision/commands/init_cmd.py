"""`coralpi init [DIR]`: a starter inventory for a fleet, outside any checkout.

Writes ``DIR/inventory.yml`` (the example fleet: groups, addresses to replace) and
``DIR/group_vars/all.yml`` (every ``coralpi_*`` variable, described, with its default), from
the files coralpi carries (:func:`provision.tools.shared`). An existing file is never
overwritten: nothing is written then, and the message names it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from provision.errors import ConfigError
from provision.files import write_atomic
from provision.tools import shared

HELP = "write a starter inventory (inventory.yml, group_vars/all.yml) into a directory"
#: What is written, and from which shipped file.
FILES = {
    Path("inventory.yml"): ("inventory", "example-fleet.yml"),
    Path("group_vars") / "all.yml": ("inventory", "group_vars", "all.yml"),
}


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("init", help=HELP, description=HELP)
    parser.add_argument(
        "directory", nargs="?", type=Path, default=Path("."), help="where (default: here)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    target: Path = args.directory
    present = [str(target / rel) for rel in FILES if (target / rel).exists()]
    if present:
        raise ConfigError(
            f"init: {', '.join(present)} already there; nothing was written (move it away or "
            "choose another directory)"
        )
    for rel, source in FILES.items():
        write_atomic(target / rel, shared(*source).read_bytes())
    inventory = target / "inventory.yml"
    print(f"wrote {inventory} and {target / 'group_vars' / 'all.yml'}")
    print(f"next: replace the addresses in {inventory}, then `coralpi plan -i {inventory}`")
    return 0
