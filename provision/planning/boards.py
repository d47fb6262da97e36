"""Raspberry Pi boards: what each one has (USB 3, PCIe, camera connectors) and the oldest
release that boots it. Data in the ``[[boards]]`` table of ``matrix.toml``.

    >>> board = board_for("Raspberry Pi 5 Model B Rev 1.0")
    >>> board.name, board.pcie, board.oldest["debian"]
    ('Raspberry Pi 5', 'connector', 'bookworm')

A model string no row matches (another single-board computer, a future Pi) gives None:
callers then make no board-based decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from provision.planning.matrix_data import load_matrix_data

#: ``Board.pcie`` values.
PCIE_CONNECTOR = "connector"  # an FPC/M.2 connector on the board itself (Pi 5)
PCIE_CARRIER = "carrier"  # a compute module: the lane goes to its carrier board (CM4, CM5)
PCIE_NONE = "none"  # no PCIe lane a Coral can use (Pi 4: its lane drives the USB 3 chip)


@dataclass(frozen=True)
class Board:
    """One row of the boards table."""

    name: str  # "Raspberry Pi 5"
    pattern: str  # regular expression matched at the start of /proc/device-tree/model
    soc: str  # "BCM2712"
    usb3: bool
    pcie: str  # PCIE_CONNECTOR | PCIE_CARRIER | PCIE_NONE
    camera_connectors: int | None  # None: depends on the carrier board
    oldest: Mapping[str, str]  # OS family ("debian", "ubuntu") -> oldest release codename
    source: str
    checked: str  # YYYY-MM-DD

    @property
    def has_pcie(self) -> bool:
        """A PCIe lane a Coral M.2/PCIe card can use (on the board or its carrier)."""
        return self.pcie != PCIE_NONE

    def matches(self, model: str) -> bool:
        return re.match(self.pattern, model) is not None


@cache
def all_boards() -> tuple[Board, ...]:
    """Every row, in table order."""
    rows = load_matrix_data().get("boards", [])
    return tuple(
        Board(
            name=str(r["name"]),
            pattern=str(r["pattern"]),
            soc=str(r["soc"]),
            usb3=bool(r["usb3"]),
            pcie=str(r["pcie"]),
            camera_connectors=None
            if int(r["camera_connectors"]) < 0
            else int(r["camera_connectors"]),
            oldest={str(k): str(v) for k, v in r["oldest"].items()},
            source=str(r["source"]),
            checked=str(r["checked"]),
        )
        for r in rows
    )


def board_for(model: str | None) -> Board | None:
    """The row for a ``/proc/device-tree/model`` string, or None when no row matches."""
    if not model:
        return None
    text = model.replace("\x00", "").strip()
    for board in all_boards():
        if board.matches(text):
            return board
    return None


def boards_with_pcie() -> tuple[Board, ...]:
    """Boards a Coral M.2/PCIe card can be used with."""
    return tuple(b for b in all_boards() if b.has_pcie)
