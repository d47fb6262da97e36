"""Time to prepare 10 cards from one first-boot bundle (``coralpi image prepare``).

    .venv/bin/python bench/image_prepare.py [--cards 10]   (root: starts a one-host test fleet)

The cards are STAND-IN Bookworm images (tests/image/standin_images.py: real partition
table, FAT32 boot partition, small synthetic ext4 root). The artifacts are real wheels from
PyPI plus the test fleet's stand-in Coral sources, pinned by a lock. Printed: the bundle
build (cold and warm artifact cache aside: whatever the cache holds), then each card's
prepare time reusing that bundle, and the total.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "image")]

from standin_images import StandinSpec, build  # noqa: E402

from provision.image.bundle import build_bundle  # noqa: E402
from provision.image.planning import from_inventory  # noqa: E402
from provision.image.prepare import prepare  # noqa: E402
from testfleet import Fleet, HostSpec  # noqa: E402

CORALPI = str(Path(sys.executable).parent / "coralpi")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coralpi-bench-image-") as tmp_name:
        tmp = Path(tmp_name)
        fleet = Fleet(tmp / "fleet", [HostSpec("pi1", "bookworm")])
        fleet.up()
        try:
            assert fleet.standin is not None
            lock = tmp / "coralpi.lock"
            pins = fleet.pin_args()
            subprocess.run(
                [CORALPI, "lock", "-i", str(fleet.inventory_path), "--lock", str(lock), *pins],
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            start = time.monotonic()
            host = from_inventory(fleet.inventory_path, "pi1", {})
            probe_s = time.monotonic() - start
            start = time.monotonic()
            bundle = build_bundle(host, "firstrun", tmp / "staging", lock_file=lock)
            build_s = time.monotonic() - start
            size = sum(p.stat().st_size for p in bundle.dir.rglob("*") if p.is_file())
            cards = []
            for n in range(args.cards):
                cards.append(build(tmp / f"card{n}.img", StandinSpec("bookworm"), tmp))
            times = []
            for n, card in enumerate(cards):
                result = prepare(card, f"coral{n:02d}", lambda: host, bundle=bundle, lock_file=lock)
                times.append(result.seconds)
        finally:
            fleet.down()
    print(f"probe + plan of the inventory host: {probe_s:.1f}s")
    print(f"bundle built once: {build_s:.1f}s, {size / 2**20:.1f} MiB")
    print(
        f"{args.cards} cards from that bundle: total {sum(times):.1f}s, per card median "
        f"{statistics.median(times):.2f}s (min {min(times):.2f}s, max {max(times):.2f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
