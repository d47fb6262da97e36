"""Host -> plan: a pure function over the data table in ``matrix.toml``.

:func:`resolve` decides, for one :class:`~provision.planning.targets.Target` and the user's
:class:`~provision.planning.targets.Choices`, which libedgetpu runtime, Python inference runtime,
numpy, OpenCV, camera setup and venv the host gets, each with the reason why. A combination
that cannot work raises :class:`~provision.errors.UnsupportedTarget` naming the nearest one
that does. No I/O besides reading the data table once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from provision.errors import ConfigError, UnsupportedTarget
from provision.planning.boards import PCIE_CARRIER, Board, board_for, boards_with_pcie
from provision.planning.kinds import fill_template
from provision.planning.matrix_data import load_matrix_data
from provision.planning.plan import (
    CameraDecision,
    ControllerDecision,
    FactSource,
    NumpyDecision,
    OpenCVDecision,
    PcieDecision,
    Plan,
    PythonRuntimeDecision,
    RuntimeDecision,
    VenvDecision,
)
from provision.planning.targets import ARCHS, Choices, Target, version_tuple

# ---------------------------------------------------------------------------------------
# The data table, typed.


@dataclass(frozen=True)
class Release:
    name: str
    family: str
    os_ids: tuple[str, ...]
    version: str
    order: int
    python: str
    glibc: str
    boot_config: str
    camera_method: str
    camera_note: str
    pep668: bool
    venv_pip: str
    numpy: str
    pillow: str
    opencv: str
    note: str
    source: str
    checked: str
    #: Highest GLIBCXX_ / CXXABI_ version of the release's libstdc++ (None: not recorded).
    glibcxx: str | None = None
    cxxabi: str | None = None


@dataclass(frozen=True, eq=False)  # identity: each wheel is one row of the table
class Wheel:
    package: str
    module: str
    tpu: str  # "proven" | "reported"
    package_note: str
    version: str
    tf: str  # the TensorFlow (Lite) version the wheel is built from
    python: tuple[str, str]
    numpy: str
    platforms: Mapping[str, str]
    source: str
    checked: str
    #: "pypi", or "community": a wheel from coralpi_community_wheel_url (opt-in)
    origin: str = "pypi"
    release: str = ""  # community: the release tag its files are published under
    filename: str = ""  # community: the file name template ({version} {cp} {arch})

    @property
    def tpu_proven(self) -> bool:
        return self.tpu == "proven"

    def file_name(self, target_python: str, arch: str) -> str:
        """The community wheel's file name for a target ("" for a PyPI wheel: pip finds it)."""
        if not self.filename:
            return ""
        cp = python_tag(target_python)
        return fill_template(self.filename, version=self.version, cp=cp, arch=arch)


@dataclass(frozen=True)
class KnownGood:
    """A libedgetpu release and Python runtime that a downstream project ships together."""

    package: str
    version: str
    source: str


@dataclass(frozen=True, eq=False)  # identity: each release is one row of the table
class RuntimeRelease:
    """One libedgetpu release of a source, with the TF version it was built against."""

    version: str
    tag: str  # the release's tag where its files are published ("" for apt)
    tf: str
    codenames: tuple[str, ...]  # releases it can be installed on
    builds: Mapping[str, str]  # codename -> build (file name part)
    native: tuple[str, ...]  # codenames whose build is their own
    python_runtimes: Mapping[str, str]  # package -> versions it pairs with
    known_good: tuple[KnownGood, ...]

    def pairs_with(self, wheel: Wheel) -> bool:
        spec = self.python_runtimes.get(wheel.package)
        return spec is not None and Version(wheel.version) in SpecifierSet(spec)


@dataclass(frozen=True)
class RuntimeSource:
    name: str
    description: str
    why: str
    archs: tuple[str, ...]
    releases: tuple[RuntimeRelease, ...]  # newest TF first
    debarch: Mapping[str, str]
    filename: str
    missing: tuple[tuple[str, str], ...]
    source: str
    checked: str

    @property
    def codenames(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for r in self.releases for c in r.codenames))

    @property
    def python_runtimes(self) -> Mapping[str, str]:
        """package -> the versions any release pairs with (for messages)."""
        merged: dict[str, list[str]] = {}
        for rel in self.releases:
            for package, spec in rel.python_runtimes.items():
                merged.setdefault(package, []).append(spec)
        return {k: " or ".join(dict.fromkeys(v)) for k, v in merged.items()}


@dataclass(frozen=True)
class AnsibleLine:
    line: str
    controller_python: tuple[str, str]
    target_python: tuple[str, str]


@dataclass(frozen=True)
class Matrix:
    releases: Mapping[str, Release]
    wheels: tuple[Wheel, ...]  # preference order: package order, then newest first
    numpy_pypi_archs: tuple[str, ...]
    numpy_pypi_wheels: tuple[tuple[str, tuple[str, str]], ...]
    pillow_pypi_archs: tuple[str, ...]
    opencv_pip: Mapping[str, Any]
    sources: tuple[RuntimeSource, ...]
    ansible_lines: tuple[AnsibleLine, ...]
    accelerators: Mapping[str, Mapping[str, Any]]
    variants: Mapping[str, Mapping[str, Any]]
    venv: Mapping[str, Any]


def _pair(value: Any) -> tuple[str, str]:
    low, high = value
    return str(low), str(high)


def _runtime_release(r: Mapping[str, Any]) -> RuntimeRelease:
    builds = {str(k): str(v) for k, v in r.get("builds", {}).items()}
    return RuntimeRelease(
        version=str(r["version"]),
        tag=str(r.get("tag", "")),
        tf=str(r["tf"]),
        codenames=tuple(r.get("codenames", builds.keys())),
        builds=builds,
        native=tuple(r.get("native", r.get("codenames", ()))),
        python_runtimes=dict(r["python_runtimes"]),
        known_good=tuple(
            KnownGood(str(k["package"]), str(k["version"]), str(k["source"]))
            for k in r.get("known_good", [])
        ),
    )


@cache
def load_matrix() -> Matrix:
    """The typed data table (read once)."""
    raw = load_matrix_data()
    releases = {
        name: Release(
            name=name,
            family=r["family"],
            os_ids=tuple(r["os_ids"]),
            version=r["version"],
            order=int(r["order"]),
            python=r["python"],
            glibc=r["glibc"],
            boot_config=r["boot_config"],
            camera_method=r["camera_method"],
            camera_note=r["camera_note"],
            pep668=bool(r["pep668"]),
            venv_pip=r["venv_pip"],
            numpy=r["numpy"],
            pillow=r["pillow"],
            opencv=r["opencv"],
            note=r["note"],
            source=r["source"],
            checked=r["checked"],
            glibcxx=r.get("glibcxx"),
            cxxabi=r.get("cxxabi"),
        )
        for name, r in raw["releases"].items()
    }
    wheels: list[Wheel] = []
    for pkg in raw["python_runtimes"]:
        entries = sorted(pkg["wheels"], key=lambda w: Version(w["version"]), reverse=True)
        wheels.extend(
            Wheel(
                package=pkg["package"],
                module=pkg["module"],
                tpu=str(pkg["tpu"]),
                package_note=pkg["note"],
                version=w["version"],
                tf=str(w["tf"]),
                python=_pair(w["python"]),
                numpy=w["numpy"],
                platforms=dict(w["platforms"]),
                source=pkg["source"],
                checked=pkg["checked"],
                origin=str(pkg.get("origin", "pypi")),
                release=str(w.get("release", "")),
                filename=str(pkg.get("filename", "")),
            )
            for w in entries
        )
    sources = tuple(
        RuntimeSource(
            name=s["name"],
            description=s["description"],
            why=s["why"],
            archs=tuple(s["archs"]),
            releases=tuple(
                sorted(
                    (_runtime_release(r) for r in s["releases"]),
                    key=lambda r: Version(r.tf),
                    reverse=True,
                )
            ),
            debarch=dict(s.get("debarch", {})),
            filename=s.get("filename", ""),
            missing=tuple((m["variant"], m["arch"]) for m in s.get("missing", [])),
            source=s["source"],
            checked=s["checked"],
        )
        for s in raw["runtime_sources"]
    )
    return Matrix(
        releases=releases,
        wheels=tuple(wheels),
        numpy_pypi_archs=tuple(raw["numpy_pypi"]["archs"]),
        numpy_pypi_wheels=tuple(
            (w["version"], _pair(w["python"])) for w in raw["numpy_pypi"]["wheels"]
        ),
        pillow_pypi_archs=tuple(raw["pillow_pypi"]["archs"]),
        opencv_pip=raw["opencv_pip"],
        sources=sources,
        ansible_lines=tuple(
            AnsibleLine(
                line=a["line"],
                controller_python=_pair(a["controller_python"]),
                target_python=_pair(a["target_python"]),
            )
            for a in raw["ansible_core"]
        ),
        accelerators=raw["accelerators"],
        variants=raw["runtime_variants"],
        venv=raw["venv"],
    )


# ---------------------------------------------------------------------------------------
# Platform tags.

_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@cache
def platform_tags(arch: str, glibc: str) -> tuple[str, ...]:
    """Every wheel platform tag a Linux ``arch`` host with this glibc accepts, best first.

    Mirrors ``packaging.tags`` (manylinux_2_N for N from the host's glibc down to 17, or
    down to 5 on x86_64, each legacy alias right after its glibc version, then linux_ARCH),
    but for a host other than this one. pip's ``--platform`` is literal, so a download for
    a target must pass all of these.
    """
    major, minor = version_tuple(glibc)
    oldest = 5 if arch == "x86_64" else 17
    tags: list[str] = []
    if major == 2:
        for n in range(minor, oldest - 1, -1):
            tags.append(f"manylinux_2_{n}_{arch}")
            legacy = _LEGACY_MANYLINUX.get((2, n))
            if legacy is not None and (legacy == "manylinux2014" or arch == "x86_64"):
                tags.append(f"{legacy}_{arch}")
    tags.append(f"linux_{arch}")
    return tuple(tags)


def _python_in(python: str, bounds: tuple[str, str]) -> bool:
    return version_tuple(bounds[0]) <= version_tuple(python) <= version_tuple(bounds[1])


def python_tag(python: str) -> str:
    """``"3.11" -> "cp311"``."""
    major, minor = version_tuple(python)
    return f"cp{major}{minor}"


def _wheel_file_tag(wheel: Wheel, target: Target) -> str | None:
    """The platform tag of the wheel's file for this target, or None if there is none."""
    if not _python_in(target.python, wheel.python):
        return None
    stem = wheel.platforms.get(target.arch)
    if stem is None:
        return None
    tag = f"{stem}_{target.arch}"
    return tag if tag in platform_tags(target.arch, target.glibc) else None


def _pip_for_tag(tag: str) -> str:
    """Minimum pip that installs a wheel with this platform tag."""
    table: Mapping[str, str] = load_matrix().venv["pip_for_tag"]
    if tag.startswith("manylinux_2_"):
        return table["manylinux_2"]
    if tag.startswith("manylinux"):
        return table["manylinux2014"]
    return table["linux"]


# ---------------------------------------------------------------------------------------
# Decisions.


@dataclass(frozen=True)
class _Ctx:
    target: Target
    choices: Choices
    release: Release
    system_python: bool  # target.python is the release's own python3 (apt modules usable)


def _numpy_for(constraint: str, ctx: _Ctx) -> NumpyDecision | str:
    """Where numpy satisfying ``constraint`` comes from, or why it cannot be had."""
    spec = SpecifierSet(constraint)
    rel, target = ctx.release, ctx.target
    apt_numpy = Version(rel.numpy)
    if ctx.system_python and apt_numpy in spec:
        return NumpyDecision(
            constraint,
            "apt",
            f"{rel.name}'s python3-numpy {rel.numpy} satisfies {constraint}: numpy (and Pillow) "
            "come from apt, used through a venv with system site packages",
        )
    why_not_apt = (
        f"{rel.name}'s python3-numpy {rel.numpy} does not satisfy {constraint}"
        if ctx.system_python
        else f"{rel.name}'s python3-numpy is built for python {rel.python}, not {target.python}"
    )
    if target.arch in load_matrix().numpy_pypi_archs:
        fitting = [
            v
            for v, py in load_matrix().numpy_pypi_wheels
            if _python_in(target.python, py) and Version(v) in spec
        ]
        if fitting:
            return NumpyDecision(
                constraint,
                "pip",
                f"{why_not_apt}; PyPI has numpy {max(fitting, key=Version)} wheels for "
                f"{python_tag(target.python)} {target.arch} that do: numpy comes from pip",
            )
        cp = python_tag(target.python)
        return f"{why_not_apt}, and PyPI has no numpy{constraint} wheel for {cp}"
    if ctx.choices.pip_index_url:
        return NumpyDecision(
            constraint,
            "pip",
            f"{why_not_apt}; PyPI has no {target.arch} numpy wheels, so numpy{constraint} comes "
            f"from the extra index {ctx.choices.pip_index_url} (coralpi_pip_index_url)",
        )
    return (
        f"{why_not_apt} and PyPI has no {target.arch} numpy wheels "
        "(set coralpi_pip_index_url to a piwheels-style index to allow it)"
    )


def _source_unavailable(source: RuntimeSource, ctx: _Ctx) -> str | None:
    """Why ``source`` cannot serve this host and variant, or None when it can."""
    target, variant = ctx.target, ctx.choices.runtime
    if target.arch not in source.archs:
        return f"{source.name}: no {target.arch} packages"
    if target.codename not in source.codenames:
        builds = sorted({b for r in source.releases for b in r.builds.values()})
        return f"{source.name}: no build runs on {target.codename} (builds: {', '.join(builds)})"
    if (variant, target.arch) in source.missing:
        return (
            f"{source.name}: libedgetpu1-{variant} for {target.arch} is reported missing "
            "from its pool"
        )
    return None


def _runtime_decision(sel: _Selection, ctx: _Ctx, pairing: str) -> RuntimeDecision:
    source, release = sel.source, sel.release
    variant = ctx.choices.runtime
    other = "max" if variant == "std" else "std"
    target = ctx.target
    what = f"libedgetpu {release.version}, {source.description}, built against TF {release.tf}"
    parts = [f"{what}; {source.why}", pairing]
    deb_filename: str | None = None
    if source.filename:
        build = release.builds[target.codename]
        debarch = source.debarch[target.arch]
        deb_filename = source.filename.format(
            variant=variant, version=release.version, build=build, debarch=debarch
        )
        if target.codename in release.native:
            parts.append(f"its own {build} build for {target.codename}")
        else:
            parts.append(
                f"no {target.codename} build of {release.version} exists: the {build} build is "
                f"used on {target.codename} (apt checks its libc6/libusb dependencies at install)"
            )
    parts.append(str(load_matrix().variants[variant]["note"]))
    return RuntimeDecision(
        source=source.name,
        package=f"libedgetpu1-{variant}",
        conflicts=f"libedgetpu1-{other}",
        version=release.version,
        deb_filename=deb_filename,
        reason="; ".join(p for p in parts if p),
        tf_version=release.tf,
        release_tag=release.tag or None,
    )


class _Unsupported(Exception):
    """Internal: this target cannot work (resolve() turns it into UnsupportedTarget)."""


def merge_specifiers(*specs: str) -> str:
    """Intersect simple ``>=``/``<``/``<=`` specifier strings into one, tightest bounds first.

    ``merge_specifiers(">=1.23.2,<2", ">=1.23.5") == ">=1.23.5,<2"``.
    """
    lower: Version | None = None
    upper: tuple[Version, str] | None = None
    rest: list[str] = []
    for spec in specs:
        for item in SpecifierSet(spec):
            version = Version(item.version)
            if item.operator == ">=":
                lower = version if lower is None or version > lower else lower
            elif item.operator in ("<", "<="):
                if upper is None or version < upper[0]:
                    upper = (version, item.operator)
            else:
                rest.append(str(item))
    parts = ([f">={lower}"] if lower is not None else []) + (
        [f"{upper[1]}{upper[0]}"] if upper is not None else []
    )
    return ",".join(parts + sorted(set(rest)))


@dataclass(frozen=True)
class _Selection:
    source: RuntimeSource
    release: RuntimeRelease
    release_why: str  # why this release of the source pairs with the wheel
    wheel: Wheel
    tag: str
    numpy: NumpyDecision
    # Why each earlier-preferred source was not used ("coral-apt: ...").
    sources_passed_over: tuple[str, ...]
    # Why each newer wheel of the same package that fits the platform was not used.
    newer_passed_over: tuple[str, ...]


def _same_tf(a: str, b: str) -> bool:
    """Same TensorFlow release, ignoring pre-release tags ("2.19.1" == "2.19.1")."""
    return Version(a).release[:3] == Version(b).release[:3] and not Version(b).is_prerelease


def choose_release(
    source: RuntimeSource, wheel: Wheel, codename: str
) -> tuple[RuntimeRelease, str] | None:
    """The release of ``source`` to pair with ``wheel`` on ``codename``, and why; None when
    no release both installs there and pairs with the wheel.

    By TensorFlow version: a release built for the wheel's own TF first, then one a
    downstream project ships with this very wheel (known good), then the release with the
    nearest TF at or below the wheel's, then the nearest above it.
    """
    able = [r for r in source.releases if codename in r.codenames and r.pairs_with(wheel)]
    if not able:
        return None
    pair = f"{wheel.package} {wheel.version} (TF {wheel.tf})"
    for rel in able:
        if _same_tf(rel.tf, wheel.tf):
            return rel, f"matched: libedgetpu {rel.version} is built for {pair}'s own TF"
    for rel in able:
        for good in rel.known_good:
            if good.package == wheel.package and good.version == wheel.version:
                return rel, f"known-good pair with {pair}: {good.source}"
    wheel_tf = Version(wheel.tf)
    below = [r for r in able if Version(r.tf) <= wheel_tf]
    if below:
        rel, where = below[0], "the nearest TF at or below"
    else:
        rel, where = min(able, key=lambda r: Version(r.tf)), "the nearest TF above"
    spec = rel.python_runtimes[wheel.package]
    why = (
        f"no {source.name} release is built for {pair}'s TF; TF {rel.tf} is {where} it among "
        f"the releases that pair with {wheel.package}{spec}"
    )
    goods = [g for g in rel.known_good if g.package == wheel.package]
    if goods:
        why += "; known good with it: " + ", ".join(
            f"{g.package} {g.version} ({g.source})" for g in goods
        )
    return rel, why


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _unpaired_note(wheel: Wheel, numpy_extra: str, ctx: _Ctx) -> str:
    """Why a wheel that fits the platform was passed over for pairing reasons."""
    spec = merge_specifiers(wheel.numpy, numpy_extra)
    names = [s.name for s in load_matrix().sources if any(r.pairs_with(wheel) for r in s.releases)]
    note = f"would need the {' or '.join(names) or 'unknown'} runtime"
    numpy = _numpy_for(spec, ctx)
    if isinstance(numpy, str) or numpy.source != "apt":
        rel = ctx.release
        note += f" and numpy{spec}, which {rel.name}'s python3-numpy {rel.numpy} does not meet"
    return note


def _select(ctx: _Ctx, numpy_extra: str) -> _Selection:
    """Preferred runtime source first, then the newest wheel that pairs with it and whose
    numpy need can be met on this host."""
    m, target = load_matrix(), ctx.target
    # Community wheels only when opted in, and then first (file order keeps them first).
    offered = [w for w in m.wheels if w.origin == "pypi" or ctx.choices.community_wheels]
    fitting = [(w, tag) for w in offered if (tag := _wheel_file_tag(w, target)) is not None]
    if not fitting:
        packages = " or ".join(_dedupe(w.package for w in offered))
        raise _Unsupported(
            f"no {packages} wheel exists for {python_tag(target.python)} on {target.arch} "
            f"with glibc {target.glibc}"
        )
    source_notes: list[str] = []
    wheel_notes: dict[Wheel, str] = {}
    for source in m.sources:
        unavailable = _source_unavailable(source, ctx)
        if unavailable is not None:
            source_notes.append(unavailable)
            continue
        unpaired: list[str] = []
        for wheel, tag in fitting:
            chosen = choose_release(source, wheel, target.codename)
            if chosen is None:
                unpaired.append(f"{wheel.package} {wheel.version}")
                wheel_notes.setdefault(wheel, _unpaired_note(wheel, numpy_extra, ctx))
                continue
            numpy = _numpy_for(merge_specifiers(wheel.numpy, numpy_extra), ctx)
            if isinstance(numpy, str):
                wheel_notes.setdefault(wheel, numpy)
                continue
            newer = [
                f"{w.version} ({wheel_notes[w]})"
                for w, _ in fitting
                if w.package == wheel.package
                and Version(w.version) > Version(wheel.version)
                and w in wheel_notes
            ]
            release, why = chosen
            return _Selection(
                source, release, why, wheel, tag, numpy, tuple(source_notes), tuple(newer)
            )
        pairs = ", ".join(f"{k}{v}" for k, v in source.python_runtimes.items())
        source_notes.append(
            f"{source.name}: pairs only with {pairs}, which rules out {', '.join(unpaired)}"
            if unpaired
            else f"{source.name}: no wheel's numpy need can be met"
        )
    details = _dedupe(
        [*source_notes, *(f"{w.package} {w.version}: {n}" for w, n in wheel_notes.items())]
    )
    raise _Unsupported("no runtime pairing works: " + "; ".join(details))


def _opencv_numpy_floor(target: Target) -> str:
    table: Mapping[str, Any] = load_matrix().opencv_pip
    floor = str(table["numpy"].get(target.python, ""))
    if target.arch == "aarch64":
        floor = merge_specifiers(*(s for s in (floor, str(table["numpy_aarch64"])) if s))
    return floor


def _python_runtime_decision(sel: _Selection, ctx: _Ctx) -> PythonRuntimeDecision:
    target, wheel = ctx.target, sel.wheel
    cp = python_tag(target.python)
    parts = [
        f"{wheel.package} {wheel.version} (built from TF {wheel.tf}): the newest wheel for {cp} "
        f"{target.arch} (glibc {target.glibc}, file tag {sel.tag}) that pairs with the "
        f"{sel.source.name} runtime and whose numpy need this host meets"
    ]
    if sel.newer_passed_over:
        parts.append(f"chosen over newer {', '.join(sel.newer_passed_over)}")
        if sel.source is load_matrix().sources[0]:
            parts.append(
                f"the official {sel.source.name} runtime is preferred while a safe pairing exists"
            )
    if not wheel.tpu_proven:
        parts.append(f"Edge TPU {wheel.tpu}, not proven here: {wheel.package_note}")
    if wheel.package == "ai-edge-litert":
        parts.append("it pulls flatbuffers, protobuf, ml_dtypes, tqdm and typing-extensions")
    if wheel.origin == "community":
        parts.insert(
            1,
            f"a community build (coralpi_community_wheels: true): "
            f"{wheel.file_name(target.python, target.arch)} of release {wheel.release}, "
            "downloaded by the controller from coralpi_community_wheel_url and pinned by "
            "sha256 in the lock",
        )
    return PythonRuntimeDecision(
        package=wheel.package,
        version=wheel.version,
        module=wheel.module,
        python_tag=cp,
        platform_tags=platform_tags(target.arch, target.glibc),
        reason="; ".join(parts),
        tf_version=wheel.tf,
        origin=wheel.origin,
        wheel_file=wheel.file_name(target.python, target.arch),
        release_tag=wheel.release or None,
    )


def _opencv_decision(ctx: _Ctx) -> tuple[OpenCVDecision, str | None, str]:
    """OpenCV plus the LD_PRELOAD it needs (path or None, reason)."""
    target, rel = ctx.target, ctx.release
    cfg: Mapping[str, Any] = load_matrix().opencv_pip
    if ctx.choices.opencv == "apt":
        opencv = OpenCVDecision(
            "apt",
            "python3-opencv",
            None,
            f"{rel.name}'s python3-opencv ({rel.opencv}) avoids pip entirely and is built "
            "against the release's own numpy (coralpi_opencv: apt)",
        )
        return opencv, None, f"not needed: OpenCV comes from {rel.name}'s own packages"
    pinned = f"{cfg['package']} {cfg['version']}"
    if target.arch in cfg["archs"]:
        opencv = OpenCVDecision(
            "pip",
            str(cfg["package"]),
            str(cfg["version"]),
            f"{pinned} from PyPI (coralpi_opencv: pip): the last release that sits with "
            "numpy<2 (4.12+ requires numpy 2)",
        )
        return (
            opencv,
            None,
            f"not needed on {target.arch}: only armv7l OpenCV builds lack libatomic",
        )
    opencv = OpenCVDecision(
        "pip",
        str(cfg["package"]),
        str(cfg["version"]),
        f"{pinned} from the extra index {ctx.choices.pip_index_url} (coralpi_pip_index_url): "
        f"PyPI has no {target.arch} OpenCV wheels",
    )
    return (
        opencv,
        str(cfg["armv7l_ld_preload"]),
        "armv7l OpenCV wheels from piwheels-style indexes may fail with `undefined symbol: "
        f"__atomic_fetch_add_8`; preloading {cfg['armv7l_ld_preload']} (Debian package "
        f"{cfg['armv7l_ld_preload_apt']}) for the coralpi processes cures it",
    )


def _camera_decision(ctx: _Ctx) -> CameraDecision:
    target, rel = ctx.target, ctx.release
    if not ctx.choices.camera:
        return CameraDecision("none", None, "camera disabled (coralpi_camera: false)")
    if not target.is_raspberry_pi:
        board = target.board or "unknown board"
        return CameraDecision(
            "none", None, f"not a Raspberry Pi ({board}): there is no Pi firmware config.txt to set"
        )
    return CameraDecision(rel.camera_method, rel.boot_config, rel.camera_note)


def _board_names(boards: Iterable[Board]) -> str:
    return ", ".join(b.name for b in boards)


def _accelerator_notes(ctx: _Ctx) -> tuple[list[str], list[str]]:
    """(notes, warnings) for the chosen accelerator from the boards table. A Raspberry Pi
    the table knows to have no PCIe lane is refused for ``pcie`` (ConfigError); what a
    PCIe Coral then needs is `_pcie_decision`'s."""
    target = ctx.target
    accel: Mapping[str, Any] = load_matrix().accelerators[ctx.choices.accelerator]
    notes = [f"accelerator: {ctx.choices.accelerator}: {accel['note']}"]
    warnings: list[str] = []
    board = board_for(target.board)
    if ctx.choices.accelerator == "pcie":
        if board is not None and not board.has_pcie:
            usb = "a USB 3 port" if board.usb3 else "a USB port (USB 2 only: 3-4x slower)"
            raise ConfigError(
                f"coralpi_accelerator: pcie, but the {board.name} ({target.board}) has no PCIe "
                f"lane for a Coral: use coralpi_accelerator: usb with the USB Accelerator on "
                f"{usb}, or a board with one ({_board_names(boards_with_pcie())})"
            )
        elif board is not None and board.pcie == PCIE_CARRIER:
            notes.append(
                f"accelerator: the {board.name} routes its PCIe lane to the carrier board: "
                "the carrier needs an M.2/PCIe slot the Coral card fits"
            )
    elif board is not None and not board.usb3:
        warnings.append(
            f"coralpi_accelerator: usb on the {board.name}, which has no USB 3 port: the USB "
            "Accelerator runs at USB 2 speed (3-4x the latency)"
        )
    return notes, warnings


def pcie_board(board: str | None) -> tuple[str, Mapping[str, Any]] | None:
    """The matrix's PCIe entry for a board model (``/proc/device-tree/model``), or None.

    A model matches an entry when it is that name or that name and more words
    (``Raspberry Pi 5 Model B Rev 1.0``), so neither ``Raspberry Pi 500`` nor
    ``Raspberry Pi Compute Module 4S`` passes for a board with a PCIe lane.
    """
    if not board:
        return None
    boards: Mapping[str, Mapping[str, Any]] = load_matrix().accelerators["pcie"]["boards"]
    for name, entry in boards.items():
        if board == name or board.startswith(name + " "):
            return name, entry
    return None


def _pcie_decision(ctx: _Ctx) -> tuple[PcieDecision, list[str]]:
    """The PCIe Coral's boot lines, driver and headers, and warnings; refusal when the host
    cannot take one (a Raspberry Pi without a PCIe lane, Ubuntu's Pi kernel, 32-bit OS)."""
    target, rel = ctx.target, ctx.release
    accel: Mapping[str, Any] = load_matrix().accelerators["pcie"]
    headers: Mapping[str, str] = accel["headers"]
    driver = (
        f"the driver is {accel['driver_package']} {accel['driver_version']} "
        f"({accel['driver_deb']}, pinned in the lock): {accel['driver_why']}"
    )
    warnings: list[str] = []
    if not target.is_raspberry_pi:
        warnings.append(
            "coralpi_accelerator: pcie on a board that is not a Raspberry Pi "
            f"({target.board or 'unknown board'}): make sure it has an M.2/PCIe slot the "
            "Coral card fits; no boot configuration is written"
        )
        header = headers.get(target.arch)
        if header is None:
            raise _Unsupported(
                f"coralpi_accelerator: pcie on {target.arch}: no kernel headers package is "
                "known for it, so the gasket driver cannot be built (use a USB accelerator)"
            )
        decision = PcieDecision(
            None,
            "[all]",
            (),
            None,
            (header,),
            str(accel["driver_package"]),
            str(accel["driver_version"]),
            str(accel["driver_deb"]),
            "no",
            f"{driver}; headers {header} for {rel.name}'s own kernel",
        )
        return decision, warnings
    found = pcie_board(target.board)
    if found is None:
        boards = ", ".join(accel["boards"])
        raise _Unsupported(
            f"coralpi_accelerator: pcie, but {target.board} has no PCIe lane for a Coral "
            f"(boards with one: {boards}); set coralpi_accelerator: usb for a USB accelerator"
        )
    name, board = found
    if target.family == "ubuntu":
        raise _Unsupported(
            f"coralpi_accelerator: pcie on Ubuntu for Raspberry Pi ({target.board}): coralpi "
            "only knows Raspberry Pi OS's boot layout (kernel=kernel8.img and the "
            "linux-headers-rpi-* flavours); Ubuntu boots its own kernel and initramfs (no "
            "kernel8.img: that line would leave the Pi unbootable). Use Raspberry Pi OS "
            "Bookworm or Trixie (64-bit) for an M.2/PCIe Coral"
        )
    # armv7l: a 32-bit userland (kernel8.img and the rpi-v8 headers are arm64's).
    if target.arch == "armv7l" or rel.name not in accel["releases"]:
        raise _Unsupported(
            f"coralpi_accelerator: pcie on {target.describe()}: the M.2/PCIe Coral path "
            "(kernel8.img, linux-headers-rpi-v8) needs 64-bit Raspberry Pi OS "
            f"{' or '.join(accel['releases'])}"
        )
    kernel = str(board["kernel"])
    header = headers[kernel]
    lines = tuple(str(line) for line in board["config_lines"])
    switch = (
        f"; it boots {kernel} instead of its default {board['default_kernel']}"
        if kernel != board["default_kernel"]
        else ""
    )
    where = (
        f"config.txt lines under [all] in {rel.boot_config}: {', '.join(lines)} ({board['why']})"
        if lines
        else f"nothing to write in config.txt ({board['why']})"
    )
    decision = PcieDecision(
        rel.boot_config,
        "[all]",
        lines,
        kernel,
        (header,),
        str(accel["driver_package"]),
        str(accel["driver_version"]),
        str(accel["driver_deb"]),
        "when config.txt changes" if lines else "no",
        f"{name}: {where}{switch}; {driver}; headers {header} (the {kernel} flavour, so "
        "a kernel upgrade brings its headers and DKMS rebuilds the driver); a changed "
        "config.txt needs a reboot (coralpi_allow_reboot) before the driver can be checked",
    )
    return decision, warnings


def _board_release_check(target: Target, rel: Release) -> None:
    """Refuse a release older than the oldest one that boots the host's board."""
    board = board_for(target.board)
    if board is None:
        return
    oldest_name = board.oldest.get(rel.family)
    if oldest_name is None:
        raise _Unsupported(f"the {board.name} has no supported {rel.family} release")
    oldest = load_matrix().releases[oldest_name]
    if rel.order < oldest.order:
        raise _Unsupported(
            f"the {board.name} ({target.board}) needs {oldest.name} ({rel.family} "
            f"{oldest.version}) or later; {rel.name} does not boot it"
        )


def _controller_decision(target: Target) -> ControllerDecision:
    lines = load_matrix().ansible_lines
    able = [ln for ln in lines if _python_in(target.python, ln.target_python)]
    if not able:
        raise _Unsupported(f"no ansible-core release manages python {target.python} targets")
    low, high = able[0], able[-1]
    spec = f">={low.line}"
    if high is not lines[-1]:
        major, minor = version_tuple(high.line)
        spec += f",<{major}.{minor + 1}"
    span = low.line if low is high else f"{low.line} to {high.line}"
    ctl_low = min((ln.controller_python[0] for ln in able), key=version_tuple)
    ctl_high = max((ln.controller_python[1] for ln in able), key=version_tuple)
    reason = (
        f"python {target.python} targets are managed by ansible-core {span} "
        f"(controller python {ctl_low} to {ctl_high})"
    )
    if high is not lines[-1]:
        reason += (
            f"; newer ansible-core cannot manage python {target.python}: the controller needs "
            f"ansible-core{spec} (pip install 'ansible-core{spec}' on a controller python "
            f"{high.controller_python[0]} to {high.controller_python[1]})"
        )
    return ControllerDecision(spec, reason)


def _venv_decision(ctx: _Ctx, sel: _Selection, site: list[str], pypi_extras: bool) -> VenvDecision:
    target, rel = ctx.target, ctx.release
    cfg: Mapping[str, Any] = load_matrix().venv
    parts = []
    if rel.pep668 and ctx.system_python:
        parts.append(
            f"{rel.name} marks its python externally managed (PEP 668): pip only in a venv"
        )
    else:
        parts.append("a venv keeps the inference runtime apart from the system python")
    if site:
        parts.append(f"system site packages so the release's {', '.join(site)} are visible in it")
    else:
        parts.append("nothing comes from Debian's python modules: an isolated venv")
    needed = Version(_pip_for_tag(sel.tag))
    if pypi_extras:
        needed = max(needed, Version(str(cfg["pip_for_tag"]["manylinux2014"])))
    upgrade: str | None = None
    if not ctx.system_python or Version(rel.venv_pip) < needed:
        table: Mapping[str, str] = cfg["pip_upgrade"]
        upgrade = table.get(target.python, table["default"])
        have = f"pip {rel.venv_pip}" if ctx.system_python else "an unknown pip"
        parts.append(
            f"python -m venv gives {have}, and the wheels need pip >= {needed} "
            f"(manylinux tags): the venv's pip is upgraded first to '{upgrade}' "
            "(its wheel is pushed with the others)"
        )
    return VenvDecision(
        path=str(cfg["path"]),
        system_site_packages=bool(site),
        pip=upgrade,
        reason="; ".join(parts),
    )


def _resolve(target: Target, choices: Choices) -> Plan:
    m = load_matrix()
    rel = m.releases.get(target.codename)
    if rel is None:
        raise _Unsupported(
            f"unknown release {target.codename!r} (supported: {', '.join(m.releases)})"
        )
    if target.os_id not in rel.os_ids:
        raise ConfigError(
            f"os_id {target.os_id!r} does not match release {rel.name} "
            f"(expected one of {', '.join(rel.os_ids)})"
        )
    _board_release_check(target, rel)
    ctx = _Ctx(target, choices, rel, system_python=target.python == rel.python)
    opencv_cfg: Mapping[str, Any] = m.opencv_pip
    # A host no runtime can serve is refused as such before its choices are judged.
    numpy_extra = _opencv_numpy_floor(target) if choices.opencv == "pip" else ""
    sel = _select(ctx, numpy_extra)
    if choices.opencv == "apt" and not ctx.system_python:
        raise ConfigError(
            f"coralpi_opencv: 'apt' needs {rel.name}'s own python {rel.python}, but this host's "
            f"python is {target.python}: use coralpi_opencv: pip"
        )
    if (
        choices.opencv == "pip"
        and target.arch not in opencv_cfg["archs"]
        and not (choices.pip_index_url)
    ):
        raise ConfigError(
            f"coralpi_opencv: 'pip' on {target.arch} needs coralpi_pip_index_url (a "
            "piwheels-style index): PyPI has no armv7l OpenCV wheels; use coralpi_opencv: apt "
            "(Debian's python3-opencv) or set the index"
        )
    notes: list[str] = []
    warnings: list[str] = []
    apt: list[str] = ["python3-venv"] if ctx.system_python else []
    pip: list[str] = [f"{sel.wheel.package}=={sel.wheel.version}"]
    site: list[str] = []
    pypi_extras = False
    if sel.numpy.source == "apt":
        apt.append("python3-numpy")
        site.append("python3-numpy")
    else:
        pip.append(f"numpy{sel.numpy.constraint}")
        pypi_extras = True
    if ctx.system_python:
        apt.append("python3-pil")
        site.append("python3-pil")
        notes.append(
            f"pillow: {rel.name}'s python3-pil ({rel.pillow}); Pillow has no numpy ABI tie"
        )
    elif target.arch in m.pillow_pypi_archs or choices.pip_index_url:
        pip.append("Pillow")
        pypi_extras = True
        notes.append(f"pillow: from pip: Debian's python3-pil is built for python {rel.python}")
    else:
        raise _Unsupported(
            f"Pillow for python {target.python} on {target.arch}: Debian's is for python "
            f"{rel.python} and PyPI has no {target.arch} wheels (set coralpi_pip_index_url)"
        )
    opencv, ld_preload, ld_reason = _opencv_decision(ctx)
    if opencv.source == "apt":
        apt.append(opencv.package)
        site.append(opencv.package)
    else:
        pip.append(f"{opencv.package}=={opencv.version}")
        pypi_extras = True
    if ld_preload is not None:
        apt.append(str(opencv_cfg["armv7l_ld_preload_apt"]))
    acc_notes, acc_warnings = _accelerator_notes(ctx)
    notes.extend(acc_notes)
    warnings.extend(acc_warnings)
    pcie = None
    if choices.accelerator == "pcie":
        pcie, pcie_warnings = _pcie_decision(ctx)
        warnings.extend(pcie_warnings)
    if not sel.wheel.tpu_proven and sel.wheel.origin == "community":
        warnings.append(
            f"{sel.wheel.package} {sel.wheel.version} (a community build) with the Edge TPU is "
            f"{sel.wheel.tpu} (Frigate ships it with libedgetpu {sel.release.version}), not proven "
            "here: if the delegate does not load, the smoke test runs on the CPU only"
        )
    elif not sel.wheel.tpu_proven:
        warnings.append(
            f"{sel.wheel.package} {sel.wheel.version} with the Edge TPU is {sel.wheel.tpu} "
            "(Frigate's detector and users load libedgetpu through it), not proven here: if the "
            f"delegate does not load, the smoke test runs on the CPU only (python {target.python} "
            "has no tflite-runtime wheel)"
        )
    if rel.note:
        notes.append(f"release: {rel.name}: {rel.note}")
    venv = _venv_decision(ctx, sel, site, pypi_extras)
    if venv.pip is not None:
        pip.insert(0, venv.pip)
    pairing = (
        f"paired by TensorFlow version with {sel.wheel.package} {sel.wheel.version}: "
        f"{sel.release_why}"
    ) + "".join(f"; not {note}" for note in sel.sources_passed_over)
    return Plan(
        target=target,
        choices=choices,
        runtime=_runtime_decision(sel, ctx, pairing),
        python_runtime=_python_runtime_decision(sel, ctx),
        numpy=sel.numpy,
        opencv=opencv,
        ld_preload=ld_preload,
        ld_preload_reason=ld_reason,
        camera=_camera_decision(ctx),
        venv=venv,
        apt_packages=tuple(_dedupe(apt)),
        pip_requirements=tuple(_dedupe(pip)),
        controller=_controller_decision(target),
        notes=tuple(notes),
        warnings=tuple(warnings),
        sources=_plan_sources(sel, ctx),
        pcie=pcie,
    )


def _plan_sources(sel: _Selection, ctx: _Ctx) -> tuple[FactSource, ...]:
    """Where each matrix row this plan used was read, and when."""
    m = load_matrix()
    rel, wheel, source = ctx.release, sel.wheel, sel.source
    rows = [
        FactSource(f"release {rel.name}", rel.source, rel.checked),
        FactSource(f"python runtime {wheel.package}", wheel.source, wheel.checked),
        FactSource(f"runtime source {source.name}", source.source, source.checked),
    ]
    for good in sel.release.known_good:
        rows.append(FactSource(f"known-good pair {good.package} {good.version}", good.source, ""))
    board = board_for(ctx.target.board)
    if board is not None:
        rows.append(FactSource(f"board {board.name}", board.source, board.checked))
    accel: Mapping[str, Any] = m.accelerators[ctx.choices.accelerator]
    rows.append(
        FactSource(
            f"accelerator {ctx.choices.accelerator}", str(accel["source"]), str(accel["checked"])
        )
    )
    variant: Mapping[str, Any] = m.variants[ctx.choices.runtime]
    rows.append(
        FactSource(
            f"variant {ctx.choices.runtime}", str(variant["source"]), str(variant["checked"])
        )
    )
    for name in ("numpy_pypi", "opencv_pip", "venv"):
        table: Mapping[str, Any] = load_matrix_data()[name]
        rows.append(FactSource(name, str(table["source"]), str(table["checked"])))
    return tuple(rows)


def _release_target(rel: Release, arch: str, like: Target) -> Target:
    os_id = like.os_id if like.os_id in rel.os_ids else rel.os_ids[0]
    return Target(os_id, rel.name, arch, rel.python, rel.glibc, like.board)


def nearest_working(target: Target, choices: Choices) -> list[str]:
    """Working combinations close to ``target``, nearest first (possibly empty).

    Same architecture first (the same release with its own python, then the nearest
    releases of the same family, then the other family), then the same release on another
    architecture (a 64-bit OS on the same Pi).
    """
    m = load_matrix()
    rel = m.releases.get(target.codename)
    family = rel.family if rel is not None else target.family
    same_arch: list[Target] = []
    if rel is not None and target.python != rel.python:
        same_arch.append(_release_target(rel, target.arch, target))

    def distance(r: Release) -> tuple[int, int]:
        return (abs(r.order - rel.order), -r.order) if rel is not None else (0, -r.order)

    same_family = sorted((r for r in m.releases.values() if r.family == family), key=distance)
    other_family = sorted(
        (r for r in m.releases.values() if r.family != family), key=lambda r: -r.order
    )
    same_arch.extend(
        _release_target(r, target.arch, target)
        for r in [*same_family, *other_family]
        if r is not rel
    )
    other_arch: list[Target] = []
    if rel is not None:
        other_arch = [_release_target(rel, a, target) for a in ARCHS if a != target.arch]
        other_arch.sort(key=lambda t: t.arch != "aarch64")
    found: list[str] = []
    for group in (same_arch, other_arch):
        for candidate in group:
            try:
                _resolve(candidate, choices)
            except _Unsupported:
                continue
            except ConfigError:
                pass  # the host would work; the choices need fixing wherever it runs
            found.append(candidate.describe())
            break
    return found


def resolve(target: Target, choices: Choices) -> Plan:
    """The plan for ``target`` with ``choices``.

    Raises ConfigError for an invalid choice and UnsupportedTarget (with ``nearest``) for a
    host no plan can serve.
    """
    try:
        return _resolve(target, choices)
    except _Unsupported as exc:
        nearest = nearest_working(target, choices)
        raise UnsupportedTarget(
            f"{target.describe()}: {exc}",
            nearest=nearest[0] if nearest else None,
            alternatives=tuple(nearest[1:]),
        ) from None


def release_tag_for(version: str) -> str | None:
    """The tag a libedgetpu release ``version`` is published under ("16.0tf2.19.1-1" ->
    "16.0TF2.19.1-1"), or None when the matrix does not know it or it has none."""
    for source in load_matrix().sources:
        for rel in source.releases:
            if rel.version == version and rel.tag:
                return rel.tag
    return None


def community_release_tag(version: str) -> str | None:
    """The release tag a community Python runtime wheel ``version`` is published under
    ("2.17.1" -> "v2.17.1"), or None when the matrix has no such community wheel."""
    for wheel in load_matrix().wheels:
        if wheel.origin == "community" and wheel.version == version and wheel.release:
            return wheel.release
    return None


def controller_supports(plan: Plan, ansible_core_version: str) -> tuple[bool, str]:
    """Whether a controller running ``ansible_core_version`` can manage the plan's host."""
    spec = SpecifierSet(plan.controller.ansible_core)
    try:
        version = Version(ansible_core_version)
    except InvalidVersion:
        raise ConfigError(
            f"ansible-core version {ansible_core_version!r} is not a version"
        ) from None
    host = plan.target.describe()
    if spec.contains(version, prereleases=True):
        return True, (
            f"ansible-core {version} on this controller can manage {host} "
            f"(needs ansible-core{spec})"
        )
    return False, (
        f"ansible-core {version} on this controller cannot manage {host}: it needs "
        f"ansible-core{plan.controller.ansible_core}, so `coralpi apply` will refuse; run "
        f"coralpi from a venv with pip install 'ansible-core{plan.controller.ansible_core}'"
    )


def platform_target(spec: str) -> Target:
    """`bookworm/aarch64/3.11` (a ``--platform`` value) -> a Target with that release's os
    id and glibc."""
    parts = spec.strip().split("/")
    if len(parts) != 3:
        raise ConfigError(
            f"--platform {spec!r}: expected CODENAME/ARCH/PYVER, e.g. bookworm/aarch64/3.11"
        )
    codename, arch, python = parts
    releases = load_matrix().releases
    rel = releases.get(codename.lower())
    if rel is None:
        raise ConfigError(
            f"--platform {spec!r}: unknown release {codename!r} "
            f"(known: {', '.join(sorted(releases))})"
        )
    return Target(rel.os_ids[0], rel.name, arch, python.removeprefix("python"), rel.glibc)
