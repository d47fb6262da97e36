"""Bytes downloaded for a 1-host and a 3-host fleet of one platform, and a warm re-fetch.

    .venv/bin/python bench/fetch_bytes.py [--platform bookworm/aarch64/3.11]

Real wheels come from PyPI. The community runtime .debs and the smoke-test assets come from
a loopback HTTP server (the real sources are not reachable from every machine): the
assets are the real files from ../shared/testdata/coral, the .debs are stand-in bytes of
roughly the real size. The figures that matter: the 3-host fleet downloads exactly what
the 1-host fleet does, and a second fetch with a warm cache downloads nothing.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import shutil
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provision.artifacts import lockfile  # noqa: E402
from provision.artifacts.cache import ArtifactCache  # noqa: E402
from provision.artifacts.service import (  # noqa: E402
    ArtifactSettings,
    build_lock,
    ensure_host_artifacts,
    fetch_lock,
    runtime_debs,
)
from provision.planning.matrix import platform_target, resolve  # noqa: E402
from provision.planning.targets import Choices  # noqa: E402
from verify.assets import PINNED, SMOKE_FILES  # noqa: E402

TESTDATA = ROOT / ".." / "shared" / "testdata" / "coral"
STANDIN_DEB_BYTES = 400_000  # about the size of a real libedgetpu1 .deb


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(docroot: Path) -> tuple[ThreadingHTTPServer, threading.Thread, str]:
    handler = functools.partial(_Quiet, directory=str(docroot))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default="bookworm/aarch64/3.11")
    args = parser.parse_args()
    plan = resolve(platform_target(args.platform), Choices())

    with tempfile.TemporaryDirectory(prefix="coralpi-bench-") as tmp_name:
        tmp = Path(tmp_name)
        docroot = tmp / "www"
        for name in SMOKE_FILES:
            dest = docroot / "test_data" / PINNED[name].commit / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(TESTDATA / name, dest)
        (docroot / "runtime").mkdir()
        pins: dict[str, str] = {}
        server, thread, base = _serve(docroot)
        try:
            for filename in runtime_debs(plan).values():
                data = filename.encode() * (STANDIN_DEB_BYTES // len(filename) + 1)
                data = data[:STANDIN_DEB_BYTES]
                (docroot / "runtime" / filename).write_bytes(data)
                pins[f"{base}/runtime/{filename}"] = hashlib.sha256(data).hexdigest()
            variables = {
                "coralpi_assets_url": f"{base}/test_data",
                "coralpi_community_runtime_url": f"{base}/runtime",
            }
            settings = ArtifactSettings.from_vars(variables)

            start = time.monotonic()
            lock = build_lock(
                [(plan, settings)], ArtifactCache.open(tmp / "lock-cache"), extra_pins=pins
            )
            lock_s = time.monotonic() - start
            lock_path = tmp / "coralpi.lock"
            lockfile.write_if_changed(lock_path, lock)

            figures: dict[int, int] = {}
            for hosts in (1, 3):
                cache = ArtifactCache.open(tmp / f"cache-{hosts}")
                for _ in range(hosts):
                    ensure_host_artifacts(plan, variables, cache, lock_path=lock_path)
                figures[hosts] = cache.stats.bytes_downloaded
            # Without a lock: the platform is resolved at apply time, once for the fleet.
            by_name = {url.rsplit("/", 1)[1]: sha for url, sha in pins.items()}
            unlocked: dict[int, tuple[int, float]] = {}
            for hosts in (1, 3):
                cache = ArtifactCache.open(tmp / f"cache-nolock-{hosts}")
                host_settings = ArtifactSettings.from_vars(variables, pins=by_name)
                start = time.monotonic()
                for _ in range(hosts):
                    ensure_host_artifacts(plan, host_settings, cache)
                unlocked[hosts] = (cache.stats.bytes_downloaded, time.monotonic() - start)

            cold_cache = ArtifactCache.open(tmp / "cache-fetch")
            start = time.monotonic()
            cold = fetch_lock(lock, cold_cache)
            cold_s = time.monotonic() - start
            start = time.monotonic()
            warm = fetch_lock(lock, cold_cache)
            warm_s = time.monotonic() - start
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    (plat,) = lock.platforms.values()
    print(f"platform: {plat.id}")
    print(
        f"files in lock: {len(lock.all_artifacts())} "
        f"({sum(1 for a in plat.artifacts if a.kind == 'wheel')} wheel(s) from PyPI)"
    )
    print(f"coralpi lock (resolve + first download): {lock_s:.2f} s")
    print(f"bytes downloaded, 1-host fleet: {figures[1]}")
    print(f"bytes downloaded, 3-host fleet: {figures[3]}")
    print(f"equal: {figures[1] == figures[3]}")
    for hosts, (size, took) in unlocked.items():
        print(f"bytes downloaded without a lock, {hosts}-host fleet: {size} ({took:.2f} s)")
    print(
        f"fetch, cold cache: {cold.files_downloaded} file(s), {cold.bytes_downloaded} bytes, "
        f"{cold_s:.3f} s"
    )
    print(
        f"fetch, warm cache: {warm.files_downloaded} file(s), {warm.bytes_downloaded} bytes, "
        f"{warm_s:.3f} s"
    )
    ok = figures[1] == figures[3] == unlocked[1][0] == unlocked[3][0]
    return 0 if ok and warm.bytes_downloaded == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
