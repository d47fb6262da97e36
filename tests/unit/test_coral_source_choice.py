"""When the controller fetches Coral's signing key (and the role configures the source)."""

from __future__ import annotations

from provision.artifacts.service import ArtifactSettings, needs_coral_key
from provision.planning.matrix import resolve
from provision.planning.plan import Plan
from provision.planning.targets import Choices, Target


def _plan(codename: str, arch: str, python: str, accelerator: str = "usb") -> Plan:
    target = Target("debian", codename, arch, python, "2.36" if codename == "bookworm" else "2.31")
    return resolve(target, Choices(accelerator=accelerator))


def test_source_follows_the_runtime_alone() -> None:
    auto = ArtifactSettings()
    assert needs_coral_key(_plan("bullseye", "aarch64", "3.9"), auto)  # official runtime
    assert not needs_coral_key(_plan("bookworm", "aarch64", "3.11"), auto)  # community .deb
    # The M.2/PCIe Coral's driver is the pinned community gasket-dkms .deb (Coral's own
    # 1.0-18 does not build on 6.12 kernels): no Coral source for it.
    assert not needs_coral_key(_plan("bookworm", "aarch64", "3.11", "pcie"), auto)
    forced_off = ArtifactSettings(coral_source_enabled=False)
    assert not needs_coral_key(_plan("bullseye", "aarch64", "3.9"), forced_off)
