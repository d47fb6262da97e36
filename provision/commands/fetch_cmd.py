"""`coralpi fetch`: fill the artifact cache with exactly what `coralpi.lock` pins.

Files already in the cache with the right sha256 are not downloaded again; a cached file
with the wrong sha256 is deleted and refused; every download is checked before it is kept.
`--export DIR` then writes the static mirror tree of `provision.artifacts.mirror` (what
Pis in pull mode fetch from, with no controller).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from provision.artifacts import mirror
from provision.artifacts.lockfile import read
from provision.artifacts.service import fetch_lock, open_cache
from provision.commands.lock_cmd import add_common_artifact_args

HELP = "download everything coralpi.lock pins into the artifact cache (sha256-checked)"


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("fetch", help=HELP, description=HELP)
    add_common_artifact_args(parser)
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="also write the cache's files for this lock as a static tree any web server "
        "serves (files/<sha256>/<name>, index.json, the lock): the Pis' artifact mirror",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    lock = read(args.lock)
    cache = open_cache(args.cache_dir)
    start = time.monotonic()
    result = fetch_lock(lock, cache)
    took = time.monotonic() - start
    print(
        f"{args.lock}: {result.files} file(s) present and checked in {cache.root} "
        f"({result.files_downloaded} downloaded, {result.bytes_downloaded / 1e6:.1f} MB, "
        f"{took:.1f} s)"
    )
    for pid, path in sorted(result.wheels_dirs.items()):
        print(f"  wheels for {pid}: {path}")
    for path in result.keyrings:
        print(f"  Coral keyring: {path}")
    if result.assets is not None:
        print(f"  verify assets: {result.assets}")
    for path in result.shared_wheels:
        print(f"  for first-boot bundles and images: {path}")
    if args.export is not None:
        done = mirror.export(lock, cache, args.export)
        print(
            f"  exported {len(done.files)} file(s) to {done.dir} ({done.copied} new): serve it "
            "and set coralpi_mirror_url to where it is served"
        )
    return 0
