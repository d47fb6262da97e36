"""Downloading one artifact into the cache: streamed, hashed on the way, checked, then kept.

Rules:
- ``https://`` and ``file://`` sources are fetched; ``http://`` only when the file is pinned
  by sha256 (from the lock) or its content is checked by signature afterwards (the Coral key
  file, checked by fingerprint): otherwise the download is refused before it starts.
- A download that does not hash to its pin is deleted and refused (never used).
- An unreachable source is a clear error naming the inventory setting that points to a
  mirror (``coralpi_coral_repo_url``, ``coralpi_community_runtime_url``,
  ``coralpi_assets_url``, ``coralpi_pip_index_url``).
- On a terminal a rich progress bar shows each download; otherwise nothing is printed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from provision.artifacts.cache import ArtifactCache, ArtifactError, HashMismatch

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
_CHUNK = 1 << 16

_session: requests.Session | None = None


def _http() -> requests.Session:
    global _session
    if _session is None:
        _session = requests.Session()
        _session.headers["User-Agent"] = "coralpi"
    return _session


@dataclass(frozen=True)
class Source:
    """What to download and how it is trusted."""

    kind: str
    name: str
    url: str
    #: The pin, or None to trust on first use (refused over plain http unless signed).
    sha256: str | None
    #: The inventory setting whose value the URL came from (named in errors).
    setting: str
    #: True when the content is verified after download by other means (fingerprint).
    signature_checked: bool = False
    #: The pinned size, if known: a source sending more is cut off early.
    size: int | None = None


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    size: int
    downloaded: bool


def _show_progress() -> bool:
    return sys.stderr.isatty() and os.environ.get("CORALPI_NO_PROGRESS", "") == ""


def _check_scheme(src: Source) -> str:
    scheme = urlsplit(src.url).scheme.lower()
    if scheme in {"https", "file"}:
        return scheme
    if scheme == "http":
        if src.sha256 is None and not src.signature_checked:
            raise ArtifactError(
                f"refusing to download {src.name} over plain http ({src.url}) without a "
                "sha256 pin: pin it (`coralpi lock --pin FILE=SHA256`, then use that lock "
                f"with --lock) or serve {src.setting} over https"
            )
        return scheme
    raise ArtifactError(
        f"{src.setting}: cannot download {src.name} from {src.url!r} "
        "(only https://, http:// with a sha256 pin, and file:// are supported)"
    )


def _unreachable(src: Source, reason: str) -> ArtifactError:
    host = urlsplit(src.url).netloc or src.url
    return ArtifactError(
        f"cannot reach {host} to download {src.name} ({src.url}): {reason}. "
        f"This machine cannot reach that source; set {src.setting} to a mirror it can reach."
    )


def _short_reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "No route to host",
        "Temporary failure in name resolution",
        "Network is unreachable",
    ):
        if marker in text:
            return marker.lower() if marker != "Connection refused" else "connection refused"
    return type(exc).__name__


def _stream_http(src: Source, out: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        resp = _http().get(src.url, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.RequestException as exc:
        raise _unreachable(src, _short_reason(exc)) from None
    with resp:
        if resp.status_code != 200:
            raise ArtifactError(
                f"downloading {src.name} from {src.url} failed: HTTP {resp.status_code} "
                f"{resp.reason or ''}".rstrip()
                + f"; check {src.setting}"
            )
        total = int(resp.headers.get("Content-Length") or 0) or None
        progress = _show_progress()
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
            disable=not progress,
        )
        try:
            with bar, out.open("wb") as fh:
                task = bar.add_task(src.name, total=total)
                for chunk in resp.iter_content(_CHUNK):
                    size += len(chunk)
                    if src.size is not None and size > src.size:
                        raise HashMismatch(
                            f"downloaded {src.name} from {src.url} was refused: it is longer "
                            f"than the pinned {src.size} bytes"
                        )
                    fh.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
        except requests.RequestException as exc:
            raise _unreachable(src, f"transfer interrupted ({_short_reason(exc)})") from None
    return digest.hexdigest(), size


def _copy_file_url(src: Source, out: Path) -> tuple[str, int]:
    path = Path(unquote(urlsplit(src.url).path))
    if not path.is_file():
        raise ArtifactError(f"{src.setting}: {src.url} does not exist")
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fin, out.open("wb") as fout:
        for block in iter(lambda: fin.read(_CHUNK), b""):
            fout.write(block)
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def fetch(cache: ArtifactCache, src: Source) -> Fetched:
    """The cached file for ``src``, downloading it if needed (and checking its pin)."""
    if src.sha256 is not None:
        cached = cache.lookup(src.kind, src.sha256, src.name)
        if cached is not None:
            return Fetched(cached, src.sha256.lower(), cached.stat().st_size, False)
    scheme = _check_scheme(src)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{src.name}.", suffix=".part", dir=cache.tmp_dir())
    # Held while the download runs: a .part nobody holds was left by a killed run.
    fcntl.flock(fd, fcntl.LOCK_EX)
    tmp = Path(tmp_name)
    try:
        if scheme == "file":
            actual, size = _copy_file_url(src, tmp)
        else:
            actual, size = _stream_http(src, tmp)
        if src.sha256 is not None and actual != src.sha256.lower():
            raise HashMismatch(
                f"downloaded {src.name} from {src.url} was refused and deleted: its sha256 "
                f"is {actual}, the pin is {src.sha256.lower()}"
            )
        if scheme != "file":
            cache.stats.files_downloaded += 1
            cache.stats.bytes_downloaded += size
        path = cache.adopt(src.kind, src.name, tmp, actual)
    finally:
        if tmp.exists():
            tmp.unlink()
        os.close(fd)
    return Fetched(path, actual, size, True)
