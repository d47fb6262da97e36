"""Command-line options several commands share, each defined once (names, defaults, help).

``-i/--inventory``, ``-l/--limit``, ``-e/--extra-vars``, ``--lock``, ``--cache-dir``,
``--runs-dir`` and ``--json``; and ``-e``'s one parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provision.artifacts.lockfile import DEFAULT_LOCK_NAME
from provision.errors import ConfigError
from provision.tools import share_root

DEFAULT_INVENTORY = share_root() / "inventory" / "localhost.yml"
DEFAULT_LOCK = Path(DEFAULT_LOCK_NAME)


def add_inventory(parser: Any, help: str, *, default: Path | None = None) -> None:
    """``-i/--inventory`` (``parser`` may be a mutually exclusive group)."""
    parser.add_argument("-i", "--inventory", type=Path, default=default, help=help)


def add_limit(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("-l", "--limit", help=help)


def add_extra_vars(parser: argparse.ArgumentParser, help: str) -> None:
    """``-e NAME=VALUE`` (repeatable; ``--var`` is its older spelling)."""
    parser.add_argument(
        "-e",
        "--extra-vars",
        "--var",
        dest="extra_vars",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=help,
    )


def add_lock(parser: argparse.ArgumentParser, help: str, *, default: Path | None = None) -> None:
    parser.add_argument("--lock", type=Path, default=default, metavar="FILE", help=help)


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="artifact cache (default: $CORALPI_CACHE_DIR or $XDG_CACHE_HOME/coralpi)",
    )


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir",
        type=Path,
        metavar="DIR",
        help="where run directories go (default: $XDG_STATE_HOME/coralpi/runs)",
    )


def add_json(parser: argparse.ArgumentParser, help: str = "print the result as JSON") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def parse_extra_vars(items: Sequence[str], *, coralpi_only: bool = False) -> dict[str, Any]:
    """``-e NAME=VALUE`` pairs; anything else is a usage error naming the item. With
    ``coralpi_only`` (commands that pass nothing to Ansible) only ``coralpi_*`` names."""
    result: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"-e {item!r}: expected VAR=VALUE")
        if coralpi_only and not name.startswith("coralpi_"):
            raise ConfigError(f"-e {item!r}: expected coralpi_NAME=VALUE")
        result[name] = value
    return result
