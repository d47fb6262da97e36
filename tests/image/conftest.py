"""Fixtures for the image tests (marker ``image``): stand-in cards and a test fleet that
serves the artifacts and the apt proxy the first-boot run uses.

SIGTERM (``timeout``, a CI time limit) ends the run like Ctrl-C (SIGINT) does, in this
process and in each xdist worker: KeyboardInterrupt is raised where the test is, so loop
mounts, containers and the fleet are undone by their ``with`` blocks and finalizers; a
``coralpi`` command the test is waiting for, which got the signal too, first gets time to
clean up after itself (testfleet.interrupts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_cli import CORALPI, REPO

from testfleet import Fleet, HostSpec, interrupts
from testfleet.mirror import debian_mirror
from testfleet.paths import cache_root
from testfleet.rootfs import INCLUDE, RootfsRecipe, ensure_rootfs, recipe_for

IMAGE_DIR = Path(__file__).resolve().parent
TOOLS = ("sfdisk", "mkfs.fat", "mkfs.ext4", "mcopy", "mdir", "debugfs")


def pytest_configure(config: pytest.Config) -> None:
    interrupts.acquire()


def pytest_unconfigure(config: pytest.Config) -> None:
    interrupts.release()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if IMAGE_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.image)


@pytest.fixture(scope="session")
def image_tools() -> None:
    """Skips (naming what is missing) where stand-in images cannot be built."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"image tests need {', '.join(missing)} (scripts/bootstrap.sh installs them)")


@pytest.fixture(scope="session")
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, network namespaces, containers)")


@pytest.fixture(scope="session")
def systemd_tree(root_only: None) -> Path:
    """The fleet's bookworm recipe plus systemd (cached like the fleet's own trees)."""
    return ensure_rootfs(recipe_for("bookworm", systemd=True), cache_root()).tree


#: cloud-init and what its NoCloud run needs in a container, on top of the systemd tree.
CLOUD_INIT_INCLUDE = (
    *INCLUDE,
    "systemd",
    "systemd-sysv",
    "dbus",
    "cloud-init",
    # debootstrap does not resolve the virtual python3-cffi-backend-api-*
    # that python3-cryptography (via cloud-init) depends on
    "python3-cffi-backend",
)


@pytest.fixture(scope="session")
def cloud_init_tree(root_only: None) -> Path:
    """The fleet's trixie recipe plus systemd and Debian's cloud-init (cached like the
    fleet's own trees); the first cold debootstrap takes minutes, later runs unpack it."""
    recipe = RootfsRecipe("trixie", "amd64", debian_mirror(), include=CLOUD_INIT_INCLUDE)
    return ensure_rootfs(recipe, cache_root()).tree


@pytest.fixture(scope="session")
def image_fleet(
    image_tools: None, root_only: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """pi1 (bookworm) and pi3 (trixie): probed for the `-i --limit` route; their bridge
    serves the stand-in Coral sources and smoke-test assets, and the apt proxy."""
    fleet = Fleet(
        tmp_path_factory.mktemp("image-fleet"),
        [HostSpec("pi1", "bookworm"), HostSpec("pi3", "trixie")],
    )
    try:
        fleet.up()
        yield fleet
    finally:
        problems = fleet.down()
        assert not problems, problems


@pytest.fixture(scope="session")
def fleet_lock(image_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lock for the fleet's platforms; the STAND-IN community .debs (plain http on the
    test bridge) pinned by the sha256 of the files the test fleet built."""
    assert image_fleet.standin is not None
    path = tmp_path_factory.mktemp("image-lock") / "coralpi.lock"
    pins = image_fleet.pin_args()
    proc = subprocess.run(
        [CORALPI, "lock", "-i", str(image_fleet.inventory_path), "--lock", str(path), *pins],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return path
