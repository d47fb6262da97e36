"""The verify package as one archive, so a host gets it in one push instead of file by file.

Pushing ``verify/`` with a loop of copies costs a round trip per file and directory on every
run (about 20; seconds each on an emulated ARM host). One archive costs one checksum
comparison when nothing changed. The archive is built from the importable ``verify``
package (a wheel install has no checkout beside it), reproducibly: files sorted, no byte
code, owner root, a fixed mtime, so the same package gives the same bytes and the same name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import verify
from provision.files import write_atomic

#: Where the archives go under the cache root.
SUBDIR = "verify-package"


def package_dir() -> Path:
    """The directory of the ``verify`` package this controller runs."""
    return Path(verify.__file__).resolve().parent


def _members(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )


def archive_bytes(root: Path | None = None) -> bytes:
    """``root`` (default: the verify package) as a tar.gz whose top entry is ``verify/``."""
    src = root or package_dir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({p.parent for p in _members(src)} | {src})
        for path in [*dirs, *_members(src)]:
            name = "verify/" + path.relative_to(src).as_posix() if path != src else "verify"
            info = tarfile.TarInfo(name.rstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    # mtime=0 and no file name in the gzip header: the same tar gives the same bytes.
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def ensure_archive(cache_root: Path, root: Path | None = None) -> Path:
    """The archive in the cache, named by its sha256 (written once; identical bytes from
    parallel writers, so a plain atomic replace is safe)."""
    data = archive_bytes(root)
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = cache_root / SUBDIR / f"verify-{digest}.tar.gz"
    if not path.is_file() or path.read_bytes() != data:
        write_atomic(path, data)
    return path
