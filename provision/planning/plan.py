"""The plan for one host: every decision with its reason (docs/DESIGN.md section 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provision.planning.targets import Choices, Target


@dataclass(frozen=True)
class RuntimeDecision:
    """The libedgetpu runtime package and where it comes from."""

    source: str  # "coral-apt" | "community-deb"
    package: str
    conflicts: str
    version: str
    deb_filename: str | None
    reason: str
    tf_version: str = ""  # the TensorFlow version libedgetpu was built against
    release_tag: str | None = None  # where the community release's files are published

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "package": self.package,
            "conflicts": self.conflicts,
            "version": self.version,
            "deb_filename": self.deb_filename,
            "tf_version": self.tf_version,
            "release_tag": self.release_tag,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PythonRuntimeDecision:
    """The Python inference runtime wheel (tflite-runtime or ai-edge-litert)."""

    package: str
    version: str
    module: str
    python_tag: str
    platform_tags: tuple[str, ...]
    reason: str
    tf_version: str = ""  # the TensorFlow (Lite) version the wheel is built from
    #: "pypi" (pip finds the wheel on the index) or "community" (coralpi_community_wheels:
    #: the file ``wheel_file`` of release ``release_tag`` at coralpi_community_wheel_url)
    origin: str = "pypi"
    wheel_file: str = ""
    release_tag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "module": self.module,
            "python_tag": self.python_tag,
            "platform_tags": list(self.platform_tags),
            "tf_version": self.tf_version,
            "origin": self.origin,
            "wheel_file": self.wheel_file,
            "release_tag": self.release_tag,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class NumpyDecision:
    constraint: str
    source: str  # "apt" | "pip"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint, "source": self.source, "reason": self.reason}


@dataclass(frozen=True)
class OpenCVDecision:
    source: str  # "apt" | "pip"
    package: str
    version: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "package": self.package,
            "version": self.version,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class CameraDecision:
    method: str  # "raspi-config-legacy" | "camera-auto-detect" | "none"
    config_path: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "config_path": self.config_path, "reason": self.reason}


@dataclass(frozen=True)
class VenvDecision:
    path: str
    system_site_packages: bool
    pip: str | None  # pip requirement to upgrade the venv's pip to first, or None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "system_site_packages": self.system_site_packages,
            "pip": self.pip,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ControllerDecision:
    """The ansible-core the controller needs to manage this host's Python."""

    ansible_core: str  # a PEP 440 specifier, e.g. ">=2.17,<2.18"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"ansible_core": self.ansible_core, "reason": self.reason}


@dataclass(frozen=True)
class FactSource:
    """Where one matrix row a plan used was read (URL or repository + path), and when."""

    what: str  # "release bookworm", "python runtime ai-edge-litert", "board Raspberry Pi 5"
    source: str
    checked: str  # YYYY-MM-DD ("" when the row gives none of its own)

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "source": self.source, "checked": self.checked}

    def line(self) -> str:
        when = f" (checked {self.checked})" if self.checked else ""
        return f"{self.what}: {self.source}{when}"


@dataclass(frozen=True)
class PcieDecision:
    """What an M.2 / PCIe Coral needs on this host: boot configuration, driver, headers."""

    #: The firmware configuration file and the lines it must hold (empty: nothing to write,
    #: e.g. a CM4, or not a Raspberry Pi). Written once, under ``config_section``.
    config_path: str | None
    config_section: str
    config_lines: tuple[str, ...]
    #: The kernel image the Pi will boot (``kernel8.img``: 4k pages), or None off a Pi.
    kernel: str | None
    #: The kernel headers metapackage(s) of that kernel's flavour (DKMS builds against them;
    #: an ``apt full-upgrade`` that brings a new kernel brings their new version too).
    headers_packages: tuple[str, ...]
    driver_package: str
    driver_version: str
    driver_deb: str
    #: Whether applying the plan needs a reboot before the driver can be checked (the boot
    #: lines take effect at the next boot); decided on the host by what actually changed.
    reboot: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "config_path": self.config_path,
            "config_section": self.config_section,
            "config_lines": list(self.config_lines),
            "kernel": self.kernel,
            "headers_packages": list(self.headers_packages),
            "driver_package": self.driver_package,
            "driver_version": self.driver_version,
            "driver_deb": self.driver_deb,
            "reboot": self.reboot,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    target: Target
    choices: Choices
    runtime: RuntimeDecision
    python_runtime: PythonRuntimeDecision
    numpy: NumpyDecision
    opencv: OpenCVDecision
    ld_preload: str | None
    ld_preload_reason: str
    camera: CameraDecision
    venv: VenvDecision
    apt_packages: tuple[str, ...]
    pip_requirements: tuple[str, ...]
    controller: ControllerDecision
    # Decisions that have no field of their own ("pillow: ...", "accelerator: ...").
    notes: tuple[str, ...] = field(default=())
    # Things that will probably not work as the user expects; shown prominently.
    warnings: tuple[str, ...] = field(default=())
    # Where the matrix rows this plan used were read, and when (`coralpi plan --sources`).
    sources: tuple[FactSource, ...] = field(default=())
    # The M.2 / PCIe Coral's boot configuration and driver (None for a USB accelerator).
    pcie: PcieDecision | None = None

    @property
    def reasons(self) -> list[str]:
        """One line per decision, ``"<field>: <reason>"``, in plan order."""
        return [
            f"runtime: {self.runtime.reason}",
            f"python_runtime: {self.python_runtime.reason}",
            f"numpy: {self.numpy.reason}",
            *self.notes,
            f"opencv: {self.opencv.reason}",
            f"ld_preload: {self.ld_preload_reason}",
            f"camera: {self.camera.reason}",
            *([f"pcie: {self.pcie.reason}"] if self.pcie is not None else []),
            f"venv: {self.venv.reason}",
            f"controller: {self.controller.reason}",
            *(f"warning: {w}" for w in self.warnings),
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, the shape fixed by docs/DESIGN.md section 1."""
        return {
            "target": self.target.to_dict(),
            "choices": self.choices.to_dict(),
            "runtime": self.runtime.to_dict(),
            "python_runtime": self.python_runtime.to_dict(),
            "numpy": self.numpy.to_dict(),
            "opencv": self.opencv.to_dict(),
            "ld_preload": self.ld_preload,
            "ld_preload_reason": self.ld_preload_reason,
            "camera": self.camera.to_dict(),
            "pcie": self.pcie.to_dict() if self.pcie is not None else None,
            "venv": self.venv.to_dict(),
            "apt_packages": list(self.apt_packages),
            "pip_requirements": list(self.pip_requirements),
            "controller": self.controller.to_dict(),
            "warnings": list(self.warnings),
            "sources": [s.to_dict() for s in self.sources],
            "reasons": self.reasons,
        }
