"""HTTP on the bridge address: the stand-in Coral repository, the stand-in community .debs,
and the smoke-test assets laid out like raw.githubusercontent.com/google-coral/test_data.

One ``python -m http.server`` process (started by Popen, recorded by PID) serves a directory
of symlinks built per fleet:

- ``/coral-apt/``   -> the signed stand-in apt repository (like packages.cloud.google.com/apt)
- ``/community/``   -> stand-in community runtime .debs (flat, feranick's file names)
- ``/test_data/<commit>/<file>`` -> files of ../shared/testdata/coral (commits from SOURCES.md)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import FleetError
from .procs import ProcRecord

PORT = 8080


@dataclass(frozen=True)
class TestAsset:
    """One smoke-test file and the upstream commit it is pinned to."""

    __test__ = False  # not a pytest test class

    name: str
    size: int
    sha256: str
    commit: str


def read_sources(testdata: Path) -> list[TestAsset]:
    """Parse the table in SOURCES.md: | file | bytes | sha256 | upstream commit |."""
    text = (testdata / "SOURCES.md").read_text()
    assets: list[TestAsset] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"[0-9a-f]{64}", cells[2]):
            continue
        name = cells[0].split()[0]
        assets.append(TestAsset(name, int(cells[1]), cells[2], cells[3]))
    if not assets:
        raise FleetError(f"no assets listed in {testdata / 'SOURCES.md'}")
    return assets


def build_site(site: Path, repo: Path, community: Path, testdata: Path) -> list[TestAsset]:
    """Create the served directory (symlinks only; rebuilt if the workdir is reused)."""
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    (site / "coral-apt").symlink_to(repo)
    (site / "community").symlink_to(community)
    assets = read_sources(testdata)
    for asset in assets:
        target = testdata / asset.name
        if not target.is_file():
            raise FleetError(f"smoke-test file missing: {target}")
        folder = site / "test_data" / asset.commit
        folder.mkdir(parents=True, exist_ok=True)
        (folder / asset.name).symlink_to(target)
    return assets


@dataclass
class HttpServer:
    base_url: str
    popen: subprocess.Popen[bytes]
    record: ProcRecord


def start_http(address: str, site: Path, log: Path) -> HttpServer:
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                address,
                "--directory",
                str(site),
                str(PORT),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return HttpServer(f"http://{address}:{PORT}", popen, ProcRecord.of("http", popen.pid))


def http_ready(server: HttpServer) -> bool:
    if server.popen.poll() is not None:
        raise FleetError(f"http.server exited with {server.popen.returncode}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{server.base_url}/coral-apt/doc/apt-key.gpg", timeout=1) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False
