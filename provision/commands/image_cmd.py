"""``coralpi image``: SD cards that provision themselves.

``coralpi image prepare TARGET --hostname NAME (--platform C/A/P | -i INV --limit HOST)``
writes a first-boot bundle and the release's own first-boot hook onto a stock Raspberry Pi
OS card or image (see :mod:`provision.image.prepare`).

``coralpi image build --base BASE.img[.xz] --out OUT.img (--platform ... | -i INV --limit
HOST)`` provisions a copy of a Raspberry Pi OS image with the same roles as ``apply`` (see
:mod:`provision.image.build`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from functools import partial
from pathlib import Path

from provision.commands import options
from provision.errors import ConfigError, Interrupted, signal_of
from provision.image import planning
from provision.image.build import DEFERRED, build_image
from provision.image.prepare import REPORT_DIR, prepare

PREPARE_HELP = "write a first-boot bundle onto a Raspberry Pi OS card or .img"
BUILD_HELP = "build a provisioned (golden) image from a Raspberry Pi OS image"


def _add_host_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--platform",
        metavar="CODENAME/ARCH/PYVER",
        help="the Pi's platform, e.g. bookworm/aarch64/3.11",
    )
    options.add_inventory(where, "inventory with a host of the same kind (use with --limit HOST)")
    options.add_limit(parser, "with -i: the one host the image is for")
    parser.add_argument(
        "--board",
        default=planning.DEFAULT_BOARD,
        help="with --platform: board model (default: %(default)s)",
    )
    options.add_extra_vars(
        parser,
        "coralpi_* settings (NAME=VALUE, @FILE or a JSON object), e.g. "
        "coralpi_apt_proxy=http://10.0.0.1:3142; with -i also what the probe's connection "
        "needs, e.g. ansible_user=pi",
    )
    options.add_cache_dir(parser)
    options.add_json(parser)


def _host_plan(args: argparse.Namespace) -> partial[planning.HostPlan]:
    extra = options.parse_extra_vars(args.extra_vars, coralpi_only=args.inventory is None)
    if args.inventory is not None:
        return partial(planning.from_inventory, args.inventory, args.limit, extra)
    if args.limit:
        raise ConfigError("--limit goes with -i INVENTORY, not --platform")
    return partial(planning.from_platform, args.platform, extra, args.board or None)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "image",
        help="SD cards that provision themselves at first boot",
        description="Work on Raspberry Pi OS cards and image files.",
    )
    sub = parser.add_subparsers(title="image commands", metavar="COMMAND")
    prep = sub.add_parser(
        "prepare",
        help=PREPARE_HELP,
        description=PREPARE_HELP + ": the playbooks, the plan for this Pi, the locked "
        "artifacts and what runs them, plus the hook the release uses (Bookworm: Imager's "
        "firstrun.sh + systemd.run on cmdline.txt; Trixie: cloud-init NoCloud seed files). At "
        "first boot the Pi runs `ansible-playbook -c local`, then verify, writes the report "
        f"to {REPORT_DIR}/ on the boot partition and removes the hook and the bundle. Every "
        "check runs before anything is written; the FAT partition is never mounted.",
    )
    prep.add_argument(
        "target",
        type=Path,
        metavar="TARGET",
        help="a Raspberry Pi OS .img file or a card's whole-disk block device",
    )
    prep.add_argument("--hostname", required=True, help="the Pi's hostname")
    prep.add_argument(
        "--ssh-key",
        type=Path,
        metavar="FILE",
        help="OpenSSH public key(s) to authorise for coralpi_user (default pi)",
    )
    _add_host_args(prep)
    options.add_lock(prep, "lock file pinning every artifact (platform added when missing)")
    prep.add_argument("--yes", action="store_true", help="write to a block device without asking")
    prep.add_argument(
        "--dry-run", action="store_true", help="run every check and build the bundle, write nothing"
    )
    prep.set_defaults(func=run_prepare)

    build = sub.add_parser(
        "build",
        help=BUILD_HELP,
        description=BUILD_HELP + ": the base is copied (or decompressed) to OUT, its root "
        "partition grown, and the roles of `coralpi apply` run inside its root file system "
        "(chroot; qemu-user for an ARM image) with the locked artifacts: only Debian packages "
        "are fetched, through the mirror or coralpi_apt_proxy. verify runs once at the "
        f"image's first boot and writes its report to {REPORT_DIR}/ on the boot partition. "
        "OUT.manifest.json records the base and output sha256, the lock, coralpi's version, "
        "the installed package versions and the venv's files; OUT.build.log keeps the log.",
    )
    build.add_argument(
        "--base",
        type=Path,
        required=True,
        metavar="BASE.img[.xz]",
        help="a Raspberry Pi OS image (never changed)",
    )
    build.add_argument(
        "--out", type=Path, required=True, metavar="OUT.img", help="the image to write"
    )
    _add_host_args(build)
    options.add_lock(
        build,
        "lock file pinning every artifact (default OUT.lock; the platform is added when missing)",
    )
    build.add_argument(
        "--grow-mib",
        type=int,
        default=1536,
        metavar="MIB",
        help="grow the root partition by this much (default: %(default)s)",
    )
    build.add_argument("--force", action="store_true", help="replace OUT if it exists")
    build.set_defaults(func=run_build)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    raise ConfigError("")  # the help says what to give


def run_prepare(args: argparse.Namespace) -> int:
    result = prepare(
        args.target,
        args.hostname,
        _host_plan(args),
        ssh_key=args.ssh_key,
        lock_file=args.lock,
        cache_dir=args.cache_dir,
        assume_yes=args.yes,
        dry_run=args.dry_run,
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
        hook = (
            "firstrun.sh + cmdline.txt"
            if result.route == "firstrun"
            else "cloud-init user-data/meta-data"
        )
        state = "checked (dry run)" if args.dry_run else "prepared"
        print(
            f"{args.target}: {state} for {args.hostname} ({result.card.info.codename}, "
            f"hook: {hook}) in {result.seconds:.1f}s"
        )
        for note in result.notes:
            print(f"  {note}")
        if result.written:
            print(f"  at first boot the report goes to {REPORT_DIR}/ on the boot partition")
    return 0


def run_build(args: argparse.Namespace) -> int:
    def show(line: str) -> None:
        with contextlib.suppress(OSError):
            print(line, file=sys.stderr, flush=True)

    # Ctrl-C must clean up even where SIGINT was inherited as ignored (a job started in the
    # background of a script): the chroot, mounts and loop device are ours to undo.
    # (SIGTERM and SIGHUP raise Stopped, as cli.main set them.)
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        built = build_image(
            args.base,
            args.out,
            _host_plan(args),
            lock_file=args.lock,
            cache_dir=args.cache_dir,
            grow_mib=args.grow_mib,
            force=args.force,
            progress=show,
        )
    except KeyboardInterrupt as exc:
        signum = signal_of(exc)
        raise Interrupted(
            f"image build interrupted ({signal.Signals(signum).name}): the "
            "chroot's processes were stopped and everything unmounted; no "
            f"image was written (log: {args.out}.build.log)",
            signum,
        ) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    data = built.manifest
    summary = {
        "out": str(built.out),
        "manifest": str(built.manifest_path),
        "log": str(built.log_path),
        "sha256": data["output"]["sha256"],
        "base_sha256": data["base"]["sha256"],
        "lock": data["lock"]["file"],
        "packages": len(data["packages"]),
        "venv_files": len(data["venv_files"]),
        "seconds": built.seconds,
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    target = data["target"]
    print(
        f"{built.out}: built for {data['for']} ({target['codename']} {target['arch']} "
        f"python {target['python']}) in {built.seconds:.0f}s"
    )
    print(f"  sha256 {summary['sha256']}")
    print(
        f"  manifest {built.manifest_path} ({summary['packages']} packages, "
        f"{summary['venv_files']} venv files); lock {summary['lock']}"
    )
    print("  at first boot:")
    for item in DEFERRED:
        print(f"    - {item}")
    return 0
