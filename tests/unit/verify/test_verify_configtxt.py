from __future__ import annotations

import time

import pytest

from testfleet.pi_files import BOOKWORM_CONFIG_TXT
from verify import configtxt

PI4 = "Raspberry Pi 4 Model B Rev 1.4"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"
CM4 = "Raspberry Pi Compute Module 4 Rev 1.0"
ZERO2 = "Raspberry Pi Zero 2 W Rev 1.0"
PI3P = "Raspberry Pi 3 Model B Plus Rev 1.3"

BOOKWORM_STOCK = BOOKWORM_CONFIG_TXT


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
    assert any("include cycle config.txt -> loop.txt -> loop.txt" in p for p in result.problems)
    on_pi5 = configtxt.evaluate(text, PI5, read_include=files.get)
    assert on_pi5.get("start_x") == "0"  # the include sat under [pi4]


# ------------------------------------------------------------------ bounded includes


class CountingReader:
    """read_include over a dict of files, counting the reads."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.reads = 0

    def __call__(self, name: str) -> str | None:
        self.reads += 1
        return self.files.get(name)


@pytest.mark.timeout(30)
def test_a_file_including_itself_30_times_is_read_once_and_the_cycle_reported() -> None:
    text = "start_x=1\n" + "include config.txt\n" * 30
    reader = CountingReader({"config.txt": text})
    started = time.monotonic()
    result = configtxt.evaluate(text, PI4, "/boot/firmware/config.txt", reader)
    assert time.monotonic() - started < 1.0
    assert reader.reads == 0  # config.txt is the file being read: never entered again
    assert result.get("start_x") == "1" and result.incomplete
    assert result.problems[0] == (
        "/boot/firmware/config.txt:2: include 'config.txt' not followed: "
        "include cycle /boot/firmware/config.txt -> config.txt"
    )
    assert len(result.problems) == configtxt.MAX_PROBLEMS + 1
    assert result.problems[-1] == f"{30 - configtxt.MAX_PROBLEMS} more notes not shown"


@pytest.mark.timeout(30)
def test_a_cycle_through_two_files_is_cut_and_named() -> None:
    files = {"a.txt": "gpu_mem=64\ninclude b.txt\n", "b.txt": "include a.txt\n" * 30}
    reader = CountingReader(files)
    result = configtxt.evaluate("include a.txt\n", PI4, read_include=reader)
    assert reader.reads == 2  # a.txt and b.txt, once each
    assert result.get("gpu_mem") == "64" and result.incomplete
    assert result.problems[0] == (
        "b.txt:1: include 'a.txt' not followed: include cycle config.txt -> a.txt -> b.txt -> a.txt"
    )


def test_the_same_file_spelled_differently_is_the_same_file() -> None:
    # the boot partition is FAT: case does not matter; `./` and a leading `/` neither
    files = {"Extra.TXT": "include ./extra.txt\n", "./extra.txt": "include /EXTRA.txt\n"}
    result = configtxt.evaluate("include Extra.TXT\n", PI4, read_include=files.get)
    assert result.files == ["config.txt", "Extra.TXT"]
    assert "include cycle config.txt -> Extra.TXT -> ./extra.txt" in result.problems[0]


@pytest.mark.timeout(30)
def test_fan_out_of_one_file_included_many_times_is_capped() -> None:
    # each level includes the next 30 times: 30**5 files without a cap
    files = {f"l{n}.txt": f"include l{n + 1}.txt\n" * 30 for n in range(5)}
    files["l5.txt"] = "dtoverlay=x\n"
    reader = CountingReader(files)
    result = configtxt.evaluate("include l0.txt\n", PI4, read_include=reader)
    assert reader.reads == configtxt.MAX_INCLUDES
    assert result.incomplete
    assert any(f"more than {configtxt.MAX_INCLUDES} includes" in p for p in result.problems)


def test_repeated_includes_below_the_limits_keep_their_meaning() -> None:
    files = {"overlay.txt": "dtoverlay=vc4-kms-v3d\n", "camera.txt": "camera_auto_detect=1\n"}
    text = "include overlay.txt\ninclude camera.txt\ncamera_auto_detect=0\ninclude camera.txt\n"
    result = configtxt.evaluate(text, PI4, read_include=files.get)
    assert result.files == ["config.txt", "overlay.txt", "camera.txt", "camera.txt"]
    assert result.get("camera_auto_detect") == "1"
    assert result.values["camera_auto_detect"].source == "camera.txt"
    assert not result.problems and not result.incomplete


def test_nesting_deeper_than_the_limit_is_reported() -> None:
    files = {f"f{n}.txt": f"v{n}=1\ninclude f{n + 1}.txt\n" for n in range(20)}
    result = configtxt.evaluate("include f0.txt\n", PI4, read_include=files.get)
    depth = configtxt.MAX_INCLUDE_DEPTH
    assert result.get(f"v{depth - 1}") == "1" and result.get(f"v{depth}") is None
    assert result.incomplete
    assert result.problems == [
        f"f{depth - 1}.txt:2: include nesting deeper than {configtxt.MAX_INCLUDE_DEPTH}"
    ]


@pytest.mark.timeout(30)
def test_lines_read_in_all_are_capped() -> None:
    files = {"big.txt": "gpu_mem=64\n" * configtxt.MAX_LINES + "start_x=1\n"}
    result = configtxt.evaluate(
        "include big.txt\ncamera_auto_detect=1\n", PI4, "config.txt", files.get
    )
    assert result.get("gpu_mem") == "64"
    assert result.get("start_x") is None and result.get("camera_auto_detect") is None
    assert result.incomplete
    assert result.problems == [
        f"big.txt:{configtxt.MAX_LINES}: stopped after {configtxt.MAX_LINES} lines in all "
        "(config.txt and its includes); the rest is not read"
    ]
