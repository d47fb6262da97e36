from __future__ import annotations

import pytest

from verify import configtxt

PI4 = "Raspberry Pi 4 Model B Rev 1.4"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"
CM4 = "Raspberry Pi Compute Module 4 Rev 1.0"
ZERO2 = "Raspberry Pi Zero 2 W Rev 1.0"
PI3P = "Raspberry Pi 3 Model B Plus Rev 1.3"

BOOKWORM_STOCK = """\
# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host

[all]
"""


@pytest.mark.parametrize(
    ("board", "expected"),
    [
        (PI4, {"pi4"}),
        (PI5, {"pi5"}),
        (CM4, {"cm4", "pi4"}),
        ("Raspberry Pi 400 Rev 1.0", {"pi400", "pi4"}),
        ("Raspberry Pi Compute Module 5 Rev 1.0", {"cm5", "pi5"}),
        (ZERO2, {"pi02", "pi0w", "pi0"}),
        ("Raspberry Pi Zero W Rev 1.1", {"pi0w", "pi0"}),
        (PI3P, {"pi3+", "pi3"}),
        ("Raspberry Pi 3 Model B Rev 1.2", {"pi3"}),
        (None, set()),
        ("Some x86 box", set()),
    ],
)
def test_model_filters(board: str | None, expected: set[str]) -> None:
    assert configtxt.model_filters(board) == expected


def test_stock_bookworm_file_sections() -> None:
    on_pi4 = configtxt.evaluate(BOOKWORM_STOCK, PI4)
    assert on_pi4.get("camera_auto_detect") == "1"
    assert on_pi4.get("otg_mode") is None
    assert on_pi4.has_overlay("vc4-kms-v3d")
    assert not on_pi4.has_overlay("dwc2")
    on_cm4 = configtxt.evaluate(BOOKWORM_STOCK, CM4)
    assert on_cm4.get("otg_mode") == "1"
    on_cm5 = configtxt.evaluate(BOOKWORM_STOCK, "Raspberry Pi Compute Module 5 Rev 1.0")
    assert on_cm5.has_overlay("dwc2")
    assert on_cm5.get("otg_mode") is None


def test_later_line_overrides_earlier_and_sections_select_board() -> None:
    text = """\
camera_auto_detect=1
[pi4]
camera_auto_detect=0
[pi5]
camera_auto_detect=1
start_x=1
[all]
gpu_mem=64
"""
    pi4 = configtxt.evaluate(text, PI4)
    assert pi4.get("camera_auto_detect") == "0"
    assert pi4.values["camera_auto_detect"].line == 3
    assert pi4.get("start_x") is None
    assert pi4.get("gpu_mem") == "64"
    pi5 = configtxt.evaluate(text, PI5)
    assert pi5.get("camera_auto_detect") == "1"
    assert pi5.get("start_x") == "1"
    # unknown board: only unconditional lines and [all]
    none = configtxt.evaluate(text, None)
    assert none.get("camera_auto_detect") == "1"
    assert none.get("gpu_mem") == "64"


def test_none_section_hides_until_all_and_unknown_filters_do_not_match() -> None:
    text = """\
[none]
start_x=1
[all]
[edid=VSC-TD2220]
start_x=1
[all]
[HDMI:0]
hdmi_group=1
[gpio4=1]
gpu_mem=256
[all]
gpu_mem=128
"""
    result = configtxt.evaluate(text, PI4)
    assert result.get("start_x") is None
    assert result.get("hdmi_group") == "1"
    assert result.get("gpu_mem") == "128"


def test_different_filter_kinds_combine() -> None:
    text = "[pi4]\n[tryboot]\nstart_x=1\n[all]\n[pi4]\n[HDMI:1]\ngpu_mem=128\n"
    result = configtxt.evaluate(text, PI4)
    assert result.get("start_x") is None  # pi4 AND tryboot: tryboot is false here
    assert result.get("gpu_mem") == "128"


def test_comments_whitespace_and_dtparams() -> None:
    text = "  start_x = 1   # legacy camera\n#start_x=0\ndtparam=pciex1\ndtparam=i2c_arm=off\n"
    result = configtxt.evaluate(text, PI5)
    assert result.get("start_x") == "1"
    assert result.has_dtparam("pciex1")
    assert not result.has_dtparam("i2c_arm")


def test_include_is_read_in_place_and_follows_conditions() -> None:
    files = {"extra.txt": "start_x=1\n[pi5]\ngpu_mem=256\n", "loop.txt": "include loop.txt\n"}
    text = "start_x=0\n[pi4]\ninclude extra.txt\n[all]\ninclude missing.txt\ninclude loop.txt\n"
    result = configtxt.evaluate(text, PI4, read_include=files.get)
    assert result.get("start_x") == "1"
    assert result.get("gpu_mem") is None
    assert "extra.txt" in result.files
    assert any("missing.txt" in p for p in result.problems)
    assert any("nesting" in p for p in result.problems)
    on_pi5 = configtxt.evaluate(text, PI5, read_include=files.get)
    assert on_pi5.get("start_x") == "0"  # the include sat under [pi4]
