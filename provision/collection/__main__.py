"""``python -m provision.collection build [--output DIR]`` builds the collection tarball
(``make collection``); ``python -m provision.collection specs [--check]`` writes (or
checks) every role's ``meta/argument_specs.yml``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from provision.collection import build, specs
from provision.errors import CoralpiError
from provision.tools import shared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provision.collection")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build coralpi-coral-<version>.tar.gz")
    b.add_argument("--output", type=Path, default=Path("build"), metavar="DIR")
    s = sub.add_parser("specs", help="write the roles' meta/argument_specs.yml")
    s.add_argument("--check", action="store_true", help="only say which files are stale")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build.build(args.output))
            return 0
        roles = shared("playbooks", "roles")
        if args.check:
            stale = specs.stale(roles)
            for path in stale:
                print(f"{path} is stale: run python -m provision.collection specs", file=sys.stderr)
            return 1 if stale else 0
        for path in specs.write(roles):
            print(f"wrote {path}")
    except CoralpiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
