"""The artifact mirror: the cache as a static tree any web server or object store serves,
so Pis that converge themselves (``ansible-pull``) get their files with no controller.

Layout of an export (``coralpi fetch --export DIR``)::

    coralpi.lock                   the lock the tree was made from
    index.json                     {"files": [{"path", "name", "kind", "sha256", "size"}]}
    files/<sha256>/<file name>     every file a host installs, by the sha256 of its bytes

Content-addressed like the cache itself: two files that share a name never collide, a file
is never replaced under a Pi that is fetching it, and several locks can share one tree.
The Pi fetches each file of its plan's ``mirror_files`` (:func:`host_files`) from
``<mirror URL>/<path>`` with ``ansible.builtin.get_url`` and that file's sha256, into the
directories the roles read (``dest`` under ``coralpi_mirror_dir``): the sha256 is checked on
the Pi, so the mirror and the network between are not trusted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from provision.artifacts.cache import ArtifactCache, sha256_file
from provision.artifacts.lockfile import Lock, render
from provision.artifacts.service import HostArtifacts, locked_files
from provision.errors import ConfigError
from provision.files import write_atomic

INDEX = "index.json"
LOCK = "coralpi.lock"
FILES = "files"
#: Where the Pi keeps what it fetched (the role coralpi_mirror's default).
PI_DIR = "/var/cache/coralpi/mirror"


@dataclass(frozen=True)
class MirrorFile:
    """One file of the tree: ``path`` relative to the mirror's root."""

    name: str
    kind: str
    sha256: str
    size: int

    @property
    def path(self) -> str:
        return f"{FILES}/{self.sha256}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "kind": self.kind,
            "sha256": self.sha256,
            "size": self.size,
        }


def mirror_file(path: Path, kind: str) -> MirrorFile:
    return MirrorFile(path.name, kind, sha256_file(path), path.stat().st_size)


@dataclass(frozen=True)
class ExportResult:
    dir: Path
    files: list[MirrorFile]
    copied: int


def _place(src: Path, dest: Path) -> bool:
    """``src`` copied to ``dest``; False when ``dest`` already holds it (same sha256: the
    name is the content). A copy, not a hard link: what is done to the served tree never
    reaches the cache."""
    if dest.is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    tmp.unlink(missing_ok=True)
    shutil.copyfile(src, tmp)
    tmp.chmod(0o644)
    tmp.replace(dest)
    return True


def export(lock: Lock, cache: ArtifactCache, dest: Path) -> ExportResult:
    """Write (or bring up to date) the static tree of ``lock`` under ``dest``. Files of
    earlier exports stay (Pis still on an older commit fetch them); the index and the lock
    describe this one."""
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--export {dest}: not a directory")
    seen: dict[str, MirrorFile] = {}
    copied = 0
    for path, kind in locked_files(lock, cache):
        entry = mirror_file(path, kind)
        if entry.path in seen:
            continue
        seen[entry.path] = entry
        copied += _place(path, dest / entry.path)
    entries = sorted(seen.values(), key=lambda f: (f.kind, f.name, f.sha256))
    index = {"files": [f.to_dict() for f in entries]}
    write_atomic(dest / INDEX, (json.dumps(index, indent=2) + "\n").encode())
    write_atomic(dest / LOCK, render(lock).encode())
    return ExportResult(dest, entries, copied)


# ------------------------------------------------------------ one host's files on the Pi


@dataclass(frozen=True)
class HostMirror:
    #: The host's artifacts as the Pi sees them once fetched (under ``pi_dir``).
    artifacts: HostArtifacts
    #: What the Pi fetches: [{"path", "dest", "kind", "sha256", "size"}], ``dest`` under
    #: ``pi_dir``.
    files: list[dict[str, Any]]


def _entry(path: Path, kind: str, group: str) -> dict[str, Any]:
    f = mirror_file(path, kind)
    return {
        "path": f.path,
        "dest": f"{group}/{f.name}",
        "kind": kind,
        "sha256": f.sha256,
        "size": f.size,
    }


def host_files(arts: HostArtifacts, pi_dir: str = PI_DIR) -> HostMirror:
    """One host's files (in the controller's cache) as mirror paths and the places on the
    Pi they are fetched to: the roles then read them there as they read the controller's
    cache in a push run (under ``ansible-pull`` the Pi is its own controller)."""
    root = PurePosixPath(pi_dir)
    files: list[dict[str, Any]] = []

    def add(paths: Iterable[Path], kind: str, group: str) -> None:
        for path in sorted(paths):
            files.append(_entry(path, kind, group))

    add(arts.wheels_dir.iterdir(), "wheel", "wheels")
    add(list(arts.runtime_debs.values()), "deb", "debs")
    if arts.driver_deb is not None:
        add([arts.driver_deb], "deb", "debs")
    if arts.coral_keyring is not None:
        add([arts.coral_keyring], "keyring", "keyring")
    add(arts.verify_assets.iterdir(), "asset", "assets")
    add([arts.verify_package], "verify-package", "verify")

    def on_pi(group: str, path: Path) -> Path:
        return Path(str(root / group / path.name))

    pi_arts = HostArtifacts(
        wheels_dir=Path(str(root / "wheels")),
        runtime_debs={k: on_pi("debs", p) for k, p in arts.runtime_debs.items()},
        coral_keyring=on_pi("keyring", arts.coral_keyring) if arts.coral_keyring else None,
        verify_assets=Path(str(root / "assets")),
        verify_package=on_pi("verify", arts.verify_package),
        runtime_questions=arts.runtime_questions,
        driver_deb=on_pi("debs", arts.driver_deb) if arts.driver_deb else None,
    )
    return HostMirror(pi_arts, files)


def missing_from(export_index: Mapping[str, Any], files: Iterable[Mapping[str, Any]]) -> list[str]:
    """The paths of ``files`` an export's index lacks (a repository made from another lock,
    or a mirror not exported again after ``coralpi lock`` changed)."""
    have = {f["path"] for f in export_index.get("files", [])}
    return sorted({f["path"] for f in files} - have)
