"""Finding the exact wheels a target platform installs, with their URLs and sha256 digests.

pip does the index work: ``pip install --dry-run --report`` with ``--only-binary=:all:``,
``--python-version X.Y --implementation cp --abi cpXY`` and one ``--platform`` per tag the
target accepts (pip takes ``--platform`` literally, so every tag from the plan is passed).
The report names each chosen file's URL and the sha256 the index publishes for it; the
files are then downloaded by :mod:`provision.artifacts.downloads` and checked against that digest.
So every wheel hash is pinned by the index, not trusted on first use.

Dependencies are walked here rather than by pip, with ``--no-deps`` at every step:
each round resolves the requested names plus every ``Requires-Dist`` found so far, with
environment markers evaluated for the *target* (its Python version and machine, not the
controller's), until no new requirement appears. This is what lets ``numpy`` be left out
when the plan takes numpy from apt (``numpy.source == "apt"``): the venv sees Debian's
python3-numpy through ``--system-site-packages``, and PyPI has no numpy wheel for armv7l at
all. The numpy requirements that were left out are reported, so a conflict with the
plan's numpy constraint is visible.

pip runs with ``--isolated`` and ``--index-url https://pypi.org/simple`` (plus
``--extra-index-url`` from ``coralpi_pip_index_url``), so the lock records public URLs and
not whatever a controller's own pip configuration points at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import Parser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from provision.artifacts import downloads
from provision.artifacts.cache import ArtifactCache, ArtifactError
from provision.redaction import credentials_of, without_credentials

PYPI_INDEX = "https://pypi.org/simple"
_MAX_ROUNDS = 12


@dataclass(frozen=True)
class WheelSpec:
    """The target platform as pip needs it."""

    python: str  # "3.11"
    python_tag: str  # "cp311"
    platform_tags: tuple[str, ...]
    arch: str  # uname -m of the target, for markers
    extra_index_url: str = ""
    index_url: str = PYPI_INDEX


@dataclass(frozen=True)
class ResolvedWheel:
    name: str  # canonical project name
    version: str
    filename: str
    url: str
    sha256: str | None  # as published by the index; None if it published none


@dataclass
class Resolution:
    wheels: list[ResolvedWheel] = field(default_factory=list)
    #: Requirements on excluded projects (e.g. numpy) that the wheels declare.
    excluded_requirements: list[str] = field(default_factory=list)
    #: Which wheels (canonical names) asked for each wheel; "" marks a requested one.
    required_by: dict[str, set[str]] = field(default_factory=dict)
    #: Excluded requirements per wheel that declared them.
    excluded_by: dict[str, list[str]] = field(default_factory=dict)


def target_environment(python: str, arch: str) -> dict[str, str]:
    """PEP 508 marker environment of a Linux CPython target."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": arch,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
        "extra": "",
    }


def applicable(requirement: Requirement, env: dict[str, str]) -> bool:
    """Whether a Requires-Dist entry applies on the target (no extras requested)."""
    if requirement.marker is None:
        return True
    try:
        return bool(requirement.marker.evaluate(env))
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker):
        return True


def dependencies_of(requires_dist: Iterable[str], env: dict[str, str]) -> list[Requirement]:
    out = []
    for line in requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if applicable(req, env):
            req.marker = None
            out.append(req)
    return out


def wheel_metadata(path: Path) -> Message:
    """The core metadata of a wheel file (its ``*.dist-info/METADATA``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                n
                for n in archive.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            if len(names) != 1:
                raise ArtifactError(f"{path.name}: a wheel holds one .dist-info/METADATA")
            text = archive.read(names[0]).decode("utf-8", errors="replace")
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{path.name}: not a wheel (zip) file ({exc})") from None
    return Parser().parsestr(text, headersonly=True)


def pip_command(spec: WheelSpec, requirements: Sequence[str], report: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "pip", "--isolated", "install",
        "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
        "--report", str(report),
        "--only-binary=:all:",
        "--python-version", spec.python,
        "--implementation", "cp",
        "--abi", spec.python_tag,
        "--index-url", spec.index_url,
        "--retries", "1", "--timeout", "30",
    ]  # fmt: skip
    for tag in spec.platform_tags:
        cmd += ["--platform", tag]
    if spec.extra_index_url:
        cmd += ["--extra-index-url", spec.extra_index_url]
    cert = os.environ.get("PIP_CERT")
    if cert:
        cmd += ["--cert", cert]
    return [*cmd, *requirements]


def _pip_error(spec: WheelSpec, requirements: Sequence[str], stderr: str) -> ArtifactError:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    detail = " ".join(ln.strip() for ln in lines[-3:]) or "no output"
    where = f"{spec.index_url}" + (f" and {spec.extra_index_url}" if spec.extra_index_url else "")
    hint = ""
    if any(
        w in stderr
        for w in (
            "Failed to establish",
            "NewConnectionError",
            "timed out",
            "Name or service not known",
            "Connection refused",
        )
    ):
        hint = (
            " The package index cannot be reached from this machine; set coralpi_pip_index_url"
            " to an index it can reach."
        )
    return ArtifactError(
        f"pip found no wheels for {', '.join(requirements)} on python {spec.python} "
        f"({spec.python_tag}) with platform tags {', '.join(spec.platform_tags)} "
        f"from {where}: {detail}.{hint}"
    )


def _run_pip(spec: WheelSpec, requirements: Sequence[str]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="coralpi-pip-") as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            pip_command(spec, requirements, report),
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp,
        )
        if proc.returncode != 0 or not report.exists():
            raise _pip_error(spec, requirements, proc.stderr)
        data = json.loads(report.read_text())
    install: list[dict[str, Any]] = data.get("install", [])
    return install


def _wheel_from_report(item: dict[str, Any]) -> ResolvedWheel:
    meta = item.get("metadata", {})
    info = item.get("download_info", {})
    url = str(info.get("url", ""))
    hashes = info.get("archive_info", {}).get("hashes", {})
    sha = hashes.get("sha256")
    # Indexes quote the file name in the URL ("+" of a local version is "%2B"): unquote it,
    # or pip would not recognise the saved file as that wheel.
    filename = unquote(url.rsplit("/", 1)[-1].split("#", 1)[0])
    return ResolvedWheel(
        name=canonicalize_name(str(meta.get("name", ""))),
        version=str(meta.get("version", "")),
        filename=filename,
        url=without_credentials(url),  # recorded in the lock; the login is put back to fetch
        sha256=str(sha).lower() if sha else None,
    )


def resolve(
    spec: WheelSpec,
    requirements: Sequence[str],
    exclude: Iterable[str] = (),
    run_pip: Any = None,
) -> Resolution:
    """Wheels for ``requirements`` and their dependencies on the target, minus ``exclude``.

    ``run_pip(spec, requirement_strings) -> report install items`` can be replaced in tests.
    """
    runner = run_pip or _run_pip
    env = target_environment(spec.python, spec.arch)
    excluded = {canonicalize_name(e) for e in exclude}
    wanted: dict[str, Requirement] = {}
    out = Resolution()
    pending: list[tuple[str, Requirement]] = [("", Requirement(r)) for r in requirements]
    resolved: dict[str, ResolvedWheel] = {}
    for _ in range(_MAX_ROUNDS):
        changed = False
        for parent, req in pending:
            key = canonicalize_name(req.name)
            if key in excluded:
                if parent:
                    out.excluded_by.setdefault(parent, [])
                    if str(req) not in out.excluded_by[parent]:
                        out.excluded_by[parent].append(str(req))
                if str(req) not in out.excluded_requirements:
                    out.excluded_requirements.append(str(req))
                continue
            out.required_by.setdefault(key, set()).add(parent)
            if key not in wanted:
                wanted[key] = req
                changed = True
            else:
                merged = Requirement(str(wanted[key]))
                merged.specifier &= req.specifier
                merged.extras |= req.extras
                if str(merged) != str(wanted[key]):
                    wanted[key] = merged
                    changed = True
        if not changed:
            break
        items = runner(spec, sorted(str(r) for r in wanted.values()))
        pending = []
        resolved = {}
        for item in items:
            wheel = _wheel_from_report(item)
            resolved[wheel.name] = wheel
            requires = item.get("metadata", {}).get("requires_dist") or []
            extras = wanted.get(wheel.name, Requirement(wheel.name)).extras
            for extra in ("", *sorted(extras)):
                pending.extend(
                    (wheel.name, dep) for dep in dependencies_of(requires, dict(env, extra=extra))
                )
    else:
        raise ArtifactError(
            f"dependencies of {', '.join(requirements)} did not settle after {_MAX_ROUNDS} rounds"
        )
    wheels = sorted(resolved.values(), key=lambda w: w.name)
    for wheel in wheels:
        if not wheel.filename.endswith(".whl"):
            raise ArtifactError(f"pip chose {wheel.url}, which is not a wheel")
    out.wheels = wheels
    out.excluded_requirements.sort()
    return out


def fetch(
    cache: ArtifactCache, wheel: ResolvedWheel, pins: Mapping[str, str], index_url: str = ""
) -> downloads.Fetched:
    """Download a resolved wheel into the cache under its pin (by URL or file name, else
    the sha256 the index publishes); a pin the index now contradicts is refused. A wheel
    served by ``index_url``'s host gets that URL's login (else requests reads ~/.netrc)."""
    pinned = pins.get(wheel.url) or pins.get(wheel.filename)
    if pinned and wheel.sha256 and pinned != wheel.sha256:
        raise ArtifactError(
            f"{wheel.filename}: the index now publishes sha256 {wheel.sha256} for "
            f"{wheel.url}, but the lock pins {pinned}; refusing it"
        )
    return downloads.fetch(
        cache,
        downloads.Source(
            "wheel",
            wheel.filename,
            credentials_of(wheel.url, index_url),
            pinned or wheel.sha256,
            "coralpi_pip_index_url",
        ),
    )
