"""``coralpi image build`` against ``coralpi apply`` on one host of the same platform.

    .venv/bin/python bench/image_build.py   (root: starts a two-host test fleet)

Both provision bookworm amd64 with the same lock: the build a STAND-IN Bookworm image
(tests/image/standin_images.py: real partition table and FAT boot partition, ext4 root from
the test fleet's cached bookworm tree plus systemd) in a chroot, inside pi1's network
namespace; apply a fresh fleet host pi2 over SSH (first converge, then verify). Debian
packages come through the fleet's apt proxy (warm after the first of the two, so the build
runs first: it pays for the cold proxy, apply does not). Printed: seconds for each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "image")]

from booting import tree_mib  # noqa: E402
from standin_images import StandinSpec, build  # noqa: E402

from testfleet import Fleet, HostSpec  # noqa: E402
from testfleet.mirror import debian_mirror  # noqa: E402
from testfleet.paths import cache_root  # noqa: E402
from testfleet.rootfs import INCLUDE, RootfsRecipe, ensure_rootfs  # noqa: E402

CORALPI = str(Path(sys.executable).parent / "coralpi")


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    return time.monotonic() - start, proc


def main() -> int:
    recipe = RootfsRecipe(
        "bookworm", "amd64", debian_mirror(), include=(*INCLUDE, "systemd", "systemd-sysv", "dbus")
    )
    tree = ensure_rootfs(recipe, cache_root()).tree
    with tempfile.TemporaryDirectory(prefix="coralpi-bench-build-") as tmp_name:
        tmp = Path(tmp_name)
        with Fleet(
            tmp / "fleet", [HostSpec("pi1", "bookworm"), HostSpec("pi2", "bookworm")]
        ) as fleet:
            assert fleet.standin is not None
            inv = str(fleet.inventory_path)
            lock = tmp / "coralpi.lock"
            pins = fleet.pin_args()
            subprocess.run(
                [CORALPI, "lock", "-i", inv, "--lock", str(lock), *pins],
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            base = build(
                tmp / "base.img",
                StandinSpec("bookworm", root_tree=tree, root_mib=tree_mib(tree) + 128),
                tmp,
            )
            build_s, proc = timed(
                [
                    "ip",
                    "netns",
                    "exec",
                    fleet.host("pi1").netns,
                    CORALPI,
                    "image",
                    "build",
                    "--base",
                    str(base),
                    "--out",
                    str(tmp / "golden.img"),
                    "-i",
                    inv,
                    "--limit",
                    "pi1",
                    "--lock",
                    str(lock),
                    "--json",
                ]
            )
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            summary = json.loads(proc.stdout)
            apply_s, proc = timed(
                [
                    CORALPI,
                    "apply",
                    "-i",
                    inv,
                    "--limit",
                    "pi2",
                    "--lock",
                    str(lock),
                    "--runs-dir",
                    str(tmp / "runs"),
                    "--json",
                ]
            )
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
    print(
        f"image build (bookworm amd64, chroot, incl. Ansible install, copy, grow, "
        f"manifest): {build_s:.1f}s ({summary['packages']} packages, "
        f"{summary['venv_files']} venv files)"
    )
    print(
        f"apply on one fresh host (same platform and lock, first converge + verify): {apply_s:.1f}s"
    )
    print(f"build / apply: {build_s / apply_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
