"""What a runtime .deb says about itself: its control fields and its debconf questions.

A .deb is an ``ar`` archive (deb(5)): ``debian-binary``, then ``control.tar`` (optionally
.gz / .xz / .bz2 / .zst), then ``data.tar.*``. The control archive holds ``control``
(Package, Version, Architecture, Depends, Provides, Conflicts, ...) and, for a package that
asks questions, the debconf ``templates`` file. Both are read here from the file itself,
not from what its name or the project believes: feranick's max build, for example, asks
only ``libedgetpu/accepted-eula`` (its templates also hold the ``libedgetpu/error-eula``
note), whatever third-party install scripts preseed.

Pure Python (a small ar reader + the stdlib ``tarfile``) except a zstd-compressed control
archive (Ubuntu's dpkg default since 21.10), which goes through ``zstd -dc`` or
``dpkg-deb --ctrl-tarfile`` when either is on the controller.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

from provision.artifacts.cache import ArtifactError
from provision.artifacts.lockfile import DebControl

_AR_MAGIC = b"!<arch>\n"
_HEADER = 60


class DebError(ArtifactError):
    """A .deb cannot be read, or what it says does not fit the target."""


def ar_members(data: bytes, source: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each member of an ar archive (common format, as dpkg writes it)."""
    if not data.startswith(_AR_MAGIC):
        raise DebError(f"{source}: not a .deb (no ar archive signature)")
    pos = len(_AR_MAGIC)
    while pos + _HEADER <= len(data):
        header = data[pos : pos + _HEADER]
        if header[58:60] != b"`\n":
            raise DebError(f"{source}: damaged ar member header at byte {pos}")
        name = header[0:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebError(f"{source}: damaged ar member size at byte {pos}") from None
        start = pos + _HEADER
        if start + size > len(data):
            raise DebError(f"{source}: truncated (member {name} runs past the end)")
        yield name, data[start : start + size]
        pos = start + size + (size % 2)


def _unzstd(blob: bytes, deb: bytes, source: str) -> bytes:
    zstd = shutil.which("zstd")
    if zstd:
        proc = subprocess.run([zstd, "-dc"], input=blob, capture_output=True, check=False)
        if proc.returncode == 0:
            return proc.stdout
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb:
        proc = subprocess.run(
            [dpkg_deb, "--ctrl-tarfile", "/dev/stdin"], input=deb, capture_output=True, check=False
        )
        if proc.returncode == 0:
            return proc.stdout
    raise DebError(
        f"{source}: its control archive is zstd-compressed; install zstd (apt-get install "
        "zstd) or dpkg on the controller to read it"
    )


def control_files(deb: bytes, source: str) -> dict[str, str]:
    """``control`` and ``templates`` (when present) of a .deb, as text."""
    members = dict(ar_members(deb, source))
    name = next((n for n in members if n.startswith("control.tar")), None)
    if members.get("debian-binary", b"").strip()[:2] != b"2." or name is None:
        raise DebError(f"{source}: not a Debian binary package (format 2.x with control.tar)")
    blob = members[name]
    if name.endswith(".zst"):
        blob = _unzstd(blob, deb, source)
    out: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for member in tar.getmembers():
                base = member.name.removeprefix("./")
                if base in ("control", "templates") and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        out[base] = handle.read().decode("utf-8", "replace")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DebError(f"{source}: its {name} cannot be read ({exc})") from None
    if "control" not in out:
        raise DebError(f"{source}: its {name} has no control file")
    return out


def paragraphs(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs (control files, debconf templates): field name -> value, with
    continuation lines joined by newlines."""
    out: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                out.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip()
            current[last] = value.strip()
    if current:
        out.append(current)
    return out


def _relations(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.replace("\n", " ").split(",") if p.strip())


def read_control(deb: bytes, source: str) -> DebControl:
    files = control_files(deb, source)
    paras = paragraphs(files["control"])
    if not paras:
        raise DebError(f"{source}: its control file is empty")
    fields = paras[0]
    questions = tuple(
        f"{t['Template']} {t.get('Type', '?')}"
        for t in paragraphs(files.get("templates", ""))
        if t.get("Template")
    )
    return DebControl(
        package=fields.get("Package", ""),
        version=fields.get("Version", ""),
        architecture=fields.get("Architecture", ""),
        depends=_relations(
            ", ".join(v for v in (fields.get("Pre-Depends"), fields.get("Depends")) if v)
        ),
        provides=_relations(fields.get("Provides", "")),
        conflicts=_relations(fields.get("Conflicts", "")),
        templates=questions,
    )


def read_deb(path: Path) -> DebControl:
    return read_control(path.read_bytes(), path.name)


_LIBC_DEP = re.compile(r"^libc6\s*\(\s*>=\s*([0-9]+\.[0-9]+)[^)]*\)$")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2])


def unmet(control: DebControl, *, dpkg_arch: str, glibc: str) -> list[str]:
    """What in a .deb's own control fields the target cannot satisfy (empty: nothing found).

    Checked: Architecture (the host's dpkg architecture, or ``all``) and a ``libc6 (>= X.Y)``
    dependency against the target's glibc. Other Depends are recorded in the lock, not judged
    here (apt resolves them on the host, from the release's archive)."""
    out = []
    if control.architecture not in (dpkg_arch, "all"):
        out.append(
            f"it is built for Architecture {control.architecture or '(none)'}, "
            f"the host is {dpkg_arch}"
        )
    for dep in control.depends:
        for alt in dep.split("|"):
            match = _LIBC_DEP.match(alt.strip())
            if match and _key(match.group(1)) > _key(glibc):
                out.append(f"it Depends on {alt.strip()}, the host has glibc {glibc}")
    return out


def boolean_questions(control: DebControl) -> tuple[str, ...]:
    """The debconf questions of type boolean the package's templates define (what a
    non-interactive install must answer)."""
    return tuple(q.split()[0] for q in control.templates if q.endswith(" boolean"))
