"""``coralpi image build`` for arm64: the suite's one aarch64 converge, under qemu-user.

The base is a STAND-IN (standin_images) made from the test fleet's cached bookworm arm64
tree (no systemd); the build runs the real roles in a chroot of its root with the real
Debian packages (through the fleet's apt proxy) and the locked artifacts (the real PyPI
tflite wheel, STAND-IN community runtime .debs), inside the network namespace of fleet host
pi1. Its own module (from ``test_build.py``): the longest single test of the suite, so the
test runner can schedule it beside the other image builds rather than after them.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from booting import fat_of, tree_mib
from image_cli import CORALPI, REPO, coralpi
from standin_images import CONFIG_TXT, StandinSpec, build

from provision.image import chroot, manifest
from provision.image.partitions import find_root_partition, read_table
from testfleet import Fleet
from testfleet.binfmt import BinfmtUse
from testfleet.paths import cache_root
from testfleet.rootfs import ensure_rootfs, recipe_for

PARROT = "Ara macao (Scarlet Macaw)"


@pytest.mark.arm
def test_arm64_image_builds_under_qemu_and_its_first_boot_verify_runs(
    image_fleet: Fleet, tmp_path: Path
) -> None:
    """An arm64 STAND-IN (the fleet's cached bookworm arm64 tree, no systemd) built with
    --platform under qemu-user; the first-boot unit's script then runs in a chroot of the
    built image (no systemd in this tree to start the unit itself)."""
    assert image_fleet.standin is not None
    tree = ensure_rootfs(recipe_for("bookworm", "arm64"), cache_root()).tree
    # Without camera_auto_detect, so the camera role's change must reach the FAT.
    config = "\n".join(ln for ln in CONFIG_TXT.splitlines() if "camera_auto_detect" not in ln)
    base = build(
        tmp_path / "bookworm-arm64-standin.img",
        StandinSpec(
            "bookworm",
            arch="arm64",
            root_tree=tree,
            root_mib=tree_mib(tree) + 128,
            boot_files={"config.txt": config + "\n"},
        ),
        tmp_path,
    )
    platform = "bookworm/aarch64/3.11"
    settings = [
        f"coralpi_community_runtime_url={image_fleet.urls['community']}",
        f"coralpi_assets_url={image_fleet.urls['test_data']}",
    ]
    variables = [arg for s in settings for arg in ("-e", s)]
    pins = image_fleet.pin_args()
    lock = tmp_path / "arm64.lock"
    proc = coralpi("lock", "--platform", platform, *variables, *pins, "--lock", lock)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "golden-arm64.img"
    binfmt = BinfmtUse({"arm64"})
    try:
        start = time.monotonic()
        built = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                image_fleet.host("pi1").netns,
                CORALPI,
                "image",
                "build",
                "--base",
                str(base),
                "--out",
                str(out),
                "--platform",
                platform,
                *variables,
                "-e",
                f"coralpi_apt_proxy={image_fleet.urls['apt_proxy']}",
                "--lock",
                str(lock),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        )
        seconds = time.monotonic() - start
        log = tmp_path / "golden-arm64.img.build.log"
        assert built.returncode == 0, built.stderr[-3000:] + (
            log.read_text()[-3000:] if log.exists() else ""
        )
        print(f"image build (bookworm arm64 under qemu-user): {seconds:.0f}s")
        data = manifest.load(Path(json.loads(built.stdout)["manifest"]))
        assert data["target"]["arch"] == "aarch64"
        assert data["runtime"]["package"] in data["packages"]
        assert any("/tflite_runtime/" in p for p in data["venv_files"])
        # aarch64's decisions (this test is the suite's one aarch64 converge): the community
        # runtime .deb, and the tflite wheel whose file tag is manylinux_2_34_aarch64.
        assert data["runtime"]["source"] == "community-deb"
        runtime = data["python_runtime"]
        assert (runtime["package"], runtime["version"]) == ("tflite-runtime", "2.14.0")
        dist_info = f"tflite_runtime-{runtime['version']}.dist-info/"
        wheel_files = [p for p in data["venv_files"] if p.endswith(dist_info + "WHEEL")]
        assert len(wheel_files) == 1, sorted(p for p in data["venv_files"] if dist_info in p)
        assert "camera_auto_detect=1" not in (fat_of(base).read_text("/config.txt") or "")
        config = fat_of(out).read_text("/config.txt") or ""
        assert "camera_auto_detect=1" in config, "the camera role's setting on the card"

        boot = tmp_path / "bootfs"
        boot.mkdir()
        part = find_root_partition(out, read_table(out))
        with chroot.open_root(out, part, tmp_path / "root", boot, "aarch64") as root:
            wheel = (root / data["venv"].lstrip("/") / wheel_files[0]).read_text()
            tags = [ln.split(":", 1)[1].strip() for ln in wheel.splitlines() if ln[:4] == "Tag:"]
            tag = runtime["python_tag"]
            assert tags == [f"{tag}-{tag}-manylinux_2_34_aarch64"], wheel
            script = subprocess.run(
                chroot.chroot_argv(root, "/usr/local/sbin/coralpi-firstboot-verify"),
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
        report = json.loads((boot / "coralpi-report" / "verify.json").read_text())
        assert script.returncode == 0, (boot / "coralpi-report" / "verify.log").read_text()
        assert report["smoke"]["top"][0]["label"] == PARROT
        assert report["smoke"]["device"] == "cpu"
    finally:
        binfmt.close()
