"""What a wheel's shared objects really need from the target's C and C++ libraries.

A wheel's platform tag is what its builder claimed: ai-edge-litert 2.1.6 and later aarch64
wheels are tagged ``manylinux_2_27`` but their shared objects need ``GLIBC_2.34`` and
``GLIBCXX_3.4.30`` (FIELD-NOTES.md; google-ai-edge/LiteRT issue 417 shows the same kind of
gap as ``version `GLIBCXX_3.4.30' not found``; tensorflow/tensorflow issue 60738 for
tflite_runtime's manylinux2014 aarch64 wheels). The truth is in the ELF files: every symbol an
object takes from glibc or libstdc++ carries the version node it was linked against, listed
in the object's ``.gnu.version_r`` (version needs) section. The dynamic loader refuses to
load an object whose needed version its libraries do not define, whatever the tag says.

This module reads those version needs with pyelftools (pure: bytes in, needs out), keeps the
highest needed version per namespace (``GLIBC``, ``GLIBCXX``, ``CXXABI``), and compares them
with what a target has.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from provision.artifacts.cache import ArtifactError

#: The version namespaces checked against the target: glibc's, and libstdc++'s two.
NAMESPACES = ("GLIBC", "GLIBCXX", "CXXABI")
_VERSION = re.compile(r"^(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)$")
_ELF_MAGIC = b"\x7fELF"


class WheelNeedsError(ArtifactError):
    """A wheel needs more from the target's glibc / libstdc++ than the target has."""


def version_key(value: str) -> tuple[int, ...]:
    """``"3.4.30" -> (3, 4, 30)`` (missing parts are 0 when compared)."""
    return tuple(int(p) for p in value.split("."))


def _at_least(have: str, need: str) -> bool:
    a, b = version_key(have), version_key(need)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


@dataclass(frozen=True)
class Need:
    """One needed version node: ``GLIBC_2.34`` of ``libc.so.6`` in object ``path``."""

    namespace: str  # GLIBC | GLIBCXX | CXXABI
    version: str  # "2.34"
    library: str  # the library that must define it, e.g. libc.so.6
    path: str  # the shared object inside the wheel that needs it

    @property
    def label(self) -> str:
        return f"{self.namespace}_{self.version}"


def object_needs(data: bytes, path: str) -> list[Need]:
    """The GLIBC / GLIBCXX / CXXABI version nodes an ELF object needs (empty if none).

    Raises ArtifactError when ``data`` starts like ELF but cannot be read as one.
    """
    try:
        elf = ELFFile(io.BytesIO(data))
        out: list[Need] = []
        for section in elf.iter_sections():
            if not isinstance(section, GNUVerNeedSection):
                continue
            for verneed, auxiliaries in section.iter_versions():
                library = str(verneed.name)
                for aux in auxiliaries:
                    match = _VERSION.match(str(aux.name))
                    if match:
                        out.append(Need(match.group(1), match.group(2), library, path))
        return out
    except (ELFError, ValueError, KeyError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable ELF object ({exc})") from None


def highest(needs: Iterable[Need]) -> dict[str, Need]:
    """The highest need per namespace (the first object found wins a tie)."""
    best: dict[str, Need] = {}
    for need in needs:
        have = best.get(need.namespace)
        if have is None or not _at_least(have.version, need.version):
            best[need.namespace] = need
    return best


def wheel_needs(wheel: Path) -> dict[str, Need]:
    """Highest needs per namespace over every ELF file in a wheel (``.so`` or not: the
    file's first bytes decide)."""
    found: list[Need] = []
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if info.is_dir() or info.file_size < 64:
                    continue
                with archive.open(info) as member:
                    if member.read(4) != _ELF_MAGIC:
                        continue
                found.extend(object_needs(archive.read(info), info.filename))
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{wheel.name}: not a wheel (zip) file ({exc})") from None
    return highest(found)


def render(needs: Mapping[str, Need]) -> tuple[str, ...]:
    """The lock's form: ``"GLIBC_2.34 by pkg/_lib.so"`` per namespace, in NAMESPACES order."""
    return tuple(f"{needs[ns].label} by {needs[ns].path}" for ns in NAMESPACES if ns in needs)


def parse(lines: Iterable[str]) -> dict[str, Need]:
    """The lock's form back (unknown lines are skipped: a newer coralpi may add namespaces)."""
    out: dict[str, Need] = {}
    for line in lines:
        label, _, path = line.partition(" by ")
        match = _VERSION.match(label.strip())
        if match:
            out[match.group(1)] = Need(match.group(1), match.group(2), "", path.strip())
    return out


@dataclass(frozen=True)
class TargetLibs:
    """What a target's C and C++ libraries define: the highest GLIBC / GLIBCXX / CXXABI
    version (None: not known, so not checked), and where that came from."""

    glibc: str | None
    glibcxx: str | None = None
    cxxabi: str | None = None
    source: str = "the target"

    def has(self, namespace: str) -> str | None:
        return {"GLIBC": self.glibc, "GLIBCXX": self.glibcxx, "CXXABI": self.cxxabi}[namespace]


def shortfalls(needs: Mapping[str, Need], libs: TargetLibs) -> list[str]:
    """One line per need the target does not meet (empty: the wheel loads there)."""
    out = []
    for ns in NAMESPACES:
        need = needs.get(ns)
        have = libs.has(ns)
        if need is None or have is None or _at_least(have, need.version):
            continue
        lib = "glibc" if ns == "GLIBC" else "libstdc++"
        out.append(f"{need.path} needs {need.label}, but {libs.source} has {lib} up to {ns}_{have}")
    return out


def check_wheel(name: str, needs: Mapping[str, Need], libs: TargetLibs, where: str) -> None:
    """Refuse a wheel whose shared objects need more than the target has."""
    short = shortfalls(needs, libs)
    if not short:
        return
    raise WheelNeedsError(
        f"{name} cannot load on {where}: " + "; ".join(short) + ". Its platform tag "
        "claims less than its shared objects need (read from their ELF symbol versions). "
        "The plan chose this version (see `coralpi plan`): choose a target OS release with "
        "newer libraries, or correct the wheel's row in provision/planning/matrix.toml to a "
        "version built for this release (e.g. ai-edge-litert 2.1.0 needs at most GLIBC_2.30); "
        "then run `coralpi lock` again."
    )
