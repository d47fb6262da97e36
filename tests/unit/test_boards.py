"""The boards table: model strings to boards, and the board x release / board x accelerator
combinations the plan refuses, each naming what works."""

from __future__ import annotations

import pytest

from provision.errors import ConfigError, UnsupportedTarget
from provision.planning.boards import all_boards, board_for, boards_with_pcie
from provision.planning.matrix import load_matrix, resolve
from provision.planning.plan import Plan
from provision.planning.targets import Choices, Target

# Model strings as /proc/device-tree/model gives them (NUL-terminated).
PI5 = "Raspberry Pi 5 Model B Rev 1.0\x00"
PI500 = "Raspberry Pi 500 Rev 1.0\x00"
CM5 = "Raspberry Pi Compute Module 5 Rev 1.0\x00"
PI4 = "Raspberry Pi 4 Model B Rev 1.4\x00"
PI400 = "Raspberry Pi 400 Rev 1.0\x00"
CM4 = "Raspberry Pi Compute Module 4 Rev 1.1\x00"
PI3 = "Raspberry Pi 3 Model B Plus Rev 1.3\x00"


def plan_for(codename: str, arch: str, board: str, **choices: object) -> Plan:
    rel = load_matrix().releases[codename]
    target = Target(rel.os_ids[0], codename, arch, rel.python, rel.glibc, board)
    return resolve(target, Choices(**choices))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "name", "soc", "pcie", "usb3"),
    [
        (PI5, "Raspberry Pi 5", "BCM2712", "connector", True),
        (PI500, "Raspberry Pi 500", "BCM2712", "none", True),
        (CM5, "Raspberry Pi Compute Module 5", "BCM2712", "carrier", True),
        (PI4, "Raspberry Pi 4", "BCM2711", "none", True),
        (PI400, "Raspberry Pi 400", "BCM2711", "none", True),
        (CM4, "Raspberry Pi Compute Module 4", "BCM2711", "carrier", False),
        (PI3, "Raspberry Pi 3", "BCM2837", "none", False),
    ],
)
def test_model_strings_find_their_board(
    model: str, name: str, soc: str, pcie: str, usb3: bool
) -> None:
    board = board_for(model)
    assert board is not None
    assert (board.name, board.soc, board.pcie, board.usb3) == (name, soc, pcie, usb3)


def test_the_pi_500_is_not_taken_for_a_pi_5() -> None:
    # A prefix check on "Raspberry Pi 5" would give the Pi 500 the Pi 5's PCIe connector.
    board = board_for(PI500)
    assert board is not None and board.name == "Raspberry Pi 500"
    assert not board.has_pcie


def test_unknown_boards_give_none() -> None:
    assert board_for("Raspberry Pi 2 Model B Rev 1.1") is None
    assert board_for("Pine64 RockPro64") is None
    assert board_for(None) is None
    assert board_for("") is None


def test_every_board_names_an_oldest_release_of_the_matrix() -> None:
    releases = load_matrix().releases
    for board in all_boards():
        assert set(board.oldest) == {"debian", "ubuntu"}, board.name
        for family, codename in board.oldest.items():
            assert releases[codename].family == family, (board.name, codename)
        assert board.source and board.checked


def test_boards_with_pcie_are_the_pi_5_and_the_compute_modules() -> None:
    assert {b.name for b in boards_with_pcie()} == {
        "Raspberry Pi 5",
        "Raspberry Pi Compute Module 5",
        "Raspberry Pi Compute Module 4",
    }


@pytest.mark.parametrize(
    ("board", "codename", "nearest"),
    [
        (PI5, "bullseye", "bookworm aarch64 python 3.11"),
        (PI500, "bullseye", "bookworm aarch64 python 3.11"),
        (CM5, "bullseye", "bookworm aarch64 python 3.11"),
        (PI5, "jammy", "noble aarch64 python 3.12"),
        (PI500, "jammy", "noble aarch64 python 3.12"),
    ],
)
def test_a_release_older_than_the_board_is_refused_naming_the_nearest(
    board: str, codename: str, nearest: str
) -> None:
    with pytest.raises(UnsupportedTarget) as err:
        plan_for(codename, "aarch64", board)
    assert "or later" in str(err.value) and codename in str(err.value)
    assert err.value.nearest == nearest


def test_boards_run_their_oldest_release_and_the_pi_4_its_older_ones() -> None:
    assert plan_for("bookworm", "aarch64", PI5).target.codename == "bookworm"
    assert plan_for("noble", "aarch64", CM5).target.codename == "noble"
    assert plan_for("bullseye", "aarch64", PI4).target.codename == "bullseye"
    assert plan_for("buster", "armv7l", PI4).target.codename == "buster"


@pytest.mark.parametrize("board", [PI4, PI500, PI400, PI3])
def test_pcie_on_a_board_without_a_lane_names_usb_and_the_boards_with_one(board: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_for("bookworm", "aarch64", board, accelerator="pcie")
    message = str(err.value)
    assert "no PCIe lane" in message
    assert "coralpi_accelerator: usb" in message
    assert "Raspberry Pi 5" in message


def test_pcie_on_a_compute_module_notes_the_carrier_and_on_a_pi_5_does_not() -> None:
    cm4 = plan_for("bookworm", "aarch64", CM4, accelerator="pcie")
    assert any("carrier board" in n for n in cm4.notes)
    pi5 = plan_for("bookworm", "aarch64", PI5, accelerator="pcie")
    assert not any("carrier board" in n for n in pi5.notes)
    assert pi5.warnings == ()


def test_usb_on_a_board_without_usb3_warns_of_the_slower_port() -> None:
    pi3 = plan_for("bookworm", "aarch64", PI3)
    assert any("no USB 3 port" in w for w in pi3.warnings)
    pi4 = plan_for("bookworm", "aarch64", PI4)
    assert not any("USB 3" in w for w in pi4.warnings)
