"""The golden table docs/decisions.md is what the planner decides now: every change of a
decision is a reviewed change of that file (`coralpi matrix golden --write`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision import cli
from provision.planning import golden
from provision.planning.boards import all_boards, board_for
from provision.planning.matrix import load_matrix, resolve
from provision.planning.targets import ACCELERATORS, ARCHS, RUNTIMES, Choices, Target

REPO = Path(__file__).resolve().parents[2]


def test_the_checked_in_table_is_what_the_planner_decides() -> None:
    have = (REPO / golden.GOLDEN_PATH).read_text(encoding="utf-8")
    assert have == golden.render(), (
        f"{golden.GOLDEN_PATH} is stale: review `coralpi matrix golden --check` and run "
        "`coralpi matrix golden --write`"
    )


def test_every_board_of_the_boards_table_is_a_board_class() -> None:
    named = [board_for(model) for model in golden.BOARD_MODELS]
    assert all(b is not None for b in named)
    assert sorted(b.name for b in named if b) == sorted(b.name for b in all_boards())


def test_one_row_per_release_arch_board_accelerator_and_runtime() -> None:
    rows = golden.table()
    releases = load_matrix().releases
    per_combination = len(ACCELERATORS) * len(RUNTIMES)
    boards = sum(len(golden.board_classes(a)) for a in ARCHS)
    assert len(rows) == len(releases) * boards * per_combination
    keys = {(r.release, r.arch, r.board, r.accelerator, r.runtime) for r in rows}
    assert len(keys) == len(rows)


def test_each_row_says_what_resolve_says() -> None:
    rows = {(r.release, r.arch, r.board, r.accelerator, r.runtime): r for r in golden.table()}
    pi5 = "Raspberry Pi 5 Model B Rev 1.0"
    plan = resolve(Target("debian", "bookworm", "aarch64", "3.11", "2.36", pi5), Choices())
    row = rows[("bookworm", "aarch64", "Raspberry Pi 5", "usb", "std")]
    assert plan.python_runtime.version in row.python_runtime
    assert (plan.runtime.deb_filename or plan.runtime.version) in row.edgetpu_runtime
    assert row.sources == plan.sources
    assert row.checked == min(s.checked for s in plan.sources if s.checked)
    # refusals carry their text and what they are read from: the board and the release
    refused = rows[("bullseye", "aarch64", "Raspberry Pi 5", "usb", "std")]
    assert refused.refusal.startswith("REFUSED:") and "bookworm" in refused.refusal
    assert {s.what for s in refused.sources} == {"release bullseye", "board Raspberry Pi 5"}
    no_lane = rows[("bookworm", "aarch64", "Raspberry Pi 4", "pcie", "std")]
    assert "no PCIe lane" in no_lane.refusal
    # the PCIe Coral's boot lines are in the table
    pcie = resolve(
        Target("debian", "bookworm", "aarch64", "3.11", "2.36", pi5), Choices(accelerator="pcie")
    )
    assert pcie.pcie is not None
    pcie_row = rows[("bookworm", "aarch64", "Raspberry Pi 5", "pcie", "std")]
    assert all(line in pcie_row.boot_config for line in pcie.pcie.config_lines)


def test_check_fails_on_a_stale_file_and_write_makes_it_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "decisions.md"
    table.write_text(golden.render().replace("| bookworm", "| bookworm-old", 1) + "x\n")
    assert cli.main(["matrix", "golden", "--check", "--file", str(table)]) == 1
    out, err = capsys.readouterr()
    assert "is stale" in err and "coralpi matrix golden --write" in err
    assert out.startswith("---") and "\n+" in out  # the diff
    assert cli.main(["matrix", "golden", "--write", "--file", str(table)]) == 0
    assert cli.main(["matrix", "golden", "--check", "--file", str(table)]) == 0
    assert table.read_text(encoding="utf-8") == golden.render()
