"""The Raspberry Pi 5's USB current limit: what the firmware found the power supply can give,
and whether the limit was lifted in config.txt.

A Pi 5 (and a Pi 500) whose supply does not announce 5 A over USB-PD limits the USB ports to
600 mA in total (Raspberry Pi's power-supply documentation: "If you use a power supply that
cannot deliver 5A at +5V when first booted, the operating system will warn you that the
peripheral's current draw will be limited to 600mA"); with a 5 A supply, or with
`usb_max_current_enable=1` in config.txt, the ports may draw 1.6 A. The firmware records what
it found in the device tree under /proc/device-tree/chosen/power/ (big-endian 32-bit cells):
`max_current` (mA the supply announced), `usb_max_current_enable`, `usb_over_current_detected`.

Read through a `RootFS`, so a recorded tree (`--root`) stands in for `/`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rootfs import RootFS

DT_POWER = "/proc/device-tree/chosen/power"
#: The Pi 5's USB limits, in mA: without a 5 A supply, and with one (or the config line).
LIMITED_MA = 600
FULL_MA = 1600
#: A supply that announces this much (mA) lifts the limit by itself.
FULL_SUPPLY_MA = 5000
#: What the Coral USB Accelerator may draw, in mA (its datasheet's maximum).
CORAL_USB_MA = 900
#: Boards with the Pi 5's power management (model strings start with these).
BOARDS = ("Raspberry Pi 5", "Raspberry Pi 500")


@dataclass
class UsbPowerFacts:
    supply_max_ma: int | None = None  # what the supply announced (chosen/power/max_current)
    limit_lifted_dt: bool | None = None  # chosen/power/usb_max_current_enable (firmware)
    over_current: bool | None = None  # chosen/power/usb_over_current_detected


def parse_dt_u32(data: bytes | None) -> int | None:
    """One big-endian 32-bit device-tree cell (None unless exactly 4 bytes)."""
    if data is None or len(data) != 4:
        return None
    return int.from_bytes(data, "big")


def gather_usb_power(fs: RootFS) -> UsbPowerFacts:
    def cell(name: str) -> int | None:
        return parse_dt_u32(fs.read_bytes(f"{DT_POWER}/{name}"))

    lifted = cell("usb_max_current_enable")
    over = cell("usb_over_current_detected")
    return UsbPowerFacts(
        supply_max_ma=cell("max_current"),
        limit_lifted_dt=None if lifted is None else lifted != 0,
        over_current=None if over is None else over != 0,
    )


def has_pi5_power(board: str | None) -> bool:
    """A board whose USB ports have the Pi 5's 600 mA / 1.6 A limit."""
    return bool(board) and any(board == b or str(board).startswith(b + " ") for b in BOARDS)
