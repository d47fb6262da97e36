"""Download once, install the same bytes everywhere.

For each distinct target platform of a fleet (codename / arch / Python + the choices that
change the files) this module finds, downloads, checks and records:

- the wheels of the plan's ``pip_requirements`` for that exact platform
  (:mod:`provision.artifacts.wheels`; numpy left out when the plan takes it from apt),
- both community runtime .debs (std and max, so switching needs no new download) when the
  plan's runtime source is ``community-deb``,
- the Coral apt signing key, checked by fingerprint and turned into a binary keyring
  (:mod:`provision.artifacts.keyring`) when the Coral apt source is used,
- the smoke-test assets verify needs, from commit-pinned URLs with fixed sha256 pins,
- the ansible-core wheel a first-boot bundle or golden image runs on the Pi itself
  (:mod:`provision.artifacts.pi_ansible`), for every platform such a bundle can serve.

``build_lock()`` writes what it found into a :class:`~provision.artifacts.lockfile.Lock`;
``fetch_lock()`` fills a cache from a lock; ``ensure_host_artifacts()`` gives the apply
command one host's :class:`HostArtifacts` (the ``artifacts`` mapping of docs/DESIGN.md
section 1 once written out), resolving each platform once per process however many hosts
share it. Every function here reads the typed :class:`~provision.planning.plan.Plan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from provision import files
from provision.artifacts import (
    coral_repo,
    debinfo,
    downloads,
    elf_needs,
    keyring,
    lockfile,
    pi_ansible,
    verify_package,
    wheels,
)
from provision.artifacts.cache import ArtifactCache, ArtifactError, HashMismatch
from provision.artifacts.downloads import Source
from provision.artifacts.lockfile import Artifact, Lock, PlatformInputs, PlatformLock
from provision.planning.kinds import fill_template
from provision.planning.matrix import community_release_tag, load_matrix, release_tag_for
from provision.planning.plan import Plan
from provision.planning.variables import BY_NAME, parse_bool
from provision.redaction import credentials_of, without_credentials
from verify.assets import PINNED as ASSET_PINS
from verify.assets import SMOKE_FILES

DEFAULT_CORAL_REPO_URL = BY_NAME["coralpi_coral_repo_url"].default
DEFAULT_COMMUNITY_RUNTIME_URL = BY_NAME["coralpi_community_runtime_url"].default
DEFAULT_COMMUNITY_WHEEL_URL = BY_NAME["coralpi_community_wheel_url"].default
DEFAULT_GASKET_DKMS_URL = BY_NAME["coralpi_gasket_dkms_url"].default
#: How a community tflite_runtime wheel's lock entry starts its reason (and is told apart
#: from the wheels an index serves: it is pinned by file name too, as the .debs are).
COMMUNITY_WHEEL_REASON = "python_runtime (community wheel): "
DEFAULT_ASSETS_URL = BY_NAME["coralpi_assets_url"].default
KEYRING_NAME = "coral-archive-keyring.gpg"

#: The inventory setting each kind of artifact's URL comes from (named in errors).
COMMUNITY_WHEEL_SETTING = "coralpi_community_wheel_url"
SETTING_FOR_KIND = {
    "wheel": "coralpi_pip_index_url",
    "deb": "coralpi_community_runtime_url",
    "apt-key": "coralpi_coral_repo_url",
    "asset": "coralpi_assets_url",
}


@dataclass(frozen=True)
class ArtifactSettings:
    """The inventory variables (docs/DESIGN.md section 2) that decide where files come from."""

    coral_repo_url: str = DEFAULT_CORAL_REPO_URL
    community_runtime_url: str = DEFAULT_COMMUNITY_RUNTIME_URL
    community_wheel_url: str = DEFAULT_COMMUNITY_WHEEL_URL
    gasket_dkms_url: str = DEFAULT_GASKET_DKMS_URL
    assets_url: str = DEFAULT_ASSETS_URL
    pip_index_url: str = ""
    coral_key_fingerprints: tuple[str, ...] = keyring.DEFAULT_CORAL_FINGERPRINTS
    #: True/False forces the Coral apt source on/off; None: on when the runtime comes from it.
    coral_source_enabled: bool | None = None
    #: Controller-side, not inventory variables: cache root (None: the default, see
    #: provision.artifacts.cache) and the lock file that pins files (None: no lock).
    cache_dir: Path | None = None
    lock_file: Path | None = None
    #: Extra sha256 pins, keyed by URL or by file name: how a file served over plain http
    #: (a LAN mirror) is trusted before it is in the lock (`coralpi lock --pin`).
    pins: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_vars(
        cls,
        variables: Mapping[str, Any],
        cache_dir: str | Path | None = None,
        lock_file: str | Path | None = None,
        pins: Mapping[str, str] | None = None,
    ) -> ArtifactSettings:
        def text(name: str, default: str) -> str:
            value = variables.get(name)
            return default if value in (None, "") else str(value).strip()

        fprs_raw = variables.get("coralpi_coral_key_fingerprints")
        if fprs_raw in (None, "", []):
            fprs = keyring.DEFAULT_CORAL_FINGERPRINTS
        elif isinstance(fprs_raw, str):
            fprs = tuple(f for f in fprs_raw.replace(",", " ").split() if f)
        elif isinstance(fprs_raw, Sequence):
            fprs = tuple(str(f) for f in fprs_raw)
        else:
            raise ArtifactError(
                f"coralpi_coral_key_fingerprints: {fprs_raw!r} is not a list of fingerprints"
            )
        fprs = tuple(keyring.normalize_fingerprint(f) for f in fprs)
        enabled = variables.get("coralpi_coral_source_enabled")
        if enabled is not None:
            enabled = parse_bool("coralpi_coral_source_enabled", enabled)
        return cls(
            coral_repo_url=text("coralpi_coral_repo_url", DEFAULT_CORAL_REPO_URL),
            community_runtime_url=text(
                "coralpi_community_runtime_url", DEFAULT_COMMUNITY_RUNTIME_URL
            ),
            community_wheel_url=text("coralpi_community_wheel_url", DEFAULT_COMMUNITY_WHEEL_URL),
            gasket_dkms_url=text("coralpi_gasket_dkms_url", DEFAULT_GASKET_DKMS_URL),
            assets_url=text("coralpi_assets_url", DEFAULT_ASSETS_URL),
            pip_index_url=text("coralpi_pip_index_url", ""),
            coral_key_fingerprints=fprs,
            coral_source_enabled=enabled,
            cache_dir=Path(cache_dir) if cache_dir else None,
            lock_file=Path(lock_file) if lock_file else None,
            pins=tuple(sorted((k, v.lower()) for k, v in (pins or {}).items())),
        )

    @property
    def key_url(self) -> str:
        return self.coral_repo_url.rstrip("/") + "/doc/apt-key.gpg"


def as_settings(settings: ArtifactSettings | Mapping[str, Any] | None) -> ArtifactSettings:
    if settings is None:
        return ArtifactSettings()
    if isinstance(settings, ArtifactSettings):
        return settings
    return ArtifactSettings.from_vars(settings)


# ------------------------------------------------------------ plan -> inputs (pure)


def runtime_debs(plan: Plan) -> dict[str, str]:
    """``{"std": file name, "max": file name}`` of the community runtime, or {}."""
    runtime = plan.runtime
    if runtime.source != "community-deb":
        return {}
    filename, package, other = runtime.deb_filename, runtime.package, runtime.conflicts
    if not filename or not package.startswith("libedgetpu1-") or not other:
        raise ArtifactError(
            "plan: runtime.source is community-deb but deb_filename/package/conflicts are unset"
        )
    variant = package.rsplit("-", 1)[1]
    other_variant = other.rsplit("-", 1)[1]
    if package not in filename:
        raise ArtifactError(f"plan: runtime.deb_filename {filename!r} does not name {package}")
    return {variant: filename, other_variant: filename.replace(package, other, 1)}


def platform_inputs(plan: Plan, settings: ArtifactSettings) -> PlatformInputs:
    target = plan.target
    return PlatformInputs(
        codename=target.codename,
        arch=target.arch,
        python=target.python,
        opencv=plan.choices.opencv,
        python_tag=plan.python_runtime.python_tag,
        platform_tags=plan.python_runtime.platform_tags,
        pip_requirements=plan.pip_requirements,
        numpy_source=plan.numpy.source,
        pip_index_url=without_credentials(plan.choices.pip_index_url or settings.pip_index_url),
        runtime_source=plan.runtime.source,
        runtime_debs=tuple(sorted(runtime_debs(plan).values())),
        python_runtime_origin=plan.python_runtime.origin,
    )


def needs_coral_key(plan: Plan, settings: ArtifactSettings) -> bool:
    if settings.coral_source_enabled is not None:
        return settings.coral_source_enabled
    # The PCIe driver is the community gasket-dkms .deb (Coral's own does not build on 6.12
    # kernels), so only the runtime decides.
    return plan.runtime.source == "coral-apt"


def driver_deb_url(plan: Plan, settings: ArtifactSettings) -> str | None:
    """Where the PCIe driver .deb of ``plan`` comes from, or None (no PCIe Coral)."""
    if plan.pcie is None:
        return None
    return f"{settings.gasket_dkms_url.rstrip('/')}/{plan.pcie.driver_deb}"


def resolve_driver_deb(
    plan: Plan, settings: ArtifactSettings, cache: ArtifactCache, pins: Mapping[str, str]
) -> Artifact:
    """Download the PCIe driver .deb (one for every platform: arch all) and record it."""
    assert plan.pcie is not None
    url = driver_deb_url(plan, settings) or ""
    name = plan.pcie.driver_deb
    got = downloads.fetch(
        cache, Source("deb", name, url, _pin(pins, url, name), "coralpi_gasket_dkms_url")
    )
    return Artifact(
        "deb",
        name,
        plan.pcie.driver_version,
        url,
        got.sha256,
        got.size,
        f"pcie driver: {plan.pcie.driver_package} {plan.pcie.driver_version}, built by DKMS "
        "on the host for each kernel whose headers are installed",
    )


def runtime_deb_url(base: str, version: str, name: str) -> str:
    """``<base>/<file>`` (a flat mirror), or ``<base>`` with ``{release}`` filled with the
    release tag the runtime ``version`` is published under (feranick's GitHub layout)."""
    return release_url(base, release_tag_for(version) or version, name)


def release_url(base: str, tag: str, name: str) -> str:
    """``<base>/<file>`` (a flat mirror), or ``<base>`` with ``{release}`` filled with ``tag``."""
    if "{release}" in base:
        return f"{fill_template(base, release=tag).rstrip('/')}/{name}"
    return f"{base.rstrip('/')}/{name}"


def community_wheel_url(plan: Plan, settings: ArtifactSettings) -> str | None:
    """Where the plan's community tflite_runtime wheel comes from, or None (a PyPI wheel)."""
    py = plan.python_runtime
    if py.origin != "community":
        return None
    if not py.wheel_file or not py.release_tag:
        raise ArtifactError(
            "plan: python_runtime.origin is community but wheel_file/release_tag are unset"
        )
    return release_url(settings.community_wheel_url, py.release_tag, py.wheel_file)


def resolve_community_wheel(
    plan: Plan, settings: ArtifactSettings, cache: ArtifactCache, pins: Mapping[str, str]
) -> tuple[Artifact, Path]:
    """Download the plan's community wheel (pinned by the lock, else trusted on first use
    over https) and record it."""
    py = plan.python_runtime
    url = community_wheel_url(plan, settings) or ""
    got = downloads.fetch(
        cache,
        Source(
            "wheel", py.wheel_file, url, _pin(pins, url, py.wheel_file), COMMUNITY_WHEEL_SETTING
        ),
    )
    metadata = wheels.wheel_metadata(got.path)
    name, version = str(metadata.get("Name", "")), str(metadata.get("Version", ""))
    if canonicalize_name(name) != canonicalize_name(py.package) or version != py.version:
        raise ArtifactError(
            f"{py.wheel_file} ({url}) holds {name or '(no name)'} {version or '(no version)'}, "
            f"not {py.package} {py.version}: check coralpi_community_wheel_url serves the "
            "community release the plan names, then run `coralpi lock` again"
        )
    art = Artifact(
        "wheel",
        py.wheel_file,
        py.version,
        url,
        got.sha256,
        got.size,
        f"{COMMUNITY_WHEEL_REASON}{py.reason}",
    )
    return art, got.path


def wheel_requires(path: Path, plan: Plan) -> list[str]:
    """The Requires-Dist of a wheel file that apply on the plan's target."""
    metadata = wheels.wheel_metadata(path)
    env = wheels.target_environment(plan.target.python, plan.target.arch)
    return [str(r) for r in wheels.dependencies_of(metadata.get_all("Requires-Dist") or [], env)]


def asset_url(base: str, commit: str, name: str) -> str:
    """``<base>/<commit>/<file>`` (Coral's test_data layout), or a ``{commit}/{file}`` template."""
    if "{file}" in base:
        return fill_template(base, commit=commit, file=name)
    return f"{base.rstrip('/')}/{commit}/{name}"


def asset_artifacts(settings: ArtifactSettings) -> list[Artifact]:
    """The smoke-test files verify uses; their pins are fixed, nothing to discover."""
    roles = {
        "mobilenet_v2_1.0_224_inat_bird_quant.tflite": "CPU model",
        "mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite": "Edge TPU model",
        "inat_bird_labels.txt": "labels",
        "parrot.jpg": "test image",
    }
    out = []
    for name in SMOKE_FILES:
        pin = ASSET_PINS[name]
        out.append(
            Artifact(
                kind="asset",
                name=name,
                version=pin.commit,
                url=asset_url(settings.assets_url, pin.commit, name),
                sha256=pin.sha256,
                size=pin.size,
                reason=f"verify: smoke-test {roles.get(name, 'file')}, "
                f"pinned to google-coral/test_data commit {pin.commit[:12]}",
            )
        )
    return out


# ------------------------------------------------------------ resolving (network)


def _pin(pins: Mapping[str, str], url: str, name: str) -> str | None:
    """The pin for a file: by its URL (as the lock records it) or by its file name."""
    return pins.get(url) or pins.get(name)


def _pins(base: Mapping[str, str], settings: ArtifactSettings) -> dict[str, str]:
    return {**base, **dict(settings.pins)}


def lock_pins(lock: Lock) -> dict[str, str]:
    """A lock's pins by URL, plus its runtime .debs by file name (so a new mirror of the
    same files is trusted with the same hashes)."""
    pins = lock.pins()
    for art in lock.all_artifacts():
        if art.kind == "deb" or _is_community_wheel(art):
            pins.setdefault(art.name, art.sha256)
    return pins


def _is_community_wheel(art: Artifact) -> bool:
    return art.kind == "wheel" and art.reason.startswith(COMMUNITY_WHEEL_REASON)


def _source(art: Artifact, *, signature_checked: bool = False) -> Source:
    return Source(
        kind=art.kind,
        name=art.name,
        url=art.url,
        sha256=art.sha256,
        setting=COMMUNITY_WHEEL_SETTING if _is_community_wheel(art) else SETTING_FOR_KIND[art.kind],
        signature_checked=signature_checked,
        size=art.size,
    )


def _wheel_reason(plan: Plan, name: str, res: wheels.Resolution, inputs: PlatformInputs) -> str:
    opencv = plan.opencv
    parents = sorted(p for p in res.required_by.get(name, set()) if p)
    if name == canonicalize_name(plan.python_runtime.package):
        reason = f"python_runtime: {plan.python_runtime.reason}"
    elif opencv.source == "pip" and name == canonicalize_name(opencv.package):
        reason = f"opencv: {opencv.reason}"
    elif "" in res.required_by.get(name, set()):
        reason = f"pip_requirements of the plan for {inputs.id}"
    else:
        reason = f"dependency of {', '.join(parents)} on {inputs.id}"
    left_out = res.excluded_by.get(name)
    if left_out:
        reason += (
            f"; its {', '.join(left_out)} is met by Debian's python3-numpy "
            f"(numpy.source apt: {plan.numpy.reason})"
        )
    return reason


def login_index(inputs: PlatformInputs, settings: ArtifactSettings | None) -> str:
    """The platform's extra index with the login the settings give for it (the lock and the
    plan record it without)."""
    given = settings.pip_index_url if settings is not None else ""
    if given and without_credentials(given) == inputs.pip_index_url:
        return given
    return inputs.pip_index_url


def target_libs(plan: Plan) -> elf_needs.TargetLibs:
    """What the plan's target has in glibc / libstdc++: the probed levels where the probe
    read them, else the release's own (matrix.toml)."""
    target = plan.target
    rel = load_matrix().releases.get(target.codename)
    glibcxx = target.glibcxx or (rel.glibcxx if rel is not None else None)
    cxxabi = target.cxxabi or (rel.cxxabi if rel is not None else None)
    probed = target.glibcxx is not None
    source = f"{target.codename} {target.arch}" + (
        "" if probed else " (its release's levels per matrix.toml)"
    )
    return elf_needs.TargetLibs(target.glibc, glibcxx, cxxabi, source)


def wheel_needs_checked(art: Artifact, path: Path, plan: Plan, inputs: PlatformInputs) -> Artifact:
    """The wheel artifact with its ELF needs read from ``path`` (if not recorded yet),
    refused when the plan's target cannot meet them."""
    if art.needs is None:
        art = dataclasses.replace(art, needs=elf_needs.render(elf_needs.wheel_needs(path)))
    check_recorded_needs(art, plan, inputs)
    return art


def check_recorded_needs(art: Artifact, plan: Plan, inputs: PlatformInputs) -> None:
    """Refuse a wheel whose recorded needs the target cannot meet (nothing recorded:
    nothing to check; `coralpi lock` records them)."""
    if art.kind == "wheel" and art.needs is not None:
        elf_needs.check_wheel(art.name, elf_needs.parse(art.needs), target_libs(plan), inputs.id)


#: uname -m of a target -> its dpkg architecture (what a .deb's Architecture must say).
DPKG_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}


def deb_checked(art: Artifact, path: Path | None, plan: Plan) -> Artifact:
    """The runtime .deb artifact with its own control fields read from ``path`` (if not
    recorded yet), refused when they do not fit the plan's target: another package than
    its file name says, another architecture, or a libc6 the host does not have."""
    if art.deb is None:
        if path is None:
            return art
        art = dataclasses.replace(art, deb=debinfo.read_deb(path))
    deb = art.deb
    assert deb is not None
    target = plan.target
    problems = []
    named = art.name.split("_", 1)[0]
    if deb.package != named:
        problems.append(f"it is package {deb.package or '(none)'}, its file name says {named}")
    problems += debinfo.unmet(
        deb, dpkg_arch=DPKG_ARCH.get(target.arch, target.arch), glibc=target.glibc
    )
    if problems:
        raise debinfo.DebError(
            f"{art.name} ({art.url}) does not fit {target.describe()}: "
            + "; ".join(problems)
            + ". Check coralpi_community_runtime_url (coralpi_coral_repo_url for Coral's own "
            ".debs) serves the build for this release and architecture (`coralpi plan` names "
            "the file), then run `coralpi lock` again."
        )
    return art


def resolve_platform(
    plan: Plan,
    settings: ArtifactSettings,
    cache: ArtifactCache,
    pins: Mapping[str, str],
) -> PlatformLock:
    """Find and download every file one platform needs; record what was found."""
    inputs = platform_inputs(plan, settings)
    index = login_index(inputs, settings)
    spec = wheels.WheelSpec(
        python=inputs.python,
        python_tag=inputs.python_tag,
        platform_tags=inputs.platform_tags,
        arch=inputs.arch,
        extra_index_url=index,
    )
    arts: list[Artifact] = []
    # The runtime .debs first: an unreachable mirror shows before any index work.
    runtime = plan.runtime
    for variant, filename in sorted(runtime_debs(plan).items()):
        url = runtime_deb_url(settings.community_runtime_url, runtime.version, filename)
        got = downloads.fetch(
            cache, Source("deb", filename, url, _pin(pins, url, filename), SETTING_FOR_KIND["deb"])
        )
        why = f"runtime: {runtime.reason}"
        if not runtime.package.endswith(f"-{variant}"):
            why += f" ({variant}: kept ready so switching std/max needs no new download)"
        art = Artifact("deb", filename, runtime.version, url, got.sha256, got.size, why)
        arts.append(deb_checked(art, got.path, plan))
    requirements = list(inputs.pip_requirements)
    runtime_deps: set[str] = set()
    if plan.python_runtime.origin == "community":
        # The runtime's own file comes from its release; pip resolves what it requires.
        art, path = resolve_community_wheel(plan, settings, cache, pins)
        arts.append(wheel_needs_checked(art, path, plan, inputs))
        runtime_name = _project(plan.python_runtime.package)
        requirements = [r for r in requirements if _project(r) != runtime_name]
        deps = wheel_requires(path, plan)
        runtime_deps = {_project(r) for r in deps} - {_project(r) for r in requirements}
        requirements += deps
    exclude = ["numpy"] if inputs.numpy_source == "apt" else []
    res = wheels.resolve(spec, requirements, exclude)
    for wheel in res.wheels:
        got = wheels.fetch(cache, wheel, pins, index)
        reason = _wheel_reason(plan, wheel.name, res, inputs)
        if wheel.name in runtime_deps:
            reason = f"dependency of {plan.python_runtime.package} (community wheel) on {inputs.id}"
        art = Artifact(
            "wheel",
            wheel.filename,
            wheel.version,
            wheel.url,
            got.sha256,
            got.size,
            reason,
        )
        arts.append(wheel_needs_checked(art, got.path, plan, inputs))
    return PlatformLock(inputs, tuple(sorted(arts, key=Artifact.sort_key)))


def _project(requirement: str) -> str:
    """The canonical project name a requirement string names."""
    return str(canonicalize_name(Requirement(requirement).name))


def resolve_coral_key(
    settings: ArtifactSettings, cache: ArtifactCache, pins: Mapping[str, str]
) -> Artifact:
    """Download the Coral key file, check its fingerprints, and record it."""
    url = settings.key_url
    got = downloads.fetch(
        cache,
        Source(
            "apt-key",
            "apt-key.gpg",
            url,
            pins.get(url),
            SETTING_FOR_KIND["apt-key"],
            signature_checked=True,
        ),
    )
    data = got.path.read_bytes()
    _, matched = keyring.build_keyring(data, settings.coral_key_fingerprints, url)
    untrusted = keyring.untrusted_accepted(data, settings.coral_key_fingerprints)
    return Artifact(
        kind="apt-key",
        name="apt-key.gpg",
        version=" ".join(matched),
        url=url,
        sha256=got.sha256,
        size=got.size,
        reason="coral apt source: key file holds accepted fingerprint(s) "
        + ", ".join(matched)
        + (f"; not trusted: {'; '.join(untrusted)}" if untrusted else ""),
    )


# ------------------------------------------------------------ materializing (cache -> dirs)


def _fetch_art(cache: ArtifactCache, art: Artifact) -> Path:
    return downloads.fetch(cache, _source(art, signature_checked=art.kind == "apt-key")).path


def keyring_path(cache: ArtifactCache, art: Artifact, accepted: Iterable[str]) -> Path:
    """The binary keyring derived from the pinned key file (fingerprints checked again)."""
    return checked_keyring(cache, art, accepted)[0]


def checked_keyring(
    cache: ArtifactCache, art: Artifact, accepted: Iterable[str]
) -> tuple[Path, tuple[str, ...]]:
    """The binary keyring of the pinned key file and the accepted fingerprints it holds
    (what the host's signed-by keyring is judged by: the plan's
    ``artifacts.coral_key_fingerprints``)."""
    dest = cache.root / "keyring" / art.sha256 / KEYRING_NAME
    key_file = _fetch_art(cache, art)
    data, matched = keyring.build_keyring(key_file.read_bytes(), list(accepted), art.url)
    if not dest.is_file() or dest.read_bytes() != data:
        files.write_atomic(dest, data)
    return dest, tuple(matched)


def platform_dirs(
    cache: ArtifactCache, plat: PlatformLock, settings: ArtifactSettings | None = None
) -> tuple[Path, dict[str, Path]]:
    """Fetch one platform's pinned files; return (wheels dir, {"std"/"max": deb path}).

    With ``settings``, runtime .debs come from its ``community_runtime_url`` (a mirror
    chosen after the lock was written serves the same pinned files).
    """
    index = login_index(plat.inputs, settings)
    wheel_files = [
        _fetch_art(cache, dataclasses.replace(a, url=_wheel_fetch_url(a, index, settings)))
        for a in plat.artifacts
        if a.kind == "wheel"
    ]
    wheels_dir = cache.link_into(cache.root / "platform" / plat.inputs.slug / "wheels", wheel_files)
    debs: dict[str, Path] = {}
    for art in plat.artifacts:
        if art.kind == "deb":
            if settings is not None:
                art = dataclasses.replace(art, url=runtime_deb_mirror_url(plat, art, settings))
            variant = art.name.split("_", 1)[0].rsplit("-", 1)[-1]
            debs[variant] = _fetch_art(cache, art)
    return wheels_dir, debs


def _wheel_fetch_url(art: Artifact, index: str, settings: ArtifactSettings | None) -> str:
    """Where a locked wheel is fetched from: a community wheel from the settings'
    ``community_wheel_url`` (a mirror chosen after locking serves the pinned file), any
    other from its index URL with the index's login."""
    if settings is not None and _is_community_wheel(art):
        tag = community_release_tag(art.version) or f"v{art.version}"
        return release_url(settings.community_wheel_url, tag, art.name)
    return credentials_of(art.url, index)


def runtime_deb_mirror_url(plat: PlatformLock, art: Artifact, settings: ArtifactSettings) -> str:
    """Where a locked runtime .deb is fetched from with these settings: a community .deb
    from ``coralpi_community_runtime_url``, one of Coral's repository from the same pool
    path under ``coralpi_coral_repo_url`` (a mirror chosen after locking serves the pinned
    file)."""
    if plat.inputs.runtime_source == "coral-apt":
        pool = art.url.find("/pool/")
        if pool < 0:
            return art.url
        return f"{settings.coral_repo_url.rstrip('/')}{art.url[pool:]}"
    return runtime_deb_url(settings.community_runtime_url, art.version, art.name)


def coral_debs(
    plan: Plan,
    settings: ArtifactSettings,
    cache: ArtifactCache,
    pins: Mapping[str, str],
    key_art: Artifact,
) -> list[Artifact]:
    """The runtime .debs of Coral's repository for a coral-apt plan (the planned variant,
    and the other one when its pool has it), their sha256 taken from the signed index
    (:mod:`provision.artifacts.coral_repo`) and the files refused unless they match."""
    runtime = plan.runtime
    repo = settings.coral_repo_url.rstrip("/")
    ring_path, fingerprints = checked_keyring(cache, key_art, _accepted_from(key_art, settings))
    setting = SETTING_FOR_KIND["apt-key"]
    where = coral_repo.inrelease_url(repo)
    inrelease = downloads.fetch(
        cache, Source("apt-index", "InRelease", where, None, setting, signature_checked=True)
    )
    release = coral_repo.verified_release(
        inrelease.path.read_bytes(), ring_path.read_bytes(), where
    )
    debarch = DPKG_ARCH.get(plan.target.arch, plan.target.arch)
    index_path = coral_repo.packages_path(debarch)
    sha, size = coral_repo.release_digest(release, index_path, where)
    index_url = coral_repo.packages_url(repo, debarch)
    index = downloads.fetch(
        cache, Source("apt-index", "Packages", index_url, sha, setting, size=size)
    )
    packages = index.path.read_text(encoding="utf-8", errors="replace")
    arts = []
    for package in (runtime.package, runtime.conflicts):
        planned = package == runtime.package
        try:
            entry = coral_repo.find_entry(packages, package, runtime.version, index_url)
        except coral_repo.CoralIndexError:
            if planned:
                raise
            continue
        url = f"{repo}/{entry.filename}"
        pinned = _pin(pins, url, entry.basename)
        if pinned is not None and pinned.lower() != entry.sha256:
            raise HashMismatch(
                f"{entry.basename}: the lock pins sha256 {pinned.lower()}, the signed index "
                f"{index_url} says {entry.sha256}; refusing both until you check which is right "
                "(`coralpi lock --refresh` trusts the signed index again)"
            )
        try:
            got = downloads.fetch(
                cache, Source("deb", entry.basename, url, entry.sha256, setting, size=entry.size)
            )
        except HashMismatch:
            raise
        except ArtifactError:
            if planned:
                raise
            continue  # the other variant missing from the pool (max for arm64): not needed
        why = (
            f"runtime: {runtime.reason}; sha256 from the signed index of {coral_repo.SUITE} "
            f"(InRelease by {', '.join(fingerprints)})"
        )
        if not planned:
            why += " (kept ready so switching std/max needs no new download)"
        art = Artifact("deb", entry.basename, entry.version, url, got.sha256, got.size, why)
        arts.append(deb_checked(art, got.path, plan))
    return arts


def with_coral_debs(
    plat: PlatformLock,
    plan: Plan,
    settings: ArtifactSettings,
    cache: ArtifactCache,
    pins: Mapping[str, str],
    key_art: Artifact | None,
) -> PlatformLock:
    """A coral-apt platform with its runtime .debs pinned (added to a lock that lacks
    them); any other platform, or one without the Coral key, as it is."""
    if (
        key_art is None
        or plat.inputs.runtime_source != "coral-apt"
        or any(a.kind == "deb" for a in plat.artifacts)
    ):
        return plat
    return PlatformLock(
        plat.inputs, (*plat.artifacts, *coral_debs(plan, settings, cache, pins, key_art))
    )


def runtime_questions(plat: PlatformLock) -> dict[str, tuple[str, ...]]:
    """Boolean debconf questions per runtime variant, from the .debs' own templates."""
    out = {}
    for art in plat.artifacts:
        if art.kind == "deb" and art.deb is not None:
            variant = art.name.split("_", 1)[0].rsplit("-", 1)[-1]
            out[variant] = debinfo.boolean_questions(art.deb)
    return out


def assets_dir(cache: ArtifactCache, arts: Iterable[Artifact]) -> Path:
    files = [_fetch_art(cache, a) for a in arts if a.kind == "asset"]
    return cache.link_into(cache.root / "verify-assets", files)


# ------------------------------------------------------------ lock / fetch / apply


def _accepted_from(art: Artifact, settings: ArtifactSettings | None) -> list[str]:
    """Fingerprints accepted for a recorded key: those the lock recorded (accepted when it
    was written) that the settings still accept; without settings, the recorded ones."""
    recorded = art.version.split()
    if settings is None:
        return recorded
    still = [f for f in settings.coral_key_fingerprints if f in recorded]
    return still or list(settings.coral_key_fingerprints)


def with_artifact_facts(
    cache: ArtifactCache, plat: PlatformLock, plan: Plan, settings: ArtifactSettings | None
) -> PlatformLock:
    """A locked platform with every wheel's ELF needs and every runtime .deb's control
    fields recorded and checked against the plan's target. A lock written before coralpi
    read them gets them now, from the pinned files (the cache, else their URLs,
    sha256-checked as always)."""
    index = login_index(plat.inputs, settings)
    arts = []
    for art in plat.artifacts:
        if art.kind == "deb":
            path = None
            if art.deb is None:
                where = art
                if settings is not None:  # the mirror that serves the pinned file now
                    where = dataclasses.replace(
                        art, url=runtime_deb_mirror_url(plat, art, settings)
                    )
                path = _fetch_art(cache, where)
            art = deb_checked(art, path, plan)
        elif art.kind == "wheel":
            if art.needs is None:
                path = _fetch_art(
                    cache, dataclasses.replace(art, url=credentials_of(art.url, index))
                )
                art = wheel_needs_checked(art, path, plan, plat.inputs)
            else:
                check_recorded_needs(art, plan, plat.inputs)
        arts.append(art)
    return PlatformLock(plat.inputs, tuple(arts))


def build_lock(
    hosts: Sequence[tuple[Plan, ArtifactSettings]],
    cache: ArtifactCache,
    previous: Lock | None = None,
    refresh: bool = False,
    extra_pins: Mapping[str, str] | None = None,
) -> Lock:
    """The lock for a fleet (one (plan, settings) per host).

    Platforms and shared files whose inputs did not change are taken from ``previous``
    unchanged (no network); new ones are resolved, with hashes already in ``previous``
    kept as pins (``refresh`` drops them: trust on first use again).
    """
    pins: dict[str, str] = {} if (refresh or previous is None) else lock_pins(previous)
    pins.update(extra_pins or {})
    platforms: dict[str, PlatformLock] = {}
    shared: list[Artifact] = []
    prev_shared = {} if (refresh or previous is None) else {a.url: a for a in previous.shared}
    for plan, settings in hosts:
        inputs = platform_inputs(plan, settings)
        have = platforms.get(inputs.id)
        if have is not None:
            if have.inputs != inputs:
                raise ArtifactError(
                    f"hosts of platform {inputs.id} disagree on what they install "
                    f"({have.inputs} vs {inputs}); give them the same choices"
                )
        else:
            old = None if (refresh or previous is None) else previous.platforms.get(inputs.id)
            if old is not None and old.inputs == inputs:
                platforms[inputs.id] = with_artifact_facts(cache, old, plan, settings)
            else:
                platforms[inputs.id] = resolve_platform(
                    plan, settings, cache, _pins(pins, settings)
                )
        if needs_coral_key(plan, settings) and not any(
            a.kind == "apt-key" and a.url == settings.key_url for a in shared
        ):
            old_key = prev_shared.get(settings.key_url)
            if old_key is not None and set(old_key.version.split()) & set(
                settings.coral_key_fingerprints
            ):
                shared.append(old_key)
            else:
                shared.append(resolve_coral_key(settings, cache, _pins(pins, settings)))
        if needs_coral_key(plan, settings):
            key_art = next(a for a in shared if a.kind == "apt-key" and a.url == settings.key_url)
            platforms[inputs.id] = with_coral_debs(
                platforms[inputs.id], plan, settings, cache, _pins(pins, settings), key_art
            )
        driver_url = driver_deb_url(plan, settings)
        if driver_url is not None and not any(
            a.kind == "deb" and a.url == driver_url for a in shared
        ):
            old_driver = prev_shared.get(driver_url)
            shared.append(
                old_driver
                if old_driver is not None
                else resolve_driver_deb(plan, settings, cache, _pins(pins, settings))
            )
        shared.extend(asset_artifacts(settings))
        if not any(pi_ansible.is_pi_ansible(a) for a in shared):
            pi_art = pi_ansible.lock_entry(
                plan, cache, _pins(pins, settings), None if refresh else previous
            )
            if pi_art is not None:
                shared.append(pi_art)
    return Lock(platforms=platforms, shared=lockfile.merge_shared(shared))


@dataclass
class FetchResult:
    files: int
    bytes_downloaded: int
    files_downloaded: int
    wheels_dirs: dict[str, Path]
    keyrings: list[Path]
    assets: Path | None
    #: The shared wheels (the Pi's ansible-core for first-boot bundles and images).
    shared_wheels: list[Path] = dataclasses.field(default_factory=list)


def fetch_lock(
    lock: Lock, cache: ArtifactCache, settings: ArtifactSettings | None = None
) -> FetchResult:
    """Download everything in ``lock`` that the cache lacks, checking every sha256.

    The Coral key is checked against the fingerprints the lock recorded for it (or, with
    ``settings``, against those of them that the settings still accept).
    """
    s = settings
    before_files = cache.stats.files_downloaded
    before_bytes = cache.stats.bytes_downloaded
    wheels_dirs = {pid: platform_dirs(cache, plat)[0] for pid, plat in lock.platforms.items()}
    keyrings = [
        keyring_path(cache, art, _accepted_from(art, s))
        for art in lock.shared
        if art.kind == "apt-key"
    ]
    assets = assets_dir(cache, lock.shared) if any(a.kind == "asset" for a in lock.shared) else None
    shared_wheels = [_fetch_art(cache, a) for a in lock.shared if a.kind == "wheel"]
    for art in lock.shared:
        if art.kind == "deb":  # the PCIe driver .deb (arch all)
            _fetch_art(cache, art)
    return FetchResult(
        files=len(lock.all_artifacts()),
        bytes_downloaded=cache.stats.bytes_downloaded - before_bytes,
        files_downloaded=cache.stats.files_downloaded - before_files,
        wheels_dirs=wheels_dirs,
        keyrings=keyrings,
        assets=assets,
        shared_wheels=shared_wheels,
    )


def locked_files(lock: Lock, cache: ArtifactCache) -> list[tuple[Path, str]]:
    """Every file a host of ``lock`` may install, as (path in the cache, kind), fetched and
    checked when missing: the pinned files, the keyrings derived from pinned keys (kind
    ``keyring``) and this coralpi's verify package (kind ``verify-package``)."""
    fetch_lock(lock, cache)
    found: list[tuple[Path, str]] = []
    for art in lock.all_artifacts():
        if art.kind == "apt-key":
            found.append((keyring_path(cache, art, _accepted_from(art, None)), "keyring"))
        else:
            found.append((_fetch_art(cache, art), art.kind))
    found.append((verify_package.ensure_archive(cache.root), "verify-package"))
    return found


def _lock_state(cache: ArtifactCache, lock_path: Path | None) -> Lock:
    key = f"lock:{lock_path}"
    state = cache.memo.get(key)
    if state is None:
        state = (lockfile.read_if_exists(lock_path) if lock_path else None) or Lock()
        cache.memo[key] = state
    assert isinstance(state, Lock)
    return state


def _save_lock(
    cache: ArtifactCache,
    lock_path: Path,
    platforms: Sequence[PlatformLock],
    shared: Sequence[Artifact],
    replace: Callable[[Artifact], bool] | None = None,
) -> None:
    """Add what this process resolved to the lock file as it is now on disk: another
    coralpi may have added platforms since this one read it, and none of them is lost.
    ``replace`` drops the shared entries the new ones stand in for."""
    with files.locked(lock_path):
        on_disk = lockfile.read_if_exists(lock_path) or Lock()
        for plat in platforms:
            on_disk.platforms[plat.id] = plat
        kept = [a for a in on_disk.shared if replace is None or not replace(a)]
        on_disk.shared = lockfile.merge_shared(kept, shared)
        lockfile.write_if_changed(lock_path, on_disk)
    cache.memo[f"lock:{lock_path}"] = on_disk


_OPEN_CACHES: dict[Path, ArtifactCache] = {}


def open_cache(root: str | Path | None = None) -> ArtifactCache:
    """The process-wide cache object for a root, so its per-process memo is shared."""
    store = ArtifactCache.open(root)
    return _OPEN_CACHES.setdefault(store.root.resolve(), store)


@dataclass(frozen=True)
class HostArtifacts:
    """Where one host's files are on the controller (or, in a first-boot bundle, on the Pi):
    the ``artifacts`` entry of its plan in the playbooks' variables (docs/DESIGN.md
    section 1)."""

    wheels_dir: Path
    #: The community runtime .debs by variant ("std", "max"); empty with the Coral apt runtime.
    runtime_debs: Mapping[str, Path]
    #: The binary keyring for the Coral apt source, or None when that source is not used.
    coral_keyring: Path | None
    verify_assets: Path
    #: The verify package as one archive (`verify_package.ensure_archive`).
    verify_package: Path
    #: The boolean debconf questions each runtime .deb's own templates define, by variant
    #: (what the role answers for max once its EULA is accepted); empty: not read.
    runtime_questions: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: The PCIe driver .deb (gasket-dkms), or None without a PCIe Coral.
    driver_deb: Path | None = None
    #: The accepted fingerprints ``coral_keyring`` holds (from the lock's key entry):
    #: recorded in the local fact, verify judges the host's keyring by them.
    coral_key_fingerprints: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "wheels_dir": str(self.wheels_dir),
            "runtime_debs": {k: str(v) for k, v in sorted(self.runtime_debs.items())},
            "runtime_debconf": {k: list(v) for k, v in sorted(self.runtime_questions.items())},
            "coral_keyring": str(self.coral_keyring) if self.coral_keyring else "",
            "verify_assets": str(self.verify_assets),
            "verify_package": str(self.verify_package),
            "driver_deb": str(self.driver_deb) if self.driver_deb else "",
            "coral_key_fingerprints": list(self.coral_key_fingerprints),
        }


def playbook_plan(plan: Plan, artifacts: HostArtifacts) -> dict[str, Any]:
    """One host's entry of ``coralpi_plans``: the plan written out, with its artifacts."""
    return {**plan.to_dict(), "artifacts": artifacts.to_dict()}


def ensure_host_artifacts(
    plan: Plan,
    settings: ArtifactSettings | Mapping[str, Any] | None,
    cache: ArtifactCache | str | Path | None = None,
    *,
    lock_path: Path | None = None,
) -> HostArtifacts:
    """One host's files, downloaded and checked into the cache.

    ``settings``: the host's ``coralpi_*`` variables (or :class:`ArtifactSettings`).
    ``cache``: an :class:`ArtifactCache`, a cache root, or None for ``settings.cache_dir``
    / the default root. ``lock_path`` (default ``settings.lock_file``): files come from
    the lock when it has this host's platform (pinned); otherwise the platform is resolved
    now and added to that lock file. Within one process each platform and each shared file
    is resolved and checked once, so N hosts of one platform cost one download.
    """
    s = as_settings(settings)
    store = cache if isinstance(cache, ArtifactCache) else open_cache(cache or s.cache_dir)
    lock_path = lock_path or s.lock_file
    inputs = platform_inputs(plan, s)
    want_key = needs_coral_key(plan, s)
    driver = plan.pcie.driver_deb if plan.pcie is not None else ""
    memo_key = f"host:{inputs}:{s}:{want_key}:{driver}:{lock_path}"
    done = store.memo.get(memo_key)
    if isinstance(done, HostArtifacts):
        return done

    lock = _lock_state(store, lock_path)
    changed = False
    new_platforms: list[PlatformLock] = []
    new_shared: list[Artifact] = []
    plat = lock.platforms.get(inputs.id)
    if plat is None or plat.inputs != inputs:
        plat = resolve_platform(plan, s, store, _pins(lock_pins(lock), s))
        lock.platforms[inputs.id] = plat
        new_platforms.append(plat)
        changed = True
    else:
        for art in plat.artifacts:
            check_recorded_needs(art, plan, inputs)
            if art.kind == "deb":
                deb_checked(art, None, plan)

    coral_keyring = None
    key_fingerprints: tuple[str, ...] = ()
    if want_key:
        key_art = next((a for a in lock.shared if a.kind == "apt-key" and a.url == s.key_url), None)
        if key_art is None:
            key_art = resolve_coral_key(s, store, _pins(lock_pins(lock), s))
            lock.shared = lockfile.merge_shared(lock.shared, [key_art])
            new_shared.append(key_art)
            changed = True
        coral_keyring, key_fingerprints = checked_keyring(
            store, key_art, _accepted_from(key_art, s)
        )
        pinned = with_coral_debs(plat, plan, s, store, _pins(lock_pins(lock), s), key_art)
        if pinned is not plat:
            plat = lock.platforms[inputs.id] = pinned
            new_platforms = [p for p in new_platforms if p.id != plat.id] + [plat]
            changed = True
    wheels_dir, debs = platform_dirs(store, plat, s)

    driver_deb = None
    driver_url = driver_deb_url(plan, s)
    if plan.pcie is not None and driver_url is not None:
        name = plan.pcie.driver_deb
        drv = next((a for a in lock.shared if a.kind == "deb" and a.name == name), None)
        if drv is None:
            drv = resolve_driver_deb(plan, s, store, _pins(lock_pins(lock), s))
            lock.shared = lockfile.merge_shared(lock.shared, [drv])
            new_shared.append(drv)
            changed = True
        driver_deb = downloads.fetch(
            store,
            Source(
                "deb", drv.name, driver_url, drv.sha256, "coralpi_gasket_dkms_url", size=drv.size
            ),
        ).path

    asset_arts = asset_artifacts(s)
    if not all(a in lock.shared for a in asset_arts):
        lock.shared = lockfile.merge_shared(lock.shared, asset_arts)
        new_shared.extend(asset_arts)
        changed = True
    assets = assets_dir(store, asset_arts)

    if changed and lock_path is not None:
        _save_lock(store, lock_path, new_platforms, new_shared)
    package = store.memo.get("verify-package")
    if not isinstance(package, Path):
        package = store.memo["verify-package"] = verify_package.ensure_archive(store.root)
    result = HostArtifacts(
        wheels_dir,
        debs,
        coral_keyring,
        assets,
        package,
        runtime_questions(plat),
        driver_deb,
        key_fingerprints,
    )
    store.memo[memo_key] = result
    return result


def fetch_hint(lock_path: Path | None) -> str:
    """How to get what a lock pins onto a machine before going offline."""
    if lock_path is None:
        return ""
    return (
        f"; every file {lock_path} pins is fetched ahead by `coralpi fetch --lock "
        f"{lock_path}` on a machine that reaches its sources"
    )


def ensure_pi_ansible_wheel(
    plan: Plan,
    choice: pi_ansible.PiAnsible,
    cache: ArtifactCache,
    *,
    lock_path: Path | None = None,
) -> Path:
    """The Pi's ansible-core wheel for a first-boot bundle, as the lock pins it.

    With the lock's entry for ``choice.version`` the file comes from the cache by its
    sha256 (downloaded from the entry's URL only when the cache lacks it; when that fails the
    error names the entry; the image commands add how `coralpi fetch` gets it ahead).
    Without one it is resolved now (network) and added to the lock file, like a platform
    the lock does not have yet.
    """
    lock = _lock_state(cache, lock_path)
    art = pi_ansible.locked(lock, choice.version)
    if art is None:
        art = pi_ansible.resolve_artifact(choice, plan, cache, lock_pins(lock))
        lock.shared = lockfile.merge_shared(
            [a for a in lock.shared if not pi_ansible.is_pi_ansible(a)], [art]
        )
        if lock_path is not None:
            _save_lock(cache, lock_path, [], [art], replace=pi_ansible.is_pi_ansible)
    try:
        return _fetch_art(cache, art)
    except HashMismatch:
        raise
    except ArtifactError as exc:
        where = str(lock_path) if lock_path is not None else "the lock"
        raise ArtifactError(
            f"{where}: its [[shared]] wheel {art.name} (ansible-core {art.version}, the "
            f"Pi's Ansible, sha256 {art.sha256}) is not in the artifact cache {cache.root} "
            f"and could not be downloaded ({exc})"
        ) from None
