"""Several coralpi runs at once on one cache and one lock, and runs stopped mid-download.

Against HTTP servers on 127.0.0.1: the real smoke-test files from ../shared/testdata/coral
and STAND-IN community runtime .debs (bytes named like the real files). Each run is its
own process, as two terminals or two CI jobs would start them.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision.artifacts import lockfile
from provision.artifacts.cache import ArtifactCache
from testfleet import standin_deb
from verify.assets import PINNED, SMOKE_FILES

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT.parent / "shared" / "testdata" / "coral"
CORALPI = str(Path(sys.executable).parent / "coralpi")
#: bookworm gets the community 16.0tf2.17.1-1 bookworm build, trixie 16.0tf2.19.1-1's own.
DEB_NAMES = [
    f"libedgetpu1-{v}_{release}_amd64.deb"
    for v in ("std", "max")
    for release in ("16.0tf2.17.1-1.bookworm", "16.0tf2.19.1-1.trixie")
]
#: Four platforms (two releases x OpenCV from apt or pip); each release's two share its .debs,
#: all four the assets.
PLATFORMS = [
    ("bookworm", "3.11", "2.36", "apt"),
    ("bookworm", "3.11", "2.36", "pip"),
    ("trixie", "3.13", "2.41", "apt"),
    ("trixie", "3.13", "2.41", "pip"),
]

ONE_RUN = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    from pathlib import Path
    from provision.artifacts.service import ArtifactSettings, ensure_host_artifacts
    from provision.planning.matrix import resolve
    from provision.planning.targets import Choices, Target

    args = json.loads(sys.argv[1])
    codename, python, glibc, opencv = args["platform"]
    plan = resolve(Target("debian", codename, "x86_64", python, glibc), Choices(opencv=opencv))
    plan = dataclasses.replace(plan, pip_requirements=())  # no PyPI here
    settings = ArtifactSettings.from_vars(args["vars"], pins=args["pins"])
    Path(args["ready"]).write_text("")
    while not Path(args["go"]).exists():  # all start together
        time.sleep(0.005)
    arts = ensure_host_artifacts(plan, settings, args["cache"], lock_path=Path(args["lock"]))
    print(json.dumps(arts.to_dict()))
    """
)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not TESTDATA.is_dir():
        pytest.skip(f"{TESTDATA} is missing")
    docroot = tmp_path / "www"
    for name in SMOKE_FILES:
        dest = docroot / "test_data" / PINNED[name].commit / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(TESTDATA.resolve() / name)
    (docroot / "runtime").mkdir()
    pins = {}
    for name in DEB_NAMES:
        variant = name.split("_")[0].rsplit("-")[-1]
        version = name.split("_")[1]  # each release's build differs, as the real ones do
        path = standin_deb.build(docroot / "runtime" / name, variant, version=version, pad=200_000)
        pins[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(docroot))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield {
            "vars": {
                "coralpi_assets_url": f"{base}/test_data",
                "coralpi_community_runtime_url": f"{base}/runtime",
            },
            "pins": pins,
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_runs_side_by_side_on_one_cache_and_lock_lose_no_platform(
    mirror: dict[str, Any], tmp_path: Path
) -> None:
    script = tmp_path / "one_run.py"
    script.write_text(ONE_RUN)
    cache, lock, go = tmp_path / "cache", tmp_path / "coralpi.lock", tmp_path / "go"
    procs = []
    for n, platform in enumerate(PLATFORMS * 2):  # two runs per platform: same files raced for
        arg = {**mirror, "platform": platform, "cache": str(cache), "lock": str(lock)}
        arg.update(go=str(go), ready=str(tmp_path / f"ready-{n}"))
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), json.dumps(arg)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.write_text("")
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    locked = lockfile.read(lock)
    want = {f"{c}/x86_64/python{py}/opencv-{cv}" for c, py, _, cv in PLATFORMS}
    assert set(locked.platforms) == want
    # Every run got intact files, and the cache holds each download once.
    for out, _ in results:
        arts = json.loads(out)
        for path in arts["runtime_debs"].values():
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() in mirror["pins"].values()
        assert sorted(os.listdir(arts["verify_assets"])) == sorted(SMOKE_FILES)
    assert len(list((cache / "deb").iterdir())) == len(DEB_NAMES)
    assert list((cache / "tmp").glob("*.part")) == []

    # Then `coralpi fetch` of that lock, four at once into a fresh cache.
    fresh = tmp_path / "fresh"
    fetches = [
        subprocess.Popen(
            [CORALPI, "fetch", "--lock", str(lock), "--cache-dir", str(fresh)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in fetches:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for art in locked.all_artifacts():
        cached = ArtifactCache.open(fresh).lookup(art.kind, art.sha256, art.name)
        assert cached is not None, art.name


class _Slow(http.server.BaseHTTPRequestHandler):
    """Sends a large body slowly: a download that is still running when the test stops it."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        try:
            for _ in range(600):
                self.wfile.write(b"x" * 65536)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_run_stopped_mid_download_leaves_no_partial_file(
    tmp_path: Path, sig: signal.Signals
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big.bin"
        art = lockfile.Artifact("asset", "big.bin", "1", url, "ab" * 32, 1 << 30, "test")
        lock = tmp_path / "coralpi.lock"
        lockfile.write_if_changed(lock, lockfile.Lock(shared=(art,)))
        cache = tmp_path / "cache"
        proc = subprocess.Popen(
            [CORALPI, "fetch", "--lock", str(lock), "--cache-dir", str(cache)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not list((cache / "tmp").glob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list((cache / "tmp").glob("*.part")), "the download never started"
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err and "interrupted" in err
        assert list((cache / "tmp").glob("*.part")) == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_partial_files_of_killed_runs_are_swept_and_running_ones_kept(tmp_path: Path) -> None:
    cache = ArtifactCache.open(tmp_path / "cache")
    tmp = cache.root / "tmp"
    tmp.mkdir()
    abandoned = tmp / "a.deb.x1.part"
    abandoned.write_bytes(b"half")
    running = tmp / "b.deb.x2.part"
    running.write_bytes(b"half")
    fd = os.open(running, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a download in progress holds it
        cache.tmp_dir()
        assert not abandoned.exists() and running.exists()
    finally:
        os.close(fd)
