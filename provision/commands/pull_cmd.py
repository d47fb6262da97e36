"""`coralpi pull init DIR`: the git repository Pis in pull mode run ansible-pull against.

Plans are made here (on the controller) and committed with the mirror's files and their
sha256; see :mod:`provision.pull.repo` for the layout and docs/DESIGN.md ("Pull mode").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from provision.artifacts.service import open_cache
from provision.commands import options
from provision.errors import ConfigError
from provision.planning.role_variables import ROLE_BY_NAME, check_role_value
from provision.pull.planning import DEFAULT_BOARD, plan_hosts
from provision.pull.repo import write_repo

HELP = "pull mode: write the git repository Pis converge themselves from (ansible-pull)"
INIT_HELP = "write or update the pull repository for an inventory, and commit it"


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("pull", help=HELP, description=HELP)
    inner = parser.add_subparsers(title="pull commands", metavar="COMMAND", required=True)
    init = inner.add_parser("init", help=INIT_HELP, description=INIT_HELP)
    init.add_argument("directory", type=Path, help="the repository (made when missing)")
    options.add_inventory(init, "the Pis' inventory", default=options.DEFAULT_INVENTORY)
    options.add_limit(init, "only these inventory hosts (Ansible pattern)")
    init.add_argument(
        "--repo-url", required=True, help="where the Pis clone the repository from (no login)"
    )
    init.add_argument("--branch", default="main", help="the branch they follow (default: main)")
    init.add_argument(
        "--mirror-url",
        required=True,
        help="where `coralpi fetch --export DIR` is served over HTTP (no login)",
    )
    init.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="also write the mirror tree there (as `coralpi fetch --export DIR`) and check "
        "that it holds every file the plans name",
    )
    init.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="[HOST=]CODENAME/ARCH/PYVER",
        help="the platform of every host, or of one (repeatable); hosts without one are probed",
    )
    init.add_argument(
        "--board", default=DEFAULT_BOARD, help="with --platform: board model (default: %(default)s)"
    )
    options.add_extra_vars(
        init,
        "coralpi_* settings on top of the inventory's; role variables given here (e.g. "
        "coralpi_pull_interval=1h) go into every host's file",
    )
    init.add_argument("--no-commit", action="store_true", help="write the files, commit nothing")
    options.add_lock(
        init, f"lock file (default: ./{options.DEFAULT_LOCK})", default=options.DEFAULT_LOCK
    )
    options.add_cache_dir(init)
    options.add_json(init)
    init.set_defaults(func=run_init)
    return parser


def role_settings(extra: dict[str, Any]) -> dict[str, Any]:
    """The role variables given with ``-e`` (checked by type), for every host's file: the
    inventory's own role variables stay in the inventory (Ansible reads them there)."""
    return {
        name: check_role_value(ROLE_BY_NAME[name], value)
        for name, value in sorted(extra.items())
        if name in ROLE_BY_NAME
    }


def run_init(args: argparse.Namespace) -> int:
    extra = options.parse_extra_vars(args.extra_vars)
    hosts, refused = plan_hosts(args.inventory, args.limit, extra, args.platform, args.board)
    if not hosts:
        why = "; ".join(f"{h}: {r}" for h, r in sorted(refused.items()))
        raise ConfigError(f"no host could be planned for pull mode ({why})")
    result = write_repo(
        args.directory,
        hosts,
        repo_url=args.repo_url,
        branch=args.branch,
        mirror_url=args.mirror_url,
        cache=open_cache(args.cache_dir),
        lock_file=args.lock,
        refused=refused,
        export_dir=args.export,
        role_settings=role_settings(extra),
        commit=not args.no_commit,
    )
    summary = {
        "directory": str(result.dir),
        "hosts": result.hosts,
        "refused": result.refused,
        "commit": result.commit,
        "changed": result.changed,
        "export": str(args.export) if args.export else None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        state = "committed" if result.changed else "unchanged"
        print(f"{result.dir}: {len(result.hosts)} host(s), {state} at {result.commit or '-'}")
        for name, why in sorted(result.refused.items()):
            print(f"  refused {name}: {why}", file=sys.stderr)
    return 0
