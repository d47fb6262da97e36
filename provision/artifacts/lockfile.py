"""The `coralpi.lock` format: every artifact a fleet installs, pinned by sha256.

Pure data and text: rendering and parsing only, no network and no cache. The file is TOML
written by `render()` in one fixed order (keys in a fixed order, platforms sorted by id,
artifacts sorted by kind and name), so the same lock always gives the same bytes and a
change shows as a small diff. `write_if_changed()` leaves an unchanged file untouched
(not even its mtime).

Layout::

    version = 1

    [[shared]]                      # artifacts every platform shares (Coral key, assets,
    kind = "asset"  ...             #   the ansible-core wheel a first-boot bundle runs)

    [[platform]]                    # one per distinct target platform
    id = "bookworm/aarch64/python3.11/opencv-apt"
    codename = "bookworm" ...       # the plan inputs that decide the artifacts
    [[platform.artifact]]
    kind = "wheel"  name = ...  version = ...  url = ...  sha256 = ...  size = ...
    reason = "..."                  # the plan decision that chose it
    needs = ["GLIBC_2.34 by ..."]   # wheels: what their shared objects need (ELF versions)
    deb_package = ...  deb_architecture = ...  deb_depends = [...]  deb_templates = [...]
                                    # runtime .debs: their own control fields and templates

`needs` and the `deb_*` keys are optional: a lock written before coralpi read them parses,
and `coralpi lock` adds them from the pinned files.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from provision import files
from provision.errors import CoralpiError
from provision.redaction import without_credentials

LOCK_VERSION = 1
DEFAULT_LOCK_NAME = "coralpi.lock"

#: Artifact kinds, in the order they are written.
KINDS = ("wheel", "deb", "apt-key", "asset")

_HEADER = (
    "# coralpi.lock: the exact artifacts this fleet installs, pinned by sha256.\n"
    "# Written by `coralpi lock`; read by `coralpi fetch` and `coralpi apply`.\n"
    "# Hashes of wheels come from the package index; hashes of runtime .debs and the\n"
    "# Coral key file were recorded on first download and are pinned from then on.\n"
)


class LockError(CoralpiError):
    """The lock file is missing, malformed or of an unknown version."""


@dataclass(frozen=True)
class DebControl:
    """What a .deb says about itself (its control file and debconf templates), as read
    by provision.artifacts.debinfo; ``templates`` entries are ``"name type"``."""

    package: str
    version: str
    architecture: str
    depends: tuple[str, ...] = ()  # Pre-Depends then Depends, one relation each
    provides: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Artifact:
    """One file: where it comes from, what it must hash to, and why the plan wants it.

    For kind `apt-key`, `version` holds the accepted fingerprint(s) the key file carried.
    For kind `wheel`, `needs` holds what its shared objects need from the target's glibc /
    libstdc++ (``"GLIBC_2.34 by pkg/_lib.so"``, highest per namespace, read from their ELF
    symbol versions; empty: no such need; None: not read, a lock written before coralpi
    read them). For kind `deb`, `deb` holds the package's own control fields and debconf
    templates (None: not read, an older lock).
    """

    kind: str
    name: str
    version: str
    url: str
    sha256: str
    size: int
    reason: str
    needs: tuple[str, ...] | None = None
    deb: DebControl | None = None

    def sort_key(self) -> tuple[int, str, str]:
        rank = KINDS.index(self.kind) if self.kind in KINDS else len(KINDS)
        return (rank, self.name, self.url)


def _identity(art: Artifact) -> tuple[str, str, str, str]:
    """Same file = same kind, name and content; a key file also by where it is trusted from."""
    return (art.kind, art.name, art.sha256, art.url if art.kind == "apt-key" else "")


@dataclass(frozen=True)
class PlatformInputs:
    """What decides a platform's artifacts; a lock section is reused only if these match."""

    codename: str
    arch: str
    python: str
    opencv: str
    python_tag: str
    platform_tags: tuple[str, ...]
    pip_requirements: tuple[str, ...]
    numpy_source: str
    pip_index_url: str
    runtime_source: str
    runtime_debs: tuple[str, ...]
    #: "pypi", or "community" when the Python runtime is a community wheel (such a
    #: platform is its own, so hosts that opt in and hosts that do not can share a lock)
    python_runtime_origin: str = "pypi"

    @property
    def id(self) -> str:
        base = f"{self.codename}/{self.arch}/python{self.python}/opencv-{self.opencv}"
        if self.python_runtime_origin != "pypi":
            base += f"/{self.python_runtime_origin}-wheels"
        return base

    @property
    def slug(self) -> str:
        """The id as a single path component (for per-platform directories)."""
        return self.id.replace("/", "_")


@dataclass(frozen=True)
class PlatformLock:
    inputs: PlatformInputs
    artifacts: tuple[Artifact, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "artifacts", tuple(sorted(self.artifacts, key=Artifact.sort_key)))

    @property
    def id(self) -> str:
        return self.inputs.id


@dataclass
class Lock:
    platforms: dict[str, PlatformLock] = field(default_factory=dict)
    shared: tuple[Artifact, ...] = ()

    def all_artifacts(self) -> list[Artifact]:
        seen: dict[tuple[str, str, str, str], Artifact] = {}
        for art in self.shared:
            seen[_identity(art)] = art
        for plat in self.platforms.values():
            for art in plat.artifacts:
                seen.setdefault(_identity(art), art)
        return sorted(seen.values(), key=Artifact.sort_key)

    def pins(self) -> dict[str, str]:
        """sha256 per source URL of everything in the lock (trust on first use, then pinned)."""
        return {art.url: art.sha256 for art in self.all_artifacts()}


# ---------------------------------------------------------------- rendering


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # A JSON string without non-ASCII escapes is a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        inner = "".join(f"    {_value(v)},\n" for v in value)
        return "[\n" + inner + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the lock")


def _table(header: str, items: Sequence[tuple[str, Any]]) -> str:
    lines = [header] + [f"{key} = {_value(val)}" for key, val in items]
    return "\n".join(lines) + "\n"


def _artifact_items(art: Artifact) -> list[tuple[str, Any]]:
    return [
        ("kind", art.kind),
        ("name", art.name),
        ("version", art.version),
        ("url", art.url),
        ("sha256", art.sha256),
        ("size", art.size),
        ("reason", art.reason),
        *([("needs", list(art.needs))] if art.needs is not None else []),
        *(_deb_items(art.deb) if art.deb is not None else []),
    ]


def _deb_items(deb: DebControl) -> list[tuple[str, Any]]:
    return [
        ("deb_package", deb.package),
        ("deb_version", deb.version),
        ("deb_architecture", deb.architecture),
        ("deb_depends", list(deb.depends)),
        ("deb_provides", list(deb.provides)),
        ("deb_conflicts", list(deb.conflicts)),
        ("deb_templates", list(deb.templates)),
    ]


def _deb(table: Mapping[str, Any], where: str) -> DebControl | None:
    if "deb_package" not in table:
        return None
    return DebControl(
        package=_str(table, "deb_package", where),
        version=_str(table, "deb_version", where),
        architecture=_str(table, "deb_architecture", where),
        depends=_strs(table, "deb_depends", where),
        provides=_strs(table, "deb_provides", where),
        conflicts=_strs(table, "deb_conflicts", where),
        templates=_strs(table, "deb_templates", where),
    )


def _inputs_items(inp: PlatformInputs) -> list[tuple[str, Any]]:
    return [
        ("id", inp.id),
        ("codename", inp.codename),
        ("arch", inp.arch),
        ("python", inp.python),
        ("opencv", inp.opencv),
        ("python_tag", inp.python_tag),
        ("platform_tags", list(inp.platform_tags)),
        ("pip_requirements", list(inp.pip_requirements)),
        ("numpy_source", inp.numpy_source),
        ("pip_index_url", inp.pip_index_url),
        ("runtime_source", inp.runtime_source),
        ("runtime_debs", list(inp.runtime_debs)),
        # written only when not the default, so locks of PyPI-only platforms read as before
        *(
            [("python_runtime_origin", inp.python_runtime_origin)]
            if inp.python_runtime_origin != "pypi"
            else []
        ),
    ]


def render(lock: Lock) -> str:
    """The lock as text; equal locks give equal bytes."""
    parts = [_HEADER, f"version = {LOCK_VERSION}\n"]
    for art in sorted(lock.shared, key=Artifact.sort_key):
        parts.append(_table("[[shared]]", _artifact_items(art)))
    for pid in sorted(lock.platforms):
        plat = lock.platforms[pid]
        parts.append(_table("[[platform]]", _inputs_items(plat.inputs)))
        for art in sorted(plat.artifacts, key=Artifact.sort_key):
            parts.append(_table("[[platform.artifact]]", _artifact_items(art)))
    return "\n".join(parts)


# ---------------------------------------------------------------- parsing


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str):
        raise LockError(f"{where}: `{key}` must be a string")
    return value


def _strs(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LockError(f"{where}: `{key}` must be a list of strings")
    return tuple(value)


def _artifact(table: Mapping[str, Any], where: str) -> Artifact:
    size = table.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LockError(f"{where}: `size` must be a non-negative integer")
    sha = _str(table, "sha256", where).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise LockError(f"{where}: `sha256` is not a sha256 hex digest: {sha!r}")
    art = Artifact(
        kind=_str(table, "kind", where),
        name=_str(table, "name", where),
        version=_str(table, "version", where),
        url=_str(table, "url", where),
        sha256=sha,
        size=size,
        reason=_str(table, "reason", where),
        needs=_strs(table, "needs", where) if "needs" in table else None,
        deb=_deb(table, where),
    )
    if art.kind not in KINDS:
        raise LockError(f"{where}: unknown artifact kind {art.kind!r} (known: {', '.join(KINDS)})")
    bad = next((c for c in art.name if c in "/\\" or not c.isprintable() or c.isspace()), None)
    if bad is not None or art.name in {"", ".", ".."} or art.name.startswith("."):
        raise LockError(f"{where}: artifact name {art.name!r} is not a plain file name")
    _check_url(art.url, where)
    return art


def _check_url(url: str, where: str) -> None:
    """A lock's URLs: a scheme coralpi downloads from, nothing that ends a word or a line,
    and no login (a lock is meant to be committed; logins stay in the inventory or netrc)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "file") or any(
        c.isspace() or not c.isprintable() for c in url
    ):
        raise LockError(f"{where}: {url!r} is not an https://, http:// or file:// URL")
    if "@" in parts.netloc:
        raise LockError(
            f"{where}: {without_credentials(url)} carries a login; a lock holds none (it is "
            "meant to be committed): coralpi takes it from coralpi_pip_index_url or ~/.netrc"
        )


def _check_requirements(inputs: PlatformInputs, arts: Sequence[Artifact], where: str) -> None:
    """Every pip requirement of the platform has its wheel in the lock (numpy excepted when
    Debian's python3-numpy provides it), at a version the requirement allows; a lock edited
    or merged by hand cannot install something else."""
    have: dict[str, list[str]] = {}
    for art in arts:
        if art.kind == "wheel":
            try:
                name, version, _, _ = parse_wheel_filename(art.name)
            except InvalidWheelFilename:
                raise LockError(f"{where}: {art.name!r} is not a wheel file name") from None
            have.setdefault(str(name), []).append(str(version))
    for line in inputs.pip_requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise LockError(f"{where}: pip requirement {line!r} is not valid") from None
        name = canonicalize_name(req.name)
        if name == "numpy" and inputs.numpy_source == "apt":
            continue
        versions = have.get(name, [])
        if not any(req.specifier.contains(v, prereleases=True) for v in versions):
            found = ", ".join(versions) or "none"
            raise LockError(
                f"{where}: requirement {line} has no matching wheel in the lock (found: "
                f"{found}); re-create the platform with `coralpi lock --refresh`"
            )


def parse(text: str, source: str = "coralpi.lock") -> Lock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"{source} is not valid TOML: {exc}") from exc
    if data.get("version") != LOCK_VERSION:
        raise LockError(
            f"{source}: lock version {data.get('version')!r} is not supported "
            f"(expected {LOCK_VERSION}); re-create it with `coralpi lock`"
        )
    shared = tuple(
        _artifact(t, f"{source}: shared artifact {i + 1}")
        for i, t in enumerate(data.get("shared", []))
    )
    platforms: dict[str, PlatformLock] = {}
    for i, table in enumerate(data.get("platform", [])):
        where = f"{source}: platform {i + 1}"
        inputs = PlatformInputs(
            codename=_str(table, "codename", where),
            arch=_str(table, "arch", where),
            python=_str(table, "python", where),
            opencv=_str(table, "opencv", where),
            python_tag=_str(table, "python_tag", where),
            platform_tags=_strs(table, "platform_tags", where),
            pip_requirements=_strs(table, "pip_requirements", where),
            numpy_source=_str(table, "numpy_source", where),
            pip_index_url=_str(table, "pip_index_url", where),
            runtime_source=_str(table, "runtime_source", where),
            runtime_debs=_strs(table, "runtime_debs", where),
            python_runtime_origin=(
                _str(table, "python_runtime_origin", where)
                if "python_runtime_origin" in table
                else "pypi"
            ),
        )
        if table.get("id") != inputs.id:
            raise LockError(f"{where}: id {table.get('id')!r} does not match its fields")
        arts = tuple(
            _artifact(t, f"{where} ({inputs.id}), artifact {j + 1}")
            for j, t in enumerate(table.get("artifact", []))
        )
        if inputs.id in platforms:
            raise LockError(
                f"{where}: platform {inputs.id} is in the lock twice (a merge of two locks?); "
                "keep one, or re-create the lock with `coralpi lock`"
            )
        if inputs.pip_index_url:
            _check_url(inputs.pip_index_url, where)
        names = [(a.kind, a.name) for a in arts]
        twice = sorted({n for k, n in names if names.count((k, n)) > 1})
        if twice:
            raise LockError(f"{where} ({inputs.id}): {', '.join(twice)} listed twice")
        _check_requirements(inputs, arts, f"{where} ({inputs.id})")
        platforms[inputs.id] = PlatformLock(inputs, arts)
    return Lock(platforms=platforms, shared=shared)


# ---------------------------------------------------------------- files


def read(path: Path) -> Lock:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise LockError(f"lock file {path} does not exist; create it with `coralpi lock`") from exc
    return parse(text, str(path))


def read_if_exists(path: Path) -> Lock | None:
    return read(path) if path.exists() else None


def write_if_changed(path: Path, lock: Lock) -> bool:
    """Write the lock atomically unless the file already holds exactly these bytes."""
    data = render(lock).encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    files.write_atomic(path, data, mode)
    return True


def merge_shared(*groups: Iterable[Artifact]) -> tuple[Artifact, ...]:
    """Shared artifacts of several platforms, each (kind, name, sha256) once."""
    seen: dict[tuple[str, str, str, str], Artifact] = {}
    for group in groups:
        for art in group:
            seen.setdefault(_identity(art), art)
    return tuple(sorted(seen.values(), key=Artifact.sort_key))
