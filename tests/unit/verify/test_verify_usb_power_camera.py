"""verify beside the PCIe Coral, on every board: the Pi 5's USB current limit against what the
Coral USB Accelerator draws (recorded device trees, `--root`), and whether a camera sensor is
really there (the camera tools' recorded output), not only the config.txt line."""

from __future__ import annotations

import pytest
from verify_fakeroot import FakeRoot

from verify import checks, expected, facts
from verify.camera import (
    CameraFacts,
    Runner,
    gather_camera,
    parse_get_camera,
    parse_list_cameras,
)
from verify.rootfs import RootFS
from verify.usbpower import DT_POWER, has_pi5_power, parse_dt_u32

PI5 = "Raspberry Pi 5 Model B Rev 1.0"
PI4 = "Raspberry Pi 4 Model B Rev 1.4"
USB = expected.Expected(accelerator="usb")
CAMERA = expected.Expected(camera=True, camera_method="camera-auto-detect")

#: `rpicam-hello --list-cameras` on a Pi 5 with a Camera Module 3 Wide (Bookworm), and
#: with nothing attached; `vcgencmd get_camera` on Buster's legacy stack.
LIST_CAMERAS = """\
Available cameras
-----------------
0 : imx708_wide [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)
    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
                             2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]
                             4608x2592 [14.35 fps - (0, 0)/4608x2592 crop]

1 : imx477 [4056x3040 12-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@80000/imx477@1a)
    Modes: 'SRGGB10_CSI2P' : 1332x990 [120.05 fps - (696, 528)/2664x1980 crop]
"""
NO_CAMERAS = "No cameras available!\n"
GET_CAMERA_FOUND = "supported=1 detected=1, libcamera interfaces=0\n"
GET_CAMERA_NONE = "supported=1 detected=0, libcamera interfaces=0\n"


def cell(value: int) -> bytes:
    return value.to_bytes(4, "big")


def pi5_with_usb_coral(root: FakeRoot, supply_ma: int | None, config: str = "") -> FakeRoot:
    root.os_release().board(PI5).usb("18d1", "9302")
    root.config_txt("[all]\n" + config)
    if supply_ma is not None:
        root.write(f"{DT_POWER}/max_current", cell(supply_ma))
    return root


def usb_power(root: FakeRoot, exp: expected.Expected = USB) -> checks.CheckResult:
    return checks.check_usb_power(facts.gather_system(RootFS(str(root.path)), "pi"), exp)


def test_device_tree_cells_and_boards() -> None:
    assert parse_dt_u32(cell(5000)) == 5000
    assert parse_dt_u32(b"\x00\x00\x0b") is None and parse_dt_u32(None) is None
    assert has_pi5_power(PI5) and has_pi5_power("Raspberry Pi 500 Rev 1.0")
    assert not has_pi5_power(PI4) and not has_pi5_power("Raspberry Pi 500+ Rev 1.0")
    assert not has_pi5_power(None)


def test_a_3a_supply_limits_the_usb_coral_with_a_one_line_fix(fake_root: FakeRoot) -> None:
    result = usb_power(pi5_with_usb_coral(fake_root, 3000))
    assert result.status == "warn"
    assert "limited to 600 mA in total (the supply announced 3000 mA" in result.detail
    assert "may draw up to 900 mA" in result.detail
    assert "usb_max_current_enable=1 under [all]" in result.fix


def test_a_5a_supply_or_the_config_line_lifts_the_limit(
    fake_root: FakeRoot, tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = usb_power(pi5_with_usb_coral(fake_root, 5000))
    assert (result.status, result.detail) == (
        "pass",
        "USB ports may draw 1600 mA (the supply announced 5000 mA)",
    )
    other = FakeRoot(tmp_path_factory.mktemp("root"))
    result = usb_power(pi5_with_usb_coral(other, 3000, "usb_max_current_enable=1\n"))
    assert result.status == "pass" and "usb_max_current_enable=1 is in effect" in result.detail


def test_the_line_under_another_boards_section_does_not_count(fake_root: FakeRoot) -> None:
    root = pi5_with_usb_coral(fake_root, 3000, "[pi4]\nusb_max_current_enable=1\n[all]\n")
    assert usb_power(root).status == "warn"


def test_an_over_current_the_firmware_saw_is_named(fake_root: FakeRoot) -> None:
    root = pi5_with_usb_coral(fake_root, 5000)
    root.write(f"{DT_POWER}/usb_over_current_detected", cell(1))
    result = usb_power(root)
    assert result.status == "warn" and "over-current" in result.detail
    assert "powered USB hub" in result.fix


def test_no_usb_limit_check_where_it_does_not_apply(
    fake_root: FakeRoot, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # a PCIe Coral on the Pi 5; a Pi 4 (its own limits); a Pi 5 with nothing on USB
    pcie = expected.Expected(accelerator="pcie")
    assert usb_power(pi5_with_usb_coral(fake_root, 3000), pcie).status == "skip"
    pi4 = FakeRoot(tmp_path_factory.mktemp("root"))
    pi4.os_release().board(PI4).usb("18d1", "9302")
    assert usb_power(pi4).status == "skip"
    bare = FakeRoot(tmp_path_factory.mktemp("root"))
    bare.os_release().board(PI5).config_txt("[all]\n")
    assert usb_power(bare, expected.Expected()).status == "skip"
    # unknown supply, no line: still the 600 mA limit, said so
    unknown = FakeRoot(tmp_path_factory.mktemp("root"))
    result = usb_power(pi5_with_usb_coral(unknown, None))
    assert result.status == "warn" and "current is unknown" in result.detail


def test_camera_tool_output_is_parsed() -> None:
    assert parse_list_cameras(LIST_CAMERAS) == ["imx708_wide", "imx477"]
    assert parse_list_cameras(NO_CAMERAS) == []
    assert parse_get_camera(GET_CAMERA_FOUND) == (True, True)
    assert parse_get_camera(GET_CAMERA_NONE) == (True, False)
    assert parse_get_camera('error=1 error_msg="Command not registered"') is None


def recorded(outputs: dict[str, tuple[int, str]]) -> Runner:
    """A runner answering with recorded output; programs not in ``outputs`` are absent."""

    def run(argv: tuple[str, ...]) -> tuple[int, str] | None:
        return outputs.get(argv[0])

    return run


def sensor_check(
    root: FakeRoot, outputs: dict[str, tuple[int, str]], exp: expected.Expected = CAMERA
) -> checks.CheckResult:
    gathered = facts.gather_system(RootFS(str(root.path)), "pi", recorded(outputs))
    return checks.check_camera_sensor(gathered, exp)


def camera_pi(root: FakeRoot, codename: str = "bookworm") -> FakeRoot:
    root.os_release(codename).board(PI5).config_txt("[all]\ncamera_auto_detect=1\n")
    return root


def test_a_sensor_found_by_rpicam_hello_passes(fake_root: FakeRoot) -> None:
    result = sensor_check(camera_pi(fake_root), {"rpicam-hello": (0, LIST_CAMERAS)})
    assert result.status == "pass"
    assert result.detail == "imx708_wide, imx477 found by rpicam-hello --list-cameras"


def test_the_config_line_without_a_sensor_fails_with_the_cable_fix(fake_root: FakeRoot) -> None:
    root = camera_pi(fake_root)
    gathered = facts.gather_system(
        RootFS(str(root.path)), "pi", recorded({"libcamera-hello": (0, NO_CAMERAS)})
    )
    assert checks.check_camera(gathered, CAMERA).status == "pass"  # the line is there
    result = checks.check_camera_sensor(gathered, CAMERA)
    assert result.status == "fail"
    assert result.detail == "no camera sensor found by libcamera-hello --list-cameras"
    assert "ribbon cable" in result.fix


def test_no_sensor_while_the_camera_line_waits_for_a_reboot(fake_root: FakeRoot) -> None:
    root = camera_pi(fake_root)
    root.write(
        "/run/coralpi/reboot-pending", "/boot/firmware/config.txt: camera (camera-auto-detect)\n"
    )
    result = sensor_check(root, {"rpicam-hello": (0, NO_CAMERAS)})
    assert result.status == "warn" and "a reboot is pending" in result.detail
    assert result.fix == "sudo reboot, then verify again"


def test_the_legacy_stack_asks_vcgencmd(fake_root: FakeRoot) -> None:
    root = camera_pi(fake_root, "buster")
    legacy = expected.Expected(camera=True, camera_method="raspi-config-legacy")
    assert sensor_check(root, {"vcgencmd": (0, GET_CAMERA_FOUND)}, legacy).status == "pass"
    result = sensor_check(root, {"vcgencmd": (0, GET_CAMERA_NONE)}, legacy)
    assert result.status == "fail" and "vcgencmd get_camera" in result.detail


def test_an_unreadable_answer_a_missing_tool_and_no_camera_wanted(fake_root: FakeRoot) -> None:
    root = camera_pi(fake_root)
    odd = sensor_check(root, {"rpicam-hello": (255, "ERROR: *** failed to open camera ***\n")})
    assert odd.status == "warn" and "failed to open camera" in odd.detail
    assert sensor_check(root, {}).status == "skip"
    unwanted = expected.Expected(camera=False)
    assert sensor_check(root, {"rpicam-hello": (0, NO_CAMERAS)}, unwanted).status == "skip"


def test_nothing_is_run_under_root_without_a_runner(fake_root: FakeRoot) -> None:
    assert gather_camera(RootFS(str(camera_pi(fake_root).path))) == CameraFacts()
