"""``coralpi image``: SD cards that provision themselves.

``coralpi image prepare TARGET --hostname NAME (--platform C/A/P | -i INV --limit HOST)``
writes a first-boot bundle and the release's own first-boot hook onto a stock Raspberry Pi
OS card or image (see :mod:`provision.image.prepare`).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from provision.commands.lock_cmd import parse_vars
from provision.errors import ConfigError
from provision.image import planning
from provision.image.prepare import REPORT_DIR, prepare

PREPARE_HELP = "write a first-boot bundle onto a Raspberry Pi OS card or .img"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "image", help="SD cards that provision themselves at first boot",
        description="Work on Raspberry Pi OS cards and image files.",
    )
    sub = parser.add_subparsers(title="image commands", metavar="COMMAND")
    prep = sub.add_parser(
        "prepare", help=PREPARE_HELP,
        description=PREPARE_HELP + ": the playbooks, the plan for this Pi, the locked "
        "artifacts and what runs them, plus the hook the release uses (Bookworm: Imager's "
        "firstrun.sh + systemd.run on cmdline.txt; Trixie: cloud-init NoCloud seed files). At "
        "first boot the Pi runs `ansible-playbook -c local`, then verify, writes the report "
        f"to {REPORT_DIR}/ on the boot partition and removes the hook and the bundle. Every "
        "check runs before anything is written; the FAT partition is never mounted.",
    )
    prep.add_argument("target", type=Path, metavar="TARGET",
                      help="a Raspberry Pi OS .img file or a card's whole-disk block device")
    prep.add_argument("--hostname", required=True, help="the Pi's hostname")
    prep.add_argument("--ssh-key", type=Path, metavar="FILE",
                      help="OpenSSH public key(s) to authorise for coralpi_user (default pi)")
    where = prep.add_mutually_exclusive_group(required=True)
    where.add_argument("--platform", metavar="CODENAME/ARCH/PYVER",
                       help="the Pi's platform, e.g. bookworm/aarch64/3.11")
    where.add_argument("-i", "--inventory", type=Path,
                       help="inventory with a host of the same kind (use with --limit HOST)")
    prep.add_argument("-l", "--limit", help="with -i: the one host the card is for")
    prep.add_argument("--board", default=planning.DEFAULT_BOARD,
                      help="with --platform: board model (default: %(default)s)")
    prep.add_argument("-e", "--var", action="append", default=[], metavar="NAME=VALUE",
                      help="a coralpi_* setting, e.g. coralpi_apt_proxy=http://10.0.0.1:3142")
    prep.add_argument("--lock", type=Path, metavar="FILE",
                      help="lock file pinning every artifact (platform added when missing)")
    prep.add_argument("--cache-dir", type=Path, metavar="DIR", help="artifact cache")
    prep.add_argument("--yes", action="store_true",
                      help="write to a block device without asking")
    prep.add_argument("--dry-run", action="store_true",
                      help="run every check and build the bundle, write nothing")
    prep.add_argument("--json", action="store_true", help="print the result as JSON")
    prep.set_defaults(func=run_prepare)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 1


def run_prepare(args: argparse.Namespace) -> int:
    extra = parse_vars(args.var)
    if args.inventory is not None:
        host_plan = partial(planning.from_inventory, args.inventory, args.limit, extra)
    else:
        if args.limit:
            raise ConfigError("--limit goes with -i INVENTORY, not --platform")
        host_plan = partial(planning.from_platform, args.platform, extra, args.board or None)
    result = prepare(
        args.target, args.hostname, host_plan, ssh_key=args.ssh_key, lock_file=args.lock,
        cache_dir=args.cache_dir, assume_yes=args.yes, dry_run=args.dry_run,
    )
    summary = {
        "target": str(args.target),
        "route": result.route,
        "release": result.card.info.codename,
        "written": result.written,
        "notes": result.notes,
        "seconds": result.seconds,
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        hook = "firstrun.sh + cmdline.txt" if result.route == "firstrun" else \
            "cloud-init user-data/meta-data"
        state = "checked (dry run)" if args.dry_run else "prepared"
        print(f"{args.target}: {state} for {args.hostname} ({result.card.info.codename}, "
              f"hook: {hook}) in {result.seconds:.1f}s")
        for note in result.notes:
            print(f"  {note}")
        if result.written:
            print(f"  at first boot the report goes to {REPORT_DIR}/ on the boot partition")
    return 0
