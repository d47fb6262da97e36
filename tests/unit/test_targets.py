"""Target/Choices parsing: probe facts and inventory variables in, validated values out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from provision.errors import ConfigError
from provision.planning.targets import (
    Choices,
    Target,
    choices_from_vars,
    libstdcxx_levels,
    normalize_arch,
    parse_bool,
    target_from_facts,
)


@pytest.mark.parametrize(
    ("raw", "arch"),
    [
        ("armv7l", "armv7l"),
        ("armhf", "armv7l"),
        ("arm", "armv7l"),
        ("ARMHF", "armv7l"),
        ("aarch64", "aarch64"),
        ("arm64", "aarch64"),
        ("x86_64", "x86_64"),
        ("amd64", "x86_64"),
    ],
)
def test_arch_aliases_normalise(raw: str, arch: str) -> None:
    assert normalize_arch(raw) == arch


def test_unknown_arch_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"'riscv64' is not one of x86_64, aarch64, armv7l"):
        normalize_arch("riscv64")


def test_target_normalises_its_fields() -> None:
    t = Target("Raspbian", "Bullseye", "armhf", "3.9.2", "glibc 2.31", "Raspberry Pi 4\x00")
    assert (t.os_id, t.codename, t.arch, t.python, t.glibc, t.board) == (
        "raspbian",
        "bullseye",
        "armv7l",
        "3.9",
        "2.31",
        "Raspberry Pi 4",
    )
    assert t.family == "debian"
    assert t.is_raspberry_pi
    assert t.describe() == "bullseye armv7l python 3.9"


@pytest.mark.parametrize("python", ["three", "", "3"])
def test_target_rejects_malformed_python(python: str) -> None:
    with pytest.raises(ConfigError, match="python"):
        Target("debian", "bookworm", "x86_64", python, "2.36")


def _pi_facts(**extra: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "ansible_distribution": "Debian",
        "ansible_distribution_release": "bookworm",
        "ansible_distribution_major_version": "12",
        "ansible_architecture": "aarch64",
        "ansible_python_version": "3.11.2",
        "coralpi_glibc": "2.36",
        "coralpi_board": "Raspberry Pi 5 Model B Rev 1.0\x00",
    }
    facts.update(extra)
    return facts


def test_target_from_hostvars_style_facts() -> None:
    t = target_from_facts(_pi_facts())
    assert t == Target(
        "debian", "bookworm", "aarch64", "3.11", "2.36", "Raspberry Pi 5 Model B Rev 1.0"
    )


def test_dpkg_arch_wins_over_kernel_arch() -> None:
    # 32-bit Raspberry Pi OS on a 64-bit kernel: uname -m says aarch64, packages are armhf.
    t = target_from_facts(_pi_facts(ansible_distribution="Raspbian", coralpi_dpkg_arch="armhf"))
    assert (t.os_id, t.arch) == ("raspbian", "armv7l")


def test_facts_without_prefix_and_nested_ansible_facts() -> None:
    t = target_from_facts(
        {
            "ansible_facts": {
                "distribution": "Ubuntu",
                "distribution_release": "noble",
                "architecture": "x86_64",
                "python_version": "3.12.3",
            },
            "coralpi_glibc": "glibc 2.39",
            "coralpi_board": "",
        }
    )
    assert t == Target("ubuntu", "noble", "x86_64", "3.12", "2.39", None)


def test_codename_falls_back_to_version() -> None:
    debian = target_from_facts(
        _pi_facts(ansible_distribution_release="n/a", ansible_distribution_major_version="13")
    )
    assert debian.codename == "trixie"
    ubuntu = target_from_facts(
        _pi_facts(
            ansible_distribution="Ubuntu",
            ansible_distribution_release="",
            ansible_distribution_version="22.04",
        )
    )
    assert ubuntu.codename == "jammy"


@pytest.mark.parametrize(
    "missing", ["ansible_distribution", "ansible_python_version", "coralpi_glibc"]
)
def test_missing_fact_is_named(missing: str) -> None:
    facts = _pi_facts()
    del facts[missing]
    with pytest.raises(ConfigError, match=missing):
        target_from_facts(facts)


def test_runtime_choice_error_names_variable_and_values() -> None:
    with pytest.raises(ConfigError) as err:
        Choices(runtime="mid")
    assert str(err.value) == "coralpi_runtime: 'mid' is not one of std, max"


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("accelerator", "m2", "coralpi_accelerator: 'm2' is not one of usb, pcie"),
        ("opencv", "conda", "coralpi_opencv: 'conda' is not one of apt, pip"),
        ("pip_index_url", "piwheels.org", "coralpi_pip_index_url"),
    ],
)
def test_choice_errors(field: str, value: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        changes: dict[str, Any] = {field: value}
        replace(Choices(), **changes)


def test_choices_from_inventory_variables() -> None:
    choices = choices_from_vars(
        {
            "coralpi_runtime": "max",
            "coralpi_accept_max_eula": "yes",
            "coralpi_camera": "false",
            "coralpi_pip_index_url": "https://www.piwheels.org/simple",
            "ansible_user": "pi",
        }
    )
    assert choices == Choices(
        runtime="max",
        accept_max_eula=True,
        camera=False,
        pip_index_url="https://www.piwheels.org/simple",
    )
    assert choices_from_vars({}) == Choices()


def test_bool_variable_rejects_non_bools() -> None:
    with pytest.raises(ConfigError, match=r"coralpi_camera: 'maybe' is not a boolean"):
        parse_bool("coralpi_camera", "maybe")
    with pytest.raises(ConfigError, match="coralpi_camera"):
        choices_from_vars({"coralpi_camera": "maybe"})


# The probe's libstdc++ listing (playbooks/probe.yml), as recorded on a bookworm amd64 host
# (this machine's /usr/lib/x86_64-linux-gnu/libstdc++.so.6, shortened) plus a foreign
# armhf copy that must not win on an aarch64 host.
LIBSTDCXX_LISTING = """FILE /usr/lib/arm-linux-gnueabihf/libstdc++.so.6
GLIBCXX_3.4.33
CXXABI_1.3.15
FILE /usr/lib/aarch64-linux-gnu/libstdc++.so.6
GLIBCXX_3.4
GLIBCXX_3.4.9
GLIBCXX_3.4.30
GLIBCXX_3.4.29
CXXABI_1.3.13
CXXABI_1.3.2
GLIBCXX_3.4.30
"""


def test_libstdcxx_levels_take_the_highest_of_the_arch_s_own_library() -> None:
    assert libstdcxx_levels(LIBSTDCXX_LISTING, "aarch64") == ("3.4.30", "1.3.13")
    # no library under the arch's triplet: the first one listed
    assert libstdcxx_levels(LIBSTDCXX_LISTING, "x86_64") == ("3.4.33", "1.3.15")
    assert libstdcxx_levels("", "aarch64") == (None, None)
    assert libstdcxx_levels(None, "aarch64") == (None, None)


def test_probe_facts_carry_the_libstdcxx_levels_and_old_facts_still_work() -> None:
    facts = {
        "ansible_distribution": "Debian",
        "ansible_distribution_release": "bookworm",
        "ansible_architecture": "aarch64",
        "ansible_python_version": "3.11.2",
        "coralpi_glibc": "2.36",
    }
    old = target_from_facts(facts)
    assert (old.glibcxx, old.cxxabi) == (None, None)
    new = target_from_facts({**facts, "coralpi_libstdcxx": LIBSTDCXX_LISTING})
    assert (new.glibcxx, new.cxxabi) == ("3.4.30", "1.3.13")
    with pytest.raises(ConfigError, match="glibcxx"):
        replace(new, glibcxx="3.4.x")
