"""Is a camera sensor actually there: what the camera stack itself reports, not the config line.

Bullseye and later (libcamera): `rpicam-hello --list-cameras` (Bookworm's name; Bullseye's
`libcamera-hello`) prints "Available cameras" and one line per sensor
(`0 : imx708 [4608x2592 10-bit RGGB] (/base/.../imx708@1a)`), or "No cameras available!".
Buster's legacy stack: `vcgencmd get_camera` prints `supported=1 detected=1`.

The tools run only on the real system; under `--root` nothing is run (a recorded tree has
no camera to ask) unless a runner is given, which is how the parsers are tested on recorded
output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from .rootfs import RootFS
from .safetext import clean

#: The tools to ask, in order: (command, kind).
TOOLS = (
    (("rpicam-hello", "--list-cameras"), "libcamera"),
    (("libcamera-hello", "--list-cameras"), "libcamera"),
    (("vcgencmd", "get_camera"), "legacy"),
)
TIMEOUT = 20.0
_SENSOR = re.compile(r"^\s*(\d+)\s*:\s*([A-Za-z0-9_-]+)\s*\[")
_LEGACY = re.compile(r"supported=(\d+)\s+detected=(\d+)")

#: Runs argv, returns (exit status, output) or None when the program does not exist
#: (typing's names: this alias is evaluated at run time, on Python 3.7 too).
Runner = Callable[[Tuple[str, ...]], Optional[Tuple[int, str]]]


@dataclass
class CameraFacts:
    tool: str | None = None  # the command that answered, e.g. "rpicam-hello --list-cameras"
    sensors: list[str] = field(default_factory=list)  # sensor names, e.g. ["imx708"]
    detected: bool | None = None  # None: nothing could be asked
    error: str | None = None  # why the tool's answer could not be read


def parse_list_cameras(text: str) -> list[str]:
    """Sensor names from `rpicam-hello --list-cameras` / `libcamera-hello --list-cameras`."""
    return [m.group(2) for m in map(_SENSOR.match, text.splitlines()) if m]


def parse_get_camera(text: str) -> tuple[bool, bool] | None:
    """(supported, detected) from `vcgencmd get_camera`, or None when it says neither."""
    found = _LEGACY.search(text)
    if found is None:
        return None
    return found.group(1) != "0", found.group(2) != "0"


def run_tool(argv: tuple[str, ...]) -> tuple[int, str] | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return proc.returncode, proc.stdout


def gather_camera(fs: RootFS, runner: Runner | None = None) -> CameraFacts:
    if runner is None:
        if not fs.is_real:
            return CameraFacts()
        runner = run_tool
    for argv, kind in TOOLS:
        answer = runner(argv)
        if answer is None:
            continue
        status, output = answer
        facts = CameraFacts(tool=" ".join(argv))
        if kind == "libcamera":
            facts.sensors = parse_list_cameras(output)
            if facts.sensors or "no cameras available" in output.lower():
                facts.detected = bool(facts.sensors)
            else:
                facts.error = clean(output.strip().splitlines()[-1] if output.strip() else "")
                facts.error = facts.error or f"exit status {status}, no output"
        else:
            legacy = parse_get_camera(output)
            if legacy is None:
                facts.error = clean(output.strip()) or f"exit status {status}, no output"
            else:
                facts.detected = legacy[1]
                facts.sensors = ["legacy camera"] if legacy[1] else []
        return facts
    return CameraFacts()
