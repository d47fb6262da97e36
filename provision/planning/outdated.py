"""What PyPI has that the matrix does not know yet (``coralpi matrix outdated``).

For every package the matrix chooses from (:data:`PACKAGES`) the releases on PyPI (its
JSON API, ``https://pypi.org/pypi/NAME/json``) are compared with what ``matrix.toml``
records, and each difference is a :class:`Finding`:

- ``new version``: a final, not yanked release newer than the newest the matrix knows,
  with Linux wheels (their Python tags, architectures and glibc needs are given);
- ``new python``: a Python tag of a version the matrix knows, outside the range it records;
- ``new platform``: a Linux architecture with wheels the matrix records none for;
- ``newer glibc``: a wheel of a known version and architecture whose manylinux tag needs a
  newer glibc than the tag the matrix records for it.

Wheel file names are read with :func:`packaging.utils.parse_wheel_filename` (tags
included). The sources on GitHub and Coral's apt repository are not read here; they are
listed as not checked, with what the matrix records of them, so a maintainer looks there
by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from provision.planning.matrix import load_matrix
from provision.planning.matrix_data import load_matrix_data

#: Where to look by hand for each runtime source of the matrix.
RUNTIME_SOURCE_PAGES = {
    "coral-apt": "https://packages.cloud.google.com/apt/dists/coral-edgetpu-stable/",
    "community-deb": "https://github.com/feranick/libedgetpu/releases",
}
PACKAGES = ("tflite-runtime", "ai-edge-litert", "opencv-python-headless", "numpy", "pillow")
PYPI_JSON = "https://pypi.org/pypi/{name}/json"
TIMEOUT = 30

#: manylinux tags: PEP 600 ``manylinux_X_Y_ARCH`` and the legacy aliases (PEP 513, 571,
#: 599). packaging parses wheel names into tags but has no public parser of a tag's glibc.
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(.+)$")
_LEGACY = {"manylinux1": "2.5", "manylinux2010": "2.12", "manylinux2014": "2.17"}
#: Linux architectures as the matrix names them.
ARCH_OF = {"x86_64": "x86_64", "aarch64": "aarch64", "armv7l": "armv7l"}


def linux_platform(tag: str) -> tuple[str, str | None] | None:
    """(architecture, glibc it needs) of a Linux wheel platform tag, None for another OS
    or architecture (``linux_armv7l``, as piwheels builds, needs no stated glibc)."""
    found = _MANYLINUX.match(tag)
    if found:
        arch, glibc = found.group(3), f"{found.group(1)}.{found.group(2)}"
    else:
        legacy, _, arch = tag.partition("_")
        if legacy in _LEGACY:
            glibc = _LEGACY[legacy]
        elif legacy == "linux":
            glibc = None
        else:
            return None
    return (ARCH_OF[arch], glibc) if arch in ARCH_OF else None


def recorded_glibc(tag: str) -> str | None:
    """The glibc a platform tag the matrix records needs (``manylinux_2_34`` -> 2.34)."""
    found = linux_platform(f"{tag}_x86_64")
    return found[1] if found else None


def _glibc_key(glibc: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in glibc.split(".")) if glibc else ()


@dataclass(frozen=True)
class WheelFile:
    version: Version
    python: str  # interpreter tag: "cp311", "py3"
    abi3: bool
    arch: str
    glibc: str | None
    platform: str  # the platform tag as written


@dataclass(frozen=True)
class KnownVersion:
    python: tuple[str, str] | None  # the X.Y range the matrix records, None: not recorded
    glibc: Mapping[str, str | None]  # arch -> glibc the recorded tag needs (None: none)


@dataclass(frozen=True)
class Known:
    """What the matrix records of one package."""

    package: str
    versions: Mapping[str, KnownVersion]
    archs: tuple[str, ...]
    where: str  # the matrix table it comes from
    #: the newest release a maintainer read and chose not to record (``reviewed.version``
    #: in the table): releases up to it are not new
    reviewed: str | None = None

    @property
    def newest(self) -> Version | None:
        seen = [Version(v) for v in self.versions]
        if self.reviewed:
            seen.append(Version(self.reviewed))
        return max(seen, default=None)


@dataclass(frozen=True)
class Finding:
    package: str
    kind: str  # "new version" | "new python" | "new platform" | "newer glibc"
    version: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "package": self.package,
            "kind": self.kind,
            "version": self.version,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class NotChecked:
    what: str
    where: str
    note: str  # what the matrix has of it, or why it could not be asked

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "where": self.where, "note": self.note}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    #: package -> the newest final release on PyPI ("" when none was read)
    newest: dict[str, str] = field(default_factory=dict)
    not_checked: list[NotChecked] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "newest_on_pypi": dict(self.newest),
            "not_checked": [n.to_dict() for n in self.not_checked],
        }

    def render(self) -> str:
        out: list[str] = []
        for package in PACKAGES:
            if package not in self.newest:
                continue
            mine = [f for f in self.findings if f.package == package]
            newest = self.newest[package] or "none"
            head = f"{package} (newest on PyPI: {newest})"
            if not mine:
                out.append(f"{head}: nothing the matrix does not know")
                continue
            out.append(f"{head}:")
            out += [f"  {f.kind} {f.version}: {f.detail}" for f in mine]
        out.append("not checked (read them by hand):")
        out += [f"  {n.what}: {n.where} ({n.note})" for n in self.not_checked]
        return "\n".join(out) + "\n"


class Index(Protocol):
    """Where releases are read: PyPI itself, or recorded pages in the tests."""

    def releases(self, package: str) -> Mapping[str, Sequence[Mapping[str, Any]]]: ...


class PypiClient:
    """PyPI's JSON API (``releases``: version -> its files, each with ``filename`` and
    ``yanked``)."""

    def __init__(self, url: str = PYPI_JSON, session: requests.Session | None = None) -> None:
        self.url = url
        self.session = session or requests.Session()

    def releases(self, package: str) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        response = self.session.get(self.url.format(name=package), timeout=TIMEOUT)
        response.raise_for_status()
        data = response.json()
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, dict):
            raise ValueError(f"{self.url.format(name=package)}: no releases in the answer")
        return releases


def known_packages() -> dict[str, Known]:
    """What ``matrix.toml`` records of each of :data:`PACKAGES`."""
    m = load_matrix()
    raw = load_matrix_data()
    known: dict[str, Known] = {}
    for wheel in m.wheels:
        if wheel.origin != "pypi":
            continue  # not on PyPI: listed as not checked
        versions = dict(known[wheel.package].versions) if wheel.package in known else {}
        versions[wheel.version] = KnownVersion(
            wheel.python, {a: recorded_glibc(t) for a, t in wheel.platforms.items()}
        )
        archs = sorted({a for v in versions.values() for a in v.glibc})
        known[wheel.package] = Known(wheel.package, versions, tuple(archs), "python_runtimes")
    numpy_archs = tuple(m.numpy_pypi_archs)
    known["numpy"] = Known(
        "numpy",
        {v: KnownVersion(py, dict.fromkeys(numpy_archs)) for v, py in m.numpy_pypi_wheels},
        numpy_archs,
        "numpy_pypi",
    )
    known["pillow"] = Known(
        "pillow", {}, tuple(m.pillow_pypi_archs), "pillow_pypi", _reviewed(raw["pillow_pypi"])
    )
    opencv = raw["opencv_pip"]
    opencv_archs = tuple(str(a) for a in opencv["archs"])
    known[str(opencv["package"])] = Known(
        str(opencv["package"]),
        {str(opencv["version"]): KnownVersion(None, dict.fromkeys(opencv_archs))},
        opencv_archs,
        "opencv_pip",
        _reviewed(opencv),
    )
    return known


def _reviewed(table: Mapping[str, Any]) -> str | None:
    """The version in a table's ``reviewed = { version, why }``, if it has one."""
    reviewed = table.get("reviewed")
    return str(reviewed["version"]) if isinstance(reviewed, Mapping) else None


def linux_wheels(package: str, files: Iterable[Mapping[str, Any]]) -> list[WheelFile]:
    """The Linux wheels among one release's files (not yanked): one per interpreter, ABI
    and architecture of a file, with the lowest glibc its tags name (a wheel tagged
    ``manylinux_2_27_x86_64.manylinux_2_28_x86_64`` installs where glibc 2.27 runs)."""
    out = []
    for f in files:
        name = str(f.get("filename", ""))
        if not name.endswith(".whl") or f.get("yanked"):
            continue
        try:
            wheel_name, version, _, tags = parse_wheel_filename(name)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if wheel_name != canonicalize_name(package):
            continue
        lowest: dict[tuple[str, str, str], tuple[str | None, str]] = {}
        for tag in sorted(tags, key=str):
            platform = linux_platform(tag.platform)
            if platform is None:
                continue
            arch, glibc = platform
            key = (tag.interpreter, tag.abi, arch)
            have = lowest.get(key)
            if have is None or _glibc_key(glibc) < _glibc_key(have[0]):
                lowest[key] = (glibc, tag.platform)
        out += [
            WheelFile(version, interp, abi == "abi3", arch, glibc, platform)
            for (interp, abi, arch), (glibc, platform) in sorted(lowest.items())
        ]
    return out


def _py(tag: str) -> str | None:
    """ "cp311" -> "3.11" (None for a tag that names no CPython X.Y)."""
    found = re.fullmatch(r"cp3(\d+)", tag)
    return f"3.{found.group(1)}" if found else None


def _in_range(python: str, bounds: tuple[str, str]) -> bool:
    return Version(bounds[0]) <= Version(python) <= Version(bounds[1])


def _describe(wheels: Sequence[WheelFile]) -> str:
    pythons = sorted(
        {w.python + ("-abi3" if w.abi3 else "") for w in wheels}, key=lambda t: (len(t), t)
    )
    per_arch: dict[str, set[str | None]] = {}
    for w in wheels:
        per_arch.setdefault(w.arch, set()).add(w.glibc)
    archs = "; ".join(
        f"{arch} (glibc {', '.join(sorted((g for g in gs if g), key=_glibc_key)) or 'not stated'})"
        for arch, gs in sorted(per_arch.items())
    )
    return f"{', '.join(pythons)}; {archs}"


def compare(known: Known, releases: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Finding]:
    """The findings for one package (pure: tested on recorded index pages)."""
    findings: list[Finding] = []
    newest = known.newest
    finals: list[tuple[Version, list[WheelFile]]] = []
    for text, files in releases.items():
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if version.is_prerelease or version.is_devrelease:
            continue
        wheels = linux_wheels(known.package, files)
        if wheels:
            finals.append((version, wheels))
    finals.sort(key=lambda item: item[0])
    by_version = {str(v): w for v, w in finals}
    for version, wheels in finals:
        if newest is None or version > newest:
            if newest is None and version != finals[-1][0]:
                continue  # versions not recorded at all: only the newest is worth a line
            detail = _describe(wheels)
            if newest is None:
                detail = f"the matrix ({known.where}) records no versions; {detail}"
            findings.append(Finding(known.package, "new version", str(version), detail))
    for text, rec in known.versions.items():
        wheels = by_version.get(str(Version(text)), [])
        if not wheels:
            continue
        if rec.python is not None:
            outside = sorted(
                {
                    w.python
                    for w in wheels
                    if not w.abi3
                    and (py := _py(w.python)) is not None
                    and not _in_range(py, rec.python)
                },
                key=lambda t: (len(t), t),
            )
            if outside:
                findings.append(
                    Finding(
                        known.package,
                        "new python",
                        text,
                        f"{', '.join(outside)} (the matrix records {rec.python[0]}-"
                        f"{rec.python[1]})",
                    )
                )
        new_archs = sorted({w.arch for w in wheels} - set(rec.glibc))
        for arch in new_archs:
            findings.append(
                Finding(
                    known.package,
                    "new platform",
                    text,
                    f"{arch}: {_describe([w for w in wheels if w.arch == arch])} (the matrix "
                    f"records {', '.join(sorted(rec.glibc)) or 'none'})",
                )
            )
        for arch, glibc in sorted(rec.glibc.items()):
            if glibc is None:
                continue
            # a file the matrix may pick: one whose glibc need is above the recorded tag's
            needs = [
                w for w in wheels if w.arch == arch and _glibc_key(w.glibc) > _glibc_key(glibc)
            ]
            if needs:
                highest = max((w.glibc for w in needs), key=_glibc_key)
                findings.append(
                    Finding(
                        known.package,
                        "newer glibc",
                        text,
                        f"{arch}: {', '.join(sorted({w.python for w in needs}))} need glibc "
                        f"{highest} ({', '.join(sorted({w.platform for w in needs}))}); the "
                        f"matrix records glibc {glibc}",
                    )
                )
    return findings


def not_checked() -> list[NotChecked]:
    """The sources this command does not read, with what the matrix records of them."""
    m = load_matrix()
    raw = load_matrix_data()
    out = []
    for source in m.sources:
        versions = ", ".join(r.version for r in source.releases)
        where = RUNTIME_SOURCE_PAGES.get(source.name, source.source)
        out.append(NotChecked(f"runtime source {source.name}", where, f"the matrix has {versions}"))
    community = sorted(
        {
            f"{w.package} {w.version} ({', '.join(sorted(w.platforms))}, "
            f"cp{w.python[0].replace('.', '')}-cp{w.python[1].replace('.', '')})"
            for w in m.wheels
            if w.origin == "community"
        }
    )
    if community:
        out.append(
            NotChecked(
                "community tflite_runtime wheels (feranick/TFlite-builds)",
                "https://github.com/feranick/TFlite-builds/releases",
                "the matrix has " + ", ".join(community),
            )
        )
    pcie = raw["accelerators"]["pcie"]
    out.append(
        NotChecked(
            "PCIe driver gasket-dkms (feranick/gasket-driver)",
            "https://github.com/feranick/gasket-driver/releases",
            f"the matrix has {pcie['driver_version']}",
        )
    )
    return out


def check(index: Index, packages: Sequence[str] = PACKAGES) -> Report:
    """Every package's findings; a package PyPI could not be asked about is not checked."""
    report = Report()
    known = known_packages()
    url = str(getattr(index, "url", PYPI_JSON))
    for package in packages:
        try:
            releases = index.releases(package)
        except (requests.RequestException, ValueError) as exc:
            report.not_checked.append(
                NotChecked(f"PyPI {package}", url.format(name=package), f"not asked: {exc}")
            )
            continue
        report.findings += compare(known[package], releases)
        finals = [
            Version(v)
            for v, files in releases.items()
            if _final(v) and linux_wheels(package, files)
        ]
        report.newest[package] = str(max(finals)) if finals else ""
    report.not_checked += not_checked()
    return report


def _final(text: str) -> bool:
    try:
        version = Version(text)
    except InvalidVersion:
        return False
    return not (version.is_prerelease or version.is_devrelease)
