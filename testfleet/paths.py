"""Where the test fleet keeps things: the repository, the smoke-test data, the cache."""

from __future__ import annotations

import os
from pathlib import Path

#: Root of the coralpi repository (this package lives at its top level).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Environment variable that moves the persistent cache (rootfs tarballs, apt cache, repo).
CACHE_ENV = "CORALPI_TESTFLEET_CACHE"

#: Directory for per-slot locks and the registry of running fleets (tmpfs, root only).
RUN_DIR = Path("/run/coralpi-testfleet")


def cache_root() -> Path:
    """The persistent cache: $CORALPI_TESTFLEET_CACHE, else $XDG_CACHE_HOME or ~/.cache."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "coralpi-testfleet"


def testdata_dir() -> Path:
    """The shared smoke-test data (Coral test_data files), beside the project checkout."""
    override = os.environ.get("CORALPI_TESTDATA")
    if override:
        return Path(override)
    return (REPO_ROOT / ".." / "shared" / "testdata" / "coral").resolve()


# Its name starts with "test": keep pytest from collecting it where a test module imports it.
testdata_dir.__test__ = False  # type: ignore[attr-defined]
