"""coralpi_boot's config.txt editing (the role's own module, `coralpi_configtxt`): the PCIe
Coral's lines written once in one marked block, the user's lines kept byte for byte, a line
already in effect not repeated, the previous file kept beside the new one."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from testfleet.pi_files import BOOKWORM_CONFIG_TXT
from verify import configtxt

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "playbooks" / "roles" / "coralpi_boot" / "library" / "coralpi_configtxt.py"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"
PI5_LINES = [
    "dtparam=pciex1",
    "dtoverlay=pciex1-compat-pi5,no-mip",
    "dtoverlay=pcie-32bit-dma-pi5",
    "kernel=kernel8.img",
]
#: Raspberry Pi OS Bookworm's /boot/firmware/config.txt as the image ships it (comments
#: shortened), with its conditional sections, plus a user's own lines.
BOOKWORM = BOOKWORM_CONFIG_TXT + "# the user's own\ndtparam=fan_temp0=45000\n"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coralpi_configtxt", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


edit = load_module().edit


def test_the_lines_go_into_one_block_under_all_and_the_users_lines_stay() -> None:
    after, added = edit(BOOKWORM, PI5_LINES)
    assert added == PI5_LINES
    assert after.startswith(BOOKWORM)  # nothing of the user's changed or moved
    block = after[len(BOOKWORM) :].splitlines()
    assert block[1] == "[all]" and block[2:-1] == PI5_LINES
    assert block[0].startswith("# BEGIN coralpi_boot") and block[-1] == "# END coralpi_boot"


def test_the_firmware_reads_the_lines_on_a_pi5() -> None:
    after, _ = edit(BOOKWORM, PI5_LINES)
    # verify's own reading of config.txt (conditional sections honoured)
    effective = configtxt.evaluate(after, PI5)
    assert effective.has_dtparam("pciex1")
    assert effective.has_overlay("pciex1-compat-pi5")
    assert effective.has_overlay("pcie-32bit-dma-pi5")
    assert effective.get("kernel") == "kernel8.img"
    assert effective.has_dtparam("fan_temp0")  # the user's line still in effect
    # and the firmware of a CM4 reading the same card skips its [cm5] line as before
    assert not configtxt.evaluate(after, "Raspberry Pi Compute Module 4 Rev 1.0").has_overlay(
        "dwc2"
    )


def test_a_second_edit_changes_nothing() -> None:
    once, _ = edit(BOOKWORM, PI5_LINES)
    twice, added = edit(once, PI5_LINES)
    assert twice == once and added == PI5_LINES
    assert once.count("dtparam=pciex1") == 1


def test_a_line_already_in_effect_is_not_written_again() -> None:
    text = BOOKWORM + "dtparam = pciex1   # the user's M.2 HAT\n"
    after, added = edit(text, PI5_LINES)
    assert "dtparam=pciex1" not in added
    assert after.count("pciex1") == 2  # the user's line and pciex1-compat-pi5's overlay
    assert "dtparam = pciex1   # the user's M.2 HAT" in after


def test_a_line_only_under_another_boards_filter_does_not_count() -> None:
    text = "[cm4]\ndtparam=pciex1\n[all]\n"
    _, added = edit(text, ["dtparam=pciex1"])
    assert added == ["dtparam=pciex1"]


def test_the_block_follows_what_is_wanted_and_goes_when_nothing_is() -> None:
    once, _ = edit(BOOKWORM, PI5_LINES)
    fewer, added = edit(once, PI5_LINES[:2])
    assert added == PI5_LINES[:2] and "kernel=kernel8.img" not in fewer
    # the user writes one of the lines themselves: the block keeps only the others
    theirs = fewer.replace("[all]\n# the user's own", "[all]\ndtparam=pciex1\n# the user's own")
    again, added = edit(theirs, PI5_LINES[:2])
    assert added == ["dtoverlay=pciex1-compat-pi5,no-mip"]
    assert again.count("dtparam=pciex1") == 1
    gone, added = edit(once, [])
    assert added == [] and gone == BOOKWORM


def test_a_file_needing_nothing_is_left_byte_for_byte() -> None:
    text = "dtparam=pciex1"  # no final newline
    assert edit(text, ["dtparam=pciex1"]) == (text, [])


def test_windows_line_ends_are_kept() -> None:
    after, _ = edit("dtparam=audio=on\r\n", ["dtparam=pciex1"])
    assert after.endswith("[all]\r\ndtparam=pciex1\r\n# END coralpi_boot\r\n")
    assert "\n" not in after.replace("\r\n", "")


@pytest.mark.parametrize(
    "line", ["dtparam=pciex1\nkernel=x", "kernel=kernel8.img # x", "[pi5]", "", "a b=c"]
)
def test_anything_but_one_setting_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match=r"not a single config\.txt setting"):
        edit(BOOKWORM, [line])


def test_a_block_without_its_end_is_refused() -> None:
    once, _ = edit(BOOKWORM, PI5_LINES)
    broken = once.replace("# END coralpi_boot\n", "")
    with pytest.raises(ValueError, match="mend or remove the block by hand"):
        edit(broken, PI5_LINES)


def run_module(args: dict[str, object], tmp_path: Path) -> dict[str, object]:
    """The module as Ansible runs it: its arguments as JSON in a file."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_the_module_keeps_the_previous_file_and_supports_check_mode(tmp_path: Path) -> None:
    config = tmp_path / "config.txt"
    config.write_text(BOOKWORM)
    args: dict[str, object] = {"path": str(config), "lines": PI5_LINES}
    checked = run_module({**args, "_ansible_check_mode": True}, tmp_path)
    assert checked["changed"] is True and config.read_text() == BOOKWORM
    assert not (tmp_path / "config.txt.coralpi-prev").exists()
    done = run_module(args, tmp_path)
    assert done["changed"] is True and done["backup"] == str(config) + ".coralpi-prev"
    assert (tmp_path / "config.txt.coralpi-prev").read_text() == BOOKWORM
    assert config.read_text() == edit(BOOKWORM, PI5_LINES)[0]
    again = run_module(args, tmp_path)
    assert again["changed"] is False
    refused = run_module({**args, "lines": ["kernel=a\nx=y"]}, tmp_path)
    assert refused.get("failed") is True and "not a single config.txt setting" in str(
        refused["msg"]
    )
    assert config.read_text() == edit(BOOKWORM, PI5_LINES)[0]
