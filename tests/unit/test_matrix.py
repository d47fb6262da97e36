"""The compatibility matrix: one test per supported row, every refusal, platform tags."""

from __future__ import annotations

import json
import platform
from typing import Any

import pytest
from packaging import _manylinux

from provision.errors import ConfigError, UnsupportedTarget
from provision.planning.matrix import (
    controller_supports,
    load_matrix,
    merge_specifiers,
    pcie_board,
    platform_tags,
    resolve,
)
from provision.planning.plan import Plan
from provision.planning.targets import Choices, Target

PI4 = "Raspberry Pi 4 Model B Rev 1.4"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"
PIWHEELS = "https://www.piwheels.org/simple"
DEBARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}


def plan_for(
    codename: str, arch: str, python: str | None = None, board: str | None = None, **choices: Any
) -> Plan:
    rel = load_matrix().releases[codename]
    target = Target(rel.os_ids[0], codename, arch, python or rel.python, rel.glibc, board)
    return resolve(target, Choices(**choices))


# ---------------------------------------------------------------------------------------
# Rows.


def test_buster_armv7l_pi4_without_extra_index_uses_the_wheel_debian_numpy_fits() -> None:
    plan = plan_for("buster", "armv7l", board=PI4)
    # tflite-runtime 2.11.0 needs numpy>=1.19.2; buster has 1.16.2 and PyPI no armv7l numpy.
    assert (plan.python_runtime.package, plan.python_runtime.version) == ("tflite-runtime", "2.5.0")
    assert "2.11.0" in plan.python_runtime.reason
    assert "coralpi_pip_index_url" in plan.python_runtime.reason
    assert plan.runtime.source == "coral-apt"
    assert plan.runtime.version == "16.0"
    assert plan.runtime.deb_filename is None
    assert plan.numpy.source == "apt"
    assert plan.camera.method == "raspi-config-legacy"
    assert plan.camera.config_path == "/boot/config.txt"
    assert plan.controller.ansible_core == ">=2.17,<2.18"
    assert "2.17" in plan.controller.reason
    assert plan.venv.pip is None  # buster's pip 18.1 installs linux_armv7l wheels


def test_buster_armv7l_with_piwheels_gets_2_11_and_a_newer_pip() -> None:
    plan = plan_for("buster", "armv7l", board=PI4, pip_index_url=PIWHEELS)
    assert plan.python_runtime.version == "2.11.0"
    assert plan.runtime.source == "coral-apt"  # 2.11.0 <= 2.11.1: official runtime is safe
    assert plan.numpy.source == "pip"
    assert PIWHEELS in plan.numpy.reason
    # pip 18.1 does not know manylinux2014: the venv's pip is upgraded first.
    assert plan.venv.pip is not None
    assert plan.pip_requirements[0] == plan.venv.pip
    assert "tflite-runtime==2.11.0" in plan.pip_requirements
    assert any(r.startswith("numpy>=1.19.2") for r in plan.pip_requirements)


def test_buster_controller_needs_ansible_core_2_17() -> None:
    plan = plan_for("buster", "armv7l", board=PI4)
    ok, message = controller_supports(plan, "2.19.4")
    assert not ok
    assert "ansible-core>=2.17,<2.18" in message
    assert "apply" in message
    assert controller_supports(plan, "2.17.13")[0]
    with pytest.raises(ConfigError, match="not a version"):
        controller_supports(plan, "devel")


@pytest.mark.parametrize("arch", ["aarch64", "armv7l"])
def test_bullseye_prefers_2_11_with_the_official_runtime(arch: str) -> None:
    plan = plan_for("bullseye", arch)
    assert plan.python_runtime.version == "2.11.0"
    assert plan.runtime.source == "coral-apt"
    assert plan.numpy.source == "apt"  # bullseye's numpy 1.19.5 meets >=1.19.2
    # Why not 2.13.0, the newest wheel for cp39: it needs the community runtime and numpy 1.21.
    assert "2.13.0" in plan.python_runtime.reason
    assert "community-deb" in plan.python_runtime.reason
    assert f"manylinux2014_{arch}" in plan.python_runtime.reason
    assert plan.camera.config_path is None  # no board given: not a Pi
    assert plan.controller.ansible_core == ">=2.17"


def test_bullseye_arm64_max_avoids_the_missing_official_package() -> None:
    plan = plan_for("bullseye", "aarch64", runtime="max", accept_max_eula=True)
    assert plan.runtime.source == "community-deb"
    assert plan.runtime.package == "libedgetpu1-max"
    assert plan.runtime.conflicts == "libedgetpu1-std"
    assert plan.runtime.deb_filename == "libedgetpu1-max_16.0tf2.17.1-1.bullseye_arm64.deb"
    assert "missing" in plan.runtime.reason
    assert plan.python_runtime.version == "2.13.0"  # >= 2.11.1 to pair with the community build
    assert plan.numpy.source == "pip"  # 2.13.0 needs numpy>=1.21.2
    assert "25 C" in plan.runtime.reason


@pytest.mark.parametrize(
    ("arch", "tag"),
    [
        ("aarch64", "manylinux_2_34_aarch64"),
        ("armv7l", "manylinux_2_34_armv7l"),
        ("x86_64", "manylinux2014_x86_64"),
    ],
)
def test_bookworm_gets_tflite_2_14_and_the_community_runtime(arch: str, tag: str) -> None:
    plan = plan_for("bookworm", arch, board=PI5 if arch == "aarch64" else None)
    assert (plan.python_runtime.package, plan.python_runtime.version) == (
        "tflite-runtime",
        "2.14.0",
    )
    assert tag in plan.python_runtime.reason
    assert tag in plan.python_runtime.platform_tags
    assert plan.python_runtime.python_tag == "cp311"
    assert plan.runtime.source == "community-deb"
    assert plan.runtime.version == "16.0tf2.17.1-1"
    assert plan.runtime.deb_filename == (
        f"libedgetpu1-std_16.0tf2.17.1-1.bookworm_{DEBARCH[arch]}.deb"
    )
    assert "2.11.1" in plan.runtime.reason  # why not the official runtime
    assert plan.numpy.source == "apt"
    assert plan.numpy.constraint == ">=1.23.2,<2"
    assert plan.venv.system_site_packages
    assert plan.pip_requirements == ("tflite-runtime==2.14.0",)
    assert plan.apt_packages == ("python3-venv", "python3-numpy", "python3-pil", "python3-opencv")


def test_bookworm_pi5_camera() -> None:
    plan = plan_for("bookworm", "aarch64", board=PI5)
    assert plan.camera.method == "camera-auto-detect"
    assert plan.camera.config_path == "/boot/firmware/config.txt"


@pytest.mark.parametrize("arch", ["aarch64", "x86_64"])
def test_trixie_gets_ai_edge_litert(arch: str) -> None:
    plan = plan_for("trixie", arch)
    py = plan.python_runtime
    assert (py.package, py.version, py.module) == (
        "ai-edge-litert",
        "2.3.0",
        "ai_edge_litert.interpreter",
    )
    assert f"manylinux_2_27_{arch}" in py.reason
    assert py.tf_version == "2.22.0-dev"
    assert "Edge TPU reported, not proven here" in py.reason
    assert any("reported" in w and "not proven here" in w for w in plan.warnings)
    assert plan.runtime.source == "community-deb"
    # trixie has its own build of the newest community release (TF 2.19.1, the nearest TF
    # at or below ai-edge-litert's 2.22-dev).
    assert plan.runtime.version == "16.0tf2.19.1-1"
    assert plan.runtime.tf_version == "2.19.1"
    assert plan.runtime.release_tag == "16.0TF2.19.1-1"
    assert plan.runtime.deb_filename == f"libedgetpu1-std_16.0tf2.19.1-1.trixie_{DEBARCH[arch]}.deb"
    assert "its own trixie build" in plan.runtime.reason
    assert "nearest TF at or below" in plan.runtime.reason
    assert plan.numpy.source == "apt"  # trixie's numpy 2.2 meets >=1.23.2
    assert "<2" not in plan.numpy.constraint
    assert plan.controller.ansible_core == ">=2.18"


def test_trixie_armv7l_is_refused_naming_the_nearest() -> None:
    with pytest.raises(UnsupportedTarget) as err:
        plan_for("trixie", "armv7l")
    assert err.value.nearest == "bookworm armv7l python 3.11"
    assert "trixie aarch64 python 3.13" in err.value.alternatives
    assert "bookworm armv7l python 3.11" in str(err.value)
    assert "cp313" in str(err.value)


def test_armv7l_with_python_3_12_is_refused_before_its_choices_are_judged() -> None:
    # Python 3.12 on a 32-bit OS: no runtime wheel at all. That is the refusal, not the
    # (also invalid) apt OpenCV for a python that is not the release's own.
    with pytest.raises(UnsupportedTarget) as err:
        plan_for("bookworm", "armv7l", python="3.12", runtime="max", accept_max_eula=True)
    assert err.value.nearest == "bookworm armv7l python 3.11"


def test_jammy_arm64_takes_2_14_with_numpy_from_pypi() -> None:
    plan = plan_for("jammy", "aarch64")
    assert plan.python_runtime.version == "2.14.0"
    assert plan.numpy.source == "pip"  # jammy's numpy 1.21.5 < 1.23.2; PyPI has aarch64 wheels
    assert "numpy>=1.23.2,<2" in plan.pip_requirements
    # tflite-runtime pairs only with 16.0tf2.17.1-1, which has its own Ubuntu 22.04 build.
    assert plan.runtime.deb_filename == "libedgetpu1-std_16.0tf2.17.1-1.ubuntu22.04_arm64.deb"
    assert "its own ubuntu22.04 build for jammy" in plan.runtime.reason


def test_jammy_armv7l_falls_back_to_the_wheel_its_numpy_fits() -> None:
    # No armv7l numpy on PyPI: 2.14.0 would need numpy>=1.23.2, jammy has 1.21.5.
    plan = plan_for("jammy", "armv7l")
    assert plan.python_runtime.version == "2.13.0"
    assert plan.numpy.source == "apt"
    assert "2.14.0" in plan.python_runtime.reason


def test_noble_gets_ai_edge_litert_and_refuses_armv7l() -> None:
    plan = plan_for("noble", "x86_64")
    assert (plan.python_runtime.package, plan.python_runtime.version) == ("ai-edge-litert", "2.3.0")
    assert plan.python_runtime.python_tag == "cp312"
    assert plan.numpy.source == "apt"
    with pytest.raises(UnsupportedTarget) as err:
        plan_for("noble", "armv7l")
    assert err.value.nearest == "jammy armv7l python 3.10"


# ---------------------------------------------------------------------------------------
# Choices and refusals.


def test_max_without_eula_is_refused() -> None:
    with pytest.raises(ConfigError, match="coralpi_accept_max_eula"):
        plan_for("bookworm", "aarch64", runtime="max")
    plan = plan_for("bookworm", "aarch64", runtime="max", accept_max_eula=True)
    assert plan.runtime.package == "libedgetpu1-max"
    assert plan.runtime.conflicts == "libedgetpu1-std"


def test_armv7l_pip_opencv_needs_an_index() -> None:
    with pytest.raises(ConfigError, match="coralpi_pip_index_url"):
        plan_for("bookworm", "armv7l", opencv="pip")
    plan = plan_for("bookworm", "armv7l", opencv="pip", pip_index_url=PIWHEELS)
    assert plan.ld_preload == "/usr/lib/arm-linux-gnueabihf/libatomic.so.1"
    assert "__atomic_fetch_add_8" in plan.ld_preload_reason
    assert "libatomic1" in plan.apt_packages
    assert "opencv-python-headless==4.11.0.86" in plan.pip_requirements
    assert "python3-opencv" not in plan.apt_packages


def test_pip_opencv_on_arm64_needs_no_preload_and_raises_the_numpy_floor() -> None:
    plan = plan_for("bookworm", "aarch64", opencv="pip")
    assert plan.ld_preload is None
    assert plan.opencv.version == "4.11.0.86"
    # opencv-python-headless 4.11 needs numpy>=1.23.5 on python 3.11; bookworm has 1.24.2.
    assert plan.numpy.constraint == ">=1.23.5,<2"
    assert plan.numpy.source == "apt"


def test_unknown_codename_is_refused() -> None:
    with pytest.raises(UnsupportedTarget, match="unknown release 'focal'") as err:
        resolve(Target("ubuntu", "focal", "aarch64", "3.8", "2.31"), Choices())
    assert err.value.nearest is not None
    # An unknown release has no place in its family's order: the newest of the family.
    assert err.value.nearest.startswith("resolute aarch64")


def test_os_id_must_match_the_release() -> None:
    with pytest.raises(ConfigError, match="os_id 'ubuntu'"):
        resolve(Target("ubuntu", "bookworm", "aarch64", "3.11", "2.36"), Choices())


def test_apt_opencv_needs_the_release_python() -> None:
    with pytest.raises(ConfigError, match="coralpi_opencv"):
        plan_for("bookworm", "aarch64", python="3.10")


def test_foreign_python_gets_everything_from_pip_in_an_isolated_venv() -> None:
    plan = plan_for("bookworm", "aarch64", python="3.10", opencv="pip")
    assert plan.numpy.source == "pip"
    assert not plan.venv.system_site_packages
    assert plan.apt_packages == ()
    assert "Pillow" in plan.pip_requirements


@pytest.mark.parametrize(("python", "newest"), [("3.14", "2.5.5"), ("3.11", "1.26.4")])
def test_a_python_newer_than_the_release_gets_numpy_wheels_for_its_own_tag(
    python: str, newest: str
) -> None:
    # numpy 2.3.2 and later ship cp314 wheels (numpy_pypi); on 3.11 tflite-runtime keeps numpy<2
    plan = plan_for("trixie", "aarch64", python=python, opencv="pip")
    assert plan.numpy.source == "pip"
    assert f"PyPI has numpy {newest} wheels for cp{python.replace('.', '')} aarch64" in (
        plan.numpy.reason
    )


def test_numpy_wheels_stop_at_the_newest_python_they_were_built_for() -> None:
    # python 3.16 has no numpy wheel on PyPI yet: refused, naming the tag
    with pytest.raises(UnsupportedTarget, match="cp316"):
        plan_for("trixie", "aarch64", python="3.16", opencv="pip")


@pytest.mark.parametrize(("arch", "cp"), [("aarch64", "cp311"), ("x86_64", "cp311")])
def test_community_wheels_give_the_matched_2_17_1_pair_when_opted_in(arch: str, cp: str) -> None:
    default = plan_for("bookworm", arch)
    assert (default.python_runtime.package, default.python_runtime.version) == (
        "tflite-runtime",
        "2.14.0",
    )
    assert default.python_runtime.origin == "pypi" and default.python_runtime.wheel_file == ""
    plan = plan_for("bookworm", arch, community_wheels=True)
    py = plan.python_runtime
    assert (py.package, py.version, py.tf_version, py.origin) == (
        "tflite-runtime",
        "2.17.1",
        "2.17.1",
        "community",
    )
    assert py.wheel_file == f"tflite_runtime-2.17.1-{cp}-{cp}-linux_{arch}.whl"
    assert py.release_tag == "v2.17.1"
    assert "coralpi_community_wheels: true" in py.reason and "pinned by sha256" in py.reason
    # the runtime built for its own TF: libedgetpu 16.0tf2.17.1, Frigate's pair
    assert plan.runtime.version == "16.0tf2.17.1-1"
    assert "matched" in plan.runtime.reason
    assert "tflite-runtime==2.17.1" in plan.pip_requirements
    # numpy: the wheel is built against numpy 1.x; bookworm's python3-numpy 1.24.2 meets it
    assert plan.numpy.source == "apt" and "<2" in plan.numpy.constraint


def test_community_wheels_leave_hosts_they_do_not_fit_as_they_were() -> None:
    # armv7l: no community file; python 3.13 on trixie: numpy<2 cannot be had for cp313
    def decided(plan: Plan) -> tuple[Any, ...]:
        py, rt = plan.python_runtime, plan.runtime
        return (
            py.package,
            py.version,
            py.origin,
            rt.version,
            plan.numpy.source,
            plan.pip_requirements,
        )

    for codename, arch in (("bookworm", "armv7l"), ("trixie", "aarch64"), ("trixie", "x86_64")):
        opted = plan_for(codename, arch, community_wheels=True)
        assert decided(opted) == decided(plan_for(codename, arch)), (codename, arch)
    trixie = plan_for("trixie", "aarch64", community_wheels=True)
    assert trixie.python_runtime.package == "ai-edge-litert"
    assert trixie.choices.community_wheels is True
    assert "tflite-runtime 2.17.1" in trixie.runtime.reason  # passed over, and said so


def test_community_wheels_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="coralpi_community_wheels"):
        Choices(community_wheels="yes")  # type: ignore[arg-type]


def test_camera_off_and_non_pi_boards() -> None:
    off = plan_for("bookworm", "aarch64", board=PI5, camera=False)
    assert (off.camera.method, off.camera.config_path) == ("none", None)
    pc = plan_for("bookworm", "x86_64", board="Generic x86 PC")
    assert pc.camera.method == "none"
    assert "not a Raspberry Pi" in pc.camera.reason


def test_ubuntu_on_a_pi_uses_the_firmware_config() -> None:
    plan = plan_for("noble", "aarch64", board=PI5)
    assert plan.camera.method == "camera-auto-detect"
    assert plan.camera.config_path == "/boot/firmware/config.txt"


PI5_LINES = (
    "dtparam=pciex1",
    "dtoverlay=pciex1-compat-pi5,no-mip",
    "dtoverlay=pcie-32bit-dma-pi5",
    "kernel=kernel8.img",
)


@pytest.mark.parametrize("codename", ["bookworm", "trixie"])
def test_pcie_on_a_pi5_plans_the_boot_lines_the_4k_kernel_its_headers_and_the_driver(
    codename: str,
) -> None:
    plan = plan_for(codename, "aarch64", board=PI5, accelerator="pcie")
    assert not [w for w in plan.warnings if "pcie" in w.lower()]
    pcie = plan.pcie
    assert pcie is not None
    assert (pcie.config_path, pcie.config_section) == ("/boot/firmware/config.txt", "[all]")
    assert pcie.config_lines == PI5_LINES
    assert (pcie.kernel, pcie.headers_packages) == ("kernel8.img", ("linux-headers-rpi-v8",))
    # A community build that has the 6.12 fix, not Coral's 1.0-18 (nor feranick's 1.0-18.2).
    assert (pcie.driver_package, pcie.driver_deb) == ("gasket-dkms", "gasket-dkms_1.0-18.4_all.deb")
    assert pcie.reboot == "when config.txt changes"
    # The headers are the driver role's, not an apt package of the plan's Python stack.
    assert "linux-headers-rpi-v8" not in plan.apt_packages
    assert "gasket-dkms" not in plan.apt_packages
    data = plan.to_dict()["pcie"]
    assert data["config_lines"] == list(PI5_LINES)
    reason = next(r for r in plan.reasons if r.startswith("pcie: "))
    for said in ("kernel_2712.img", "16k", "no_llseek", "reboot", "linux-headers-rpi-v8"):
        assert said in reason, said


def test_pcie_on_compute_modules() -> None:
    cm4 = plan_for(
        "bookworm", "aarch64", board="Raspberry Pi Compute Module 4 Rev 1.0", accelerator="pcie"
    ).pcie
    assert cm4 is not None
    assert (cm4.config_lines, cm4.kernel, cm4.reboot) == ((), "kernel8.img", "no")
    cm5 = plan_for(
        "bookworm", "aarch64", board="Raspberry Pi Compute Module 5 Rev 1.0", accelerator="pcie"
    ).pcie
    assert cm5 is not None
    assert "kernel=kernel8.img" in cm5.config_lines
    assert "dtparam=pciex1" not in cm5.config_lines


@pytest.mark.parametrize(
    "board",
    [
        PI4,
        "Raspberry Pi 500 Rev 1.0",  # starts with "Raspberry Pi 5" but has no PCIe connector
        "Raspberry Pi Compute Module 4S Rev 1.0",  # starts with "...Module 4": no PCIe
        "Raspberry Pi 3 Model B Plus Rev 1.3",
    ],
)
def test_pcie_is_refused_on_a_pi_without_a_lane(board: str) -> None:
    # ConfigError where the boards table knows the board, UnsupportedTarget otherwise.
    with pytest.raises((ConfigError, UnsupportedTarget)) as err:
        plan_for("bookworm", "aarch64", board=board, accelerator="pcie")
    assert "no PCIe lane" in str(err.value)
    assert "coralpi_accelerator: usb" in str(err.value)
    plan_for("bookworm", "aarch64", board=board, accelerator="usb")  # the USB Coral fits


def test_pcie_is_refused_on_ubuntu_for_pi_with_the_reason() -> None:
    with pytest.raises(UnsupportedTarget) as err:
        plan_for("noble", "aarch64", board=PI5, accelerator="pcie")
    assert "kernel8.img" in str(err.value) and "unbootable" in str(err.value)


@pytest.mark.parametrize(("codename", "arch"), [("bookworm", "armv7l"), ("bullseye", "aarch64")])
def test_pcie_on_a_pi_needs_64_bit_bookworm_or_later(codename: str, arch: str) -> None:
    with pytest.raises(UnsupportedTarget) as err:
        plan_for(codename, arch, board=PI5, accelerator="pcie")
    # bullseye: the boards table refuses the Pi 5 there first, naming bookworm
    assert "64-bit Raspberry Pi OS" in str(err.value) or "bookworm" in str(err.value)


def test_pcie_off_a_pi_writes_no_boot_lines_and_uses_debian_headers() -> None:
    plan = plan_for("bookworm", "x86_64", board="Generic x86 PC", accelerator="pcie")
    assert plan.pcie is not None
    assert (plan.pcie.config_lines, plan.pcie.kernel) == ((), None)
    assert plan.pcie.headers_packages == ("linux-headers-amd64",)
    assert any("not a Raspberry Pi" in w for w in plan.warnings)
    assert plan_for("bookworm", "x86_64", board=PI5).pcie is None  # usb: no decision


def test_pcie_board_matches_whole_words_only() -> None:
    assert pcie_board("Raspberry Pi 5 Model B Rev 1.0") is not None
    assert pcie_board("Raspberry Pi 5") is not None
    assert pcie_board("Raspberry Pi 500 Rev 1.0") is None
    assert pcie_board(None) is None


def test_pcie_refused_on_a_known_board_names_what_works_there() -> None:
    with pytest.raises(ConfigError) as err:
        plan_for("bookworm", "aarch64", board=PI4, accelerator="pcie")
    message = str(err.value)
    assert "Raspberry Pi 4" in message and "no PCIe lane" in message
    assert "coralpi_accelerator: usb" in message  # what works on this board
    assert "Raspberry Pi 5" in message and "Compute Module 4" in message


# ---------------------------------------------------------------------------------------
# Platform tags.


def test_bookworm_aarch64_platform_tags() -> None:
    tags = platform_tags("aarch64", "2.36")
    assert "manylinux_2_34_aarch64" in tags
    assert "manylinux2014_aarch64" in tags
    assert "manylinux_2_17_aarch64" in tags
    assert tags[-1] == "linux_aarch64"
    assert "manylinux_2_37_aarch64" not in tags
    assert "manylinux2010_aarch64" not in tags  # legacy 2010/1 tags are x86 only
    assert tags.index("manylinux_2_36_aarch64") == 0


def test_bullseye_excludes_manylinux_2_34() -> None:
    tags = platform_tags("armv7l", "2.31")
    assert "manylinux_2_31_armv7l" in tags
    assert "manylinux_2_34_armv7l" not in tags
    assert "manylinux2014_armv7l" in tags


def test_x86_64_keeps_the_old_legacy_tags() -> None:
    tags = platform_tags("x86_64", "2.28")
    assert {"manylinux2010_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"} <= set(tags)
    assert "manylinux_2_4_x86_64" not in tags


@pytest.mark.skipif(
    platform.machine() != "x86_64" or platform.libc_ver()[0] != "glibc",
    reason="compares with packaging's tags for this (x86_64 glibc) machine",
)
def test_tags_match_packaging_for_this_machine() -> None:
    glibc = platform.libc_ver()[1]
    theirs = list(_manylinux.platform_tags(["x86_64"]))
    ours = platform_tags("x86_64", glibc)
    assert list(ours[:-1]) == theirs
    assert ours[-1] == "linux_x86_64"


@pytest.mark.parametrize(("arch", "glibc"), [("aarch64", "2.31"), ("armv7l", "2.36")])
def test_tags_match_packaging_for_other_hosts(
    monkeypatch: pytest.MonkeyPatch, arch: str, glibc: str
) -> None:
    major, minor = (int(x) for x in glibc.split("."))
    monkeypatch.setattr(_manylinux, "_get_glibc_version", lambda: (major, minor))
    monkeypatch.setattr(_manylinux, "_have_compatible_abi", lambda *_: True)
    monkeypatch.setattr(_manylinux, "_is_compatible", lambda *_: True)
    assert list(platform_tags(arch, glibc)[:-1]) == list(_manylinux.platform_tags([arch]))


# ---------------------------------------------------------------------------------------
# Plan shape and helpers.

DESIGN_KEYS = {
    "pcie",
    "target",
    "choices",
    "runtime",
    "python_runtime",
    "numpy",
    "opencv",
    "ld_preload",
    "ld_preload_reason",
    "camera",
    "venv",
    "apt_packages",
    "pip_requirements",
    "controller",
    "warnings",
    "sources",
    "reasons",
}
SUPPORTED = [
    ("buster", "armv7l"),
    ("bullseye", "aarch64"),
    ("bullseye", "armv7l"),
    ("bookworm", "x86_64"),
    ("bookworm", "aarch64"),
    ("bookworm", "armv7l"),
    ("trixie", "aarch64"),
    ("trixie", "x86_64"),
    ("jammy", "aarch64"),
    ("noble", "aarch64"),
    ("resolute", "aarch64"),
    ("resolute", "x86_64"),
]


@pytest.mark.parametrize(("codename", "arch"), SUPPORTED)
def test_plan_dict_has_the_design_shape(codename: str, arch: str) -> None:
    data = json.loads(json.dumps(plan_for(codename, arch, board=PI4).to_dict()))
    assert set(data) == DESIGN_KEYS
    for section in ("runtime", "python_runtime", "numpy", "opencv", "camera", "venv", "controller"):
        assert data[section]["reason"], section
    assert set(data["runtime"]) == {
        "source",
        "package",
        "conflicts",
        "version",
        "deb_filename",
        "tf_version",
        "release_tag",
        "reason",
    }
    assert set(data["python_runtime"]) == {
        "package",
        "version",
        "module",
        "python_tag",
        "platform_tags",
        "tf_version",
        "origin",
        "wheel_file",
        "release_tag",
        "reason",
    }
    assert data["python_runtime"]["origin"] == "pypi"  # community wheels are opt-in
    assert data["runtime"]["tf_version"] and data["python_runtime"]["tf_version"]
    assert all(set(s) == {"what", "source", "checked"} for s in data["sources"])
    assert any(s["what"] == f"release {codename}" for s in data["sources"])
    assert data["ld_preload_reason"]
    prefixes = {r.split(":", 1)[0] for r in data["reasons"]}
    assert {
        "runtime",
        "python_runtime",
        "numpy",
        "opencv",
        "camera",
        "venv",
        "controller",
    } <= prefixes
    assert data["target"]["codename"] == codename
    assert data["venv"]["path"] == "/opt/coralpi/venv"


def test_community_builds_name_known_releases() -> None:
    m = load_matrix()
    for source in m.sources:
        for rel in source.releases:
            assert set(rel.codenames) <= set(m.releases)
            assert set(rel.builds) <= set(rel.codenames)
            if not rel.builds:  # apt: one suite for every release it lists
                continue
            assert set(rel.native) <= set(rel.builds)
            for codename in rel.native:  # a native build is named for its own release
                release = m.releases[codename]
                own = codename if release.family == "debian" else f"ubuntu{release.version}"
                assert rel.builds[codename] == own, (rel.version, codename)


def test_merge_specifiers_keeps_the_tightest_bounds() -> None:
    assert merge_specifiers(">=1.23.2,<2", ">=1.23.5") == ">=1.23.5,<2"
    assert merge_specifiers(">=1.19.2,<2", "") == ">=1.19.2,<2"
    assert merge_specifiers(">=1.2", "<3", "<2") == ">=1.2,<2"
