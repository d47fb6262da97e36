"""The fleet's apt proxy: apt-cacher-ng in the root namespace, bound to the bridge address.

It runs with its own configuration directory (no ``Remap-`` lines: the stock configuration
rewrites Debian's usual mirror name to a backend that cannot be reached from here) and a
persistent cache directory under the test-fleet cache, so a second run downloads nothing.
Several fleets on one machine each get their own cache slot (an flock marks it as in use).
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .cmd import try_lock
from .errors import FleetError
from .procs import ProcRecord

PORT = 3142

CONFIG = """\
# apt-cacher-ng for a coralpi test fleet (own instance; no Remap lines on purpose)
CacheDir: {cache}
LogDir: {logs}
SupportDir: /usr/lib/apt-cacher-ng
SocketPath: {socket}
Port: {port}
BindAddress: {address}
ForeGround: 1
ExThreshold: 4
# A slow or flaky mirror: retry broken upstream downloads longer before answering 503.
DlMaxRetries: 10
NetworkTimeout: 120
ReportPage: acng-report.html
"""


@dataclass
class AptProxy:
    """A running apt-cacher-ng."""

    url: str
    popen: subprocess.Popen[bytes]
    record: ProcRecord
    cache_dir: Path
    cache_lock_fd: int


def _claim_cache(cache: Path) -> tuple[Path, int]:
    for slot in range(64):
        directory = cache / "apt-cacher-ng" / f"cache{slot}"
        fd = try_lock(cache / "apt-cacher-ng" / f"cache{slot}.lock")
        if fd is not None:
            directory.mkdir(parents=True, exist_ok=True)
            # apt-cacher-ng drops privileges to its own user when started as root.
            _chown_tree(directory)
            return directory, fd
    raise FleetError("no free apt-cacher-ng cache slot")


def _chown_tree(directory: Path) -> None:
    try:
        import pwd

        entry = pwd.getpwnam("apt-cacher-ng")
    except KeyError:
        return
    for root, dirs, files in os.walk(directory):
        for name in [
            root,
            *(os.path.join(root, d) for d in dirs),
            *(os.path.join(root, f) for f in files),
        ]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)


def start_proxy(address: str, workdir: Path, cache: Path) -> AptProxy:
    cache_dir, fd = _claim_cache(cache)
    conf = workdir / "apt-cacher-ng"
    logs = conf / "log"
    logs.mkdir(parents=True, exist_ok=True)
    _chown_tree(logs)
    (conf / "acng.conf").write_text(
        CONFIG.format(
            cache=cache_dir, logs=logs, socket=conf / "socket", port=PORT, address=address
        )
    )
    _chown_tree(conf)
    with (conf / "stdout.log").open("ab") as out:
        popen = subprocess.Popen(
            ["apt-cacher-ng", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proxy = AptProxy(
        url=f"http://{address}:{PORT}",
        popen=popen,
        record=ProcRecord.of("apt-cacher-ng", popen.pid),
        cache_dir=cache_dir,
        cache_lock_fd=fd,
    )
    return proxy


def proxy_ready(proxy: AptProxy) -> bool:
    """True once the proxy answers its report page."""
    if proxy.popen.poll() is not None:
        raise FleetError(f"apt-cacher-ng exited with {proxy.popen.returncode}")
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{proxy.url}/acng-report.html", timeout=1) as resp:
            return int(resp.status) == 200
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False
