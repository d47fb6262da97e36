"""The controller's artifact cache: content-addressed files, checked on every use.

Layout under the cache root (``$XDG_CACHE_HOME/coralpi`` unless overridden)::

    wheel/<sha256>/<file name>        one directory per content, so two different files
    deb/<sha256>/<file name>          that share a name (PyPI vs piwheels) never collide
    apt-key/<sha256>/<file name>
    asset/<sha256>/<file name>
    keyring/<sha256 of key file>/coral-archive-keyring.gpg   derived, fingerprint-checked
    platform/<platform slug>/wheels/  the wheels one platform installs (hard links)
    verify-assets/                    the smoke-test files (hard links)
    tmp/                              downloads in progress (renamed into place when checked)

A cached file whose sha256 differs from its pin is deleted and refused with an error naming
the file, the expected and the actual hash; it is never handed to a host.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import CoralpiError
from provision.files import locked

CACHE_ENV = "CORALPI_CACHE_DIR"


class ArtifactError(CoralpiError):
    """An artifact could not be obtained or failed its check."""


class HashMismatch(ArtifactError):
    """A file does not hash to its pin."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache_root(override: str | Path | None = None) -> Path:
    """``--cache-dir``, else ``$CORALPI_CACHE_DIR``, else ``$XDG_CACHE_HOME/coralpi``
    (``~/.cache/coralpi`` when XDG_CACHE_HOME is unset)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "coralpi"


def _plain_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ArtifactError(f"refusing artifact name {name!r}: not a plain file name")
    return name


def remove_if_abandoned(part: Path) -> bool:
    """Delete a partial download unless a running download holds its lock."""
    try:
        fd = os.open(part, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        part.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


@dataclass
class CacheStats:
    """What this process downloaded (for the fetch report and the benchmark)."""

    files_downloaded: int = 0
    bytes_downloaded: int = 0
    files_reused: int = 0


@dataclass
class ArtifactCache:
    """A cache root plus what this process already resolved (so a fleet resolves once)."""

    root: Path
    stats: CacheStats = field(default_factory=CacheStats)
    #: Per-process memo, e.g. resolved platforms keyed by platform id.
    memo: dict[str, Any] = field(default_factory=dict)
    _swept: bool = False

    @classmethod
    def open(cls, override: str | Path | None = None) -> ArtifactCache:
        root = default_cache_root(override)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"cannot create the cache directory {root}: {exc}") from exc
        return cls(root)

    def path(self, kind: str, sha256: str, name: str) -> Path:
        """Where a file of this kind and content lives (whether or not it is there yet)."""
        return self.root / _plain_name(kind) / sha256.lower() / _plain_name(name)

    def tmp_dir(self) -> Path:
        """Where downloads in progress go; partial files of runs that were killed (their
        lock is free) are removed here, the first time this process asks."""
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._swept = True
            for part in tmp.glob("*.part"):
                remove_if_abandoned(part)
        return tmp

    def lookup(self, kind: str, sha256: str, name: str) -> Path | None:
        """The cached file if present and intact; None if absent.

        A present file that does not hash to ``sha256`` is deleted and refused.
        """
        path = self.path(kind, sha256, name)
        if not path.is_file():
            return None
        actual = sha256_file(path)
        if actual != sha256.lower():
            path.unlink(missing_ok=True)
            raise HashMismatch(
                f"cached file {path} was refused and deleted: its sha256 is {actual}, "
                f"the lock pins {sha256.lower()}. Something changed the cache; "
                "run `coralpi fetch` to download it again."
            )
        self.stats.files_reused += 1
        return path

    def adopt(self, kind: str, name: str, tmp: Path, sha256: str) -> Path:
        """Move a checked download into its content-addressed place."""
        dest = self.path(kind, sha256, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return dest

    def link_into(self, directory: Path, files: list[Path]) -> Path:
        """Make ``directory`` hold exactly ``files`` (hard links, copies across filesystems);
        one process at a time per directory (runs sharing a cache fill the same ones)."""
        with locked(directory):
            directory.mkdir(parents=True, exist_ok=True)
            wanted = {f.name: f for f in files}
            for existing in directory.iterdir():
                if existing.name not in wanted:
                    if existing.is_dir() and not existing.is_symlink():
                        shutil.rmtree(existing)
                    else:
                        existing.unlink()
            for name, src in wanted.items():
                dest = directory / name
                if dest.exists() and os.path.samefile(dest, src):
                    continue
                dest.unlink(missing_ok=True)
                try:
                    os.link(src, dest)
                except OSError:
                    shutil.copy2(src, dest)
        return directory
