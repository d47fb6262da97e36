"""What a host is (:class:`Target`) and what its user chose (:class:`Choices`).

Pure parsers: Ansible facts -> :class:`Target`, inventory variables -> :class:`Choices`.
Every validation error is a :class:`~provision.errors.ConfigError` that names the variable
and the values it accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from provision.errors import ConfigError
from provision.planning.matrix_data import codename_for_version, release_names
from provision.planning.variables import BY_NAME, parse_bool
from provision.redaction import without_credentials

ARCHS = ("x86_64", "aarch64", "armv7l")

# Every spelling of an architecture we meet (uname -m, dpkg, Python platform tags).
_ARCH_ALIASES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv8": "aarch64",
    "armv7l": "armv7l",
    "armv7": "armv7l",
    "armv7hl": "armv7l",
    "armhf": "armv7l",
    "arm": "armv7l",
    "armv8l": "armv7l",  # a 32-bit userland on a 64-bit CPU reports armv8l
}

# os-release ID / ansible_distribution -> os_id. Raspberry Pi OS 32-bit says ID=raspbian,
# its 64-bit edition says ID=debian.
_OS_IDS = {
    "debian": "debian",
    "raspbian": "raspbian",
    "raspberry pi os": "raspbian",
    "ubuntu": "ubuntu",
}
OS_FAMILY = {"debian": "debian", "raspbian": "debian", "ubuntu": "ubuntu"}

_X_Y = re.compile(r"(\d+)\.(\d+)")


def normalize_arch(value: str) -> str:
    """``armv7l/armhf/arm -> armv7l``, ``aarch64/arm64 -> aarch64``, ``x86_64/amd64 -> x86_64``."""
    arch = _ARCH_ALIASES.get(str(value).strip().lower())
    if arch is None:
        raise ConfigError(f"arch: {value!r} is not one of {', '.join(ARCHS)} (or an alias of one)")
    return arch


def normalize_os_id(value: str) -> str:
    """``Debian`` -> ``debian``, ``Raspbian`` -> ``raspbian``, ``Ubuntu`` -> ``ubuntu``."""
    os_id = _OS_IDS.get(str(value).strip().lower())
    if os_id is None:
        raise ConfigError(
            f"os_id: {value!r} is not one of {', '.join(sorted(set(_OS_IDS.values())))}"
        )
    return os_id


_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_LIBSTDCXX = re.compile(r"^(GLIBCXX|CXXABI)_(\d+(?:\.\d+)+)$")
#: Where Debian / Ubuntu put libstdc++ per architecture (multiarch triplets).
_TRIPLETS = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
}


def libstdcxx_levels(text: object, arch: str) -> tuple[str | None, str | None]:
    """(highest GLIBCXX, highest CXXABI) from the probe's libstdc++ listing.

    The listing is ``FILE <path>`` lines, each followed by the ``GLIBCXX_x.y.z`` /
    ``CXXABI_x.y.z`` names found in that file (the version definitions are names in its
    dynamic string table). The file under the target architecture's multiarch directory
    wins (a 64-bit Pi may carry armhf libraries too); else the first file listed.
    """
    blocks: list[tuple[str, dict[str, str]]] = []
    for raw in str(text or "").splitlines():
        line = raw.strip()
        if line.startswith("FILE "):
            blocks.append((line[5:].strip(), {}))
            continue
        match = _LIBSTDCXX.match(line)
        if match and blocks:
            best = blocks[-1][1]
            ns, ver = match.group(1), match.group(2)
            if ns not in best or _dotted_key(ver) > _dotted_key(best[ns]):
                best[ns] = ver
    if not blocks:
        return None, None
    triplet = _TRIPLETS.get(arch, "")
    chosen = next((b for p, b in blocks if triplet and f"/{triplet}/" in p), blocks[0][1])
    return chosen.get("GLIBCXX"), chosen.get("CXXABI")


def _dotted_key(value: str) -> tuple[int, ...]:
    return tuple(int(p) for p in value.split("."))


def x_y(value: object, name: str) -> str:
    """First ``X.Y`` found in ``value`` ("3.11.2" -> "3.11", "glibc 2.36" -> "2.36")."""
    match = _X_Y.search(str(value)) if value is not None else None
    if match is None:
        raise ConfigError(f"{name}: {value!r} is not a version like X.Y")
    return f"{int(match.group(1))}.{int(match.group(2))}"


def version_tuple(value: str) -> tuple[int, int]:
    """``"3.11" -> (3, 11)``."""
    major, minor = value.split(".")[:2]
    return int(major), int(minor)


def normalize_board(value: object) -> str | None:
    """``/proc/device-tree/model`` text (NUL-terminated) -> stripped model, or None if empty."""
    if value is None:
        return None
    board = str(value).replace("\x00", "").strip()
    return board or None


@dataclass(frozen=True)
class Target:
    """What decides a host's plan. Fields are normalised on construction."""

    os_id: str
    codename: str
    arch: str
    python: str
    glibc: str
    board: str | None = None
    #: Highest GLIBCXX_ / CXXABI_ version the target's libstdc++ defines ("3.4.30" /
    #: "1.3.13"); None: not probed (the release's own level is used, see matrix.toml).
    glibcxx: str | None = None
    cxxabi: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "os_id", normalize_os_id(self.os_id))
        object.__setattr__(self, "codename", str(self.codename).strip().lower())
        object.__setattr__(self, "arch", normalize_arch(self.arch))
        object.__setattr__(self, "python", x_y(self.python, "python"))
        object.__setattr__(self, "glibc", x_y(self.glibc, "glibc"))
        object.__setattr__(self, "board", normalize_board(self.board))
        for name in ("glibcxx", "cxxabi"):
            value = getattr(self, name)
            if value is not None and not _DOTTED.fullmatch(str(value)):
                raise ConfigError(f"{name}: {value!r} is not a version like 3.4.30")

    @property
    def family(self) -> str:
        return OS_FAMILY[self.os_id]

    @property
    def is_raspberry_pi(self) -> bool:
        return self.board is not None and self.board.startswith("Raspberry Pi")

    def describe(self) -> str:
        """``"bookworm armv7l python 3.11"``: the form refusals and suggestions use."""
        return f"{self.codename} {self.arch} python {self.python}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RUNTIMES = BY_NAME["coralpi_runtime"].choices
ACCELERATORS = BY_NAME["coralpi_accelerator"].choices
OPENCV_SOURCES = BY_NAME["coralpi_opencv"].choices


def _one_of(variable: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{variable}: {value!r} is not one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Choices:
    """The user's choices (inventory variables ``coralpi_*``, see docs/DESIGN.md section 2)."""

    runtime: str = "std"
    accelerator: str = "usb"
    opencv: str = "apt"
    camera: bool = True
    accept_max_eula: bool = False
    pip_index_url: str = ""
    #: offer the community tflite_runtime wheels (coralpi_community_wheel_url) as well
    community_wheels: bool = False

    def __post_init__(self) -> None:
        _one_of("coralpi_runtime", self.runtime, RUNTIMES)
        _one_of("coralpi_accelerator", self.accelerator, ACCELERATORS)
        _one_of("coralpi_opencv", self.opencv, OPENCV_SOURCES)
        if not isinstance(self.camera, bool):
            raise ConfigError(f"coralpi_camera: {self.camera!r} is not a boolean (true or false)")
        if not isinstance(self.accept_max_eula, bool):
            value = self.accept_max_eula
            raise ConfigError(
                f"coralpi_accept_max_eula: {value!r} is not a boolean (true or false)"
            )
        if not isinstance(self.community_wheels, bool):
            value = self.community_wheels
            raise ConfigError(
                f"coralpi_community_wheels: {value!r} is not a boolean (true or false)"
            )
        if self.runtime == "max" and not self.accept_max_eula:
            raise ConfigError(
                "coralpi_accept_max_eula: must be true to install the max runtime "
                "(coralpi_runtime: max); max runs the accelerator at full clock, rated only "
                "for ambient up to 25 C, and its package asks you to accept that"
            )
        url = self.pip_index_url
        if not isinstance(url, str) or (url and not re.match(r"^(https?|file)://\S+$", url)):
            raise ConfigError(
                f"coralpi_pip_index_url: {url!r} is not an http(s):// or file:// URL (or empty)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The plan's ``choices`` object (the EULA flag is implied by ``runtime == "max"``)."""
        return {
            "runtime": self.runtime,
            "accelerator": self.accelerator,
            "opencv": self.opencv,
            "camera": self.camera,
            "pip_index_url": self.pip_index_url,
            "community_wheels": self.community_wheels,
        }


def choices_from_vars(variables: Mapping[str, Any]) -> Choices:
    """Choices from a host's inventory variables; missing ones take their defaults."""
    defaults = Choices()
    url = variables.get("coralpi_pip_index_url", defaults.pip_index_url)
    return Choices(
        runtime=variables.get("coralpi_runtime", defaults.runtime),
        accelerator=variables.get("coralpi_accelerator", defaults.accelerator),
        opencv=variables.get("coralpi_opencv", defaults.opencv),
        camera=parse_bool("coralpi_camera", variables.get("coralpi_camera", defaults.camera)),
        accept_max_eula=parse_bool(
            "coralpi_accept_max_eula",
            variables.get("coralpi_accept_max_eula", defaults.accept_max_eula),
        ),
        # The plan names the index without its login (plans are printed and put on cards);
        # the artifact settings keep the URL as given, for the downloads.
        pip_index_url="" if url is None else without_credentials(str(url)),
        community_wheels=parse_bool(
            "coralpi_community_wheels",
            variables.get("coralpi_community_wheels", defaults.community_wheels),
        ),
    )


def _fact(facts: Mapping[str, Any], name: str) -> Any:
    """``ansible_<name>`` from hostvars, or ``<name>`` as inside ``ansible_facts``."""
    for key in (f"ansible_{name}", name):
        if facts.get(key) not in (None, ""):
            return facts[key]
    return None


def target_from_facts(facts: Mapping[str, Any]) -> Target:
    """Build a :class:`Target` from what the probe play gathers on one host.

    Input: one flat mapping per host (hostvars style). Keys, as the probe play must set them::

        ansible_distribution                "Debian" | "Raspbian" | "Ubuntu"   (required)
        ansible_distribution_release        "bookworm", "jammy", ...           (required*)
        ansible_distribution_major_version  "12"      (*fallback when release is empty/"n/a")
        ansible_distribution_version        "22.04"   (*fallback, Ubuntu)
        ansible_architecture                "aarch64" (uname -m)               (required)
        ansible_python_version              "3.11.2"  (the interpreter Ansible uses)  (required)
        coralpi_dpkg_arch                   "arm64"   (`dpkg --print-architecture`; optional,
                                             wins over ansible_architecture: a 32-bit
                                             Raspberry Pi OS on a 64-bit kernel says aarch64
                                             in uname -m but needs armhf/armv7l packages)
        coralpi_glibc                       "2.36"    (`getconf GNU_LIBC_VERSION` output such
                                             as "glibc 2.36" is accepted too)    (required)
        coralpi_board                       text of /proc/device-tree/model (trailing NUL
                                             allowed), "" or null when absent   (optional)
        coralpi_libstdcxx                   the probe's libstdc++ listing (see
                                             libstdcxx_levels)                  (optional)

    The ``ansible_`` prefix may be left off (as inside ``ansible_facts``), and a nested
    ``ansible_facts`` mapping is merged in. Raises ConfigError naming the missing key.
    """
    merged: dict[str, Any] = {}
    nested = facts.get("ansible_facts")
    if isinstance(nested, Mapping):
        merged.update(nested)
    merged.update({k: v for k, v in facts.items() if k != "ansible_facts"})

    def need(name: str) -> Any:
        value = _fact(merged, name)
        if value is None:
            raise ConfigError(f"probe facts: ansible_{name} is missing")
        return value

    os_id = normalize_os_id(need("distribution"))
    codename = str(_fact(merged, "distribution_release") or "").strip().lower()
    if codename in ("", "n/a") or codename not in release_names():
        version = _fact(merged, "distribution_version") or _fact(
            merged, "distribution_major_version"
        )
        by_version = codename_for_version(OS_FAMILY[os_id], str(version)) if version else None
        if by_version is not None:
            codename = by_version
        elif codename in ("", "n/a"):
            raise ConfigError("probe facts: ansible_distribution_release is missing")
    dpkg_arch = merged.get("coralpi_dpkg_arch")
    arch = normalize_arch(dpkg_arch if dpkg_arch else need("architecture"))
    python = x_y(need("python_version"), "ansible_python_version")
    glibc_raw = merged.get("coralpi_glibc")
    if glibc_raw in (None, ""):
        raise ConfigError("probe facts: coralpi_glibc is missing")
    glibc = x_y(glibc_raw, "coralpi_glibc")
    glibcxx, cxxabi = libstdcxx_levels(merged.get("coralpi_libstdcxx"), arch)
    return Target(
        os_id=os_id,
        codename=codename,
        arch=arch,
        python=python,
        glibc=glibc,
        board=normalize_board(merged.get("coralpi_board")),
        glibcxx=glibcxx,
        cxxabi=cxxabi,
    )
