"""Raspberry Pi `config.txt`: the settings in effect for one board.

Conditional sections follow the firmware's rules: `[all]` resets every filter, filters of
the same kind replace each other, filters of different kinds combine, `[none]` disables
everything until the next `[all]`. A later line overrides an earlier one, except
`dtoverlay=` and `dtparam=`, which accumulate. Filters that depend on things verify cannot
see (EDID, GPIO levels, serial numbers, tryboot, board-type codes) are treated as not
matching; `[HDMI:n]` only selects a port and does not hide other settings.

`include FILE` is read in place, under the conditions in effect there; FILE is a file of
the boot partition (the directory of config.txt), whichever file includes it. Includes are
bounded: a file already being read is not entered again (a cycle), and the depth, the
number of includes and the lines read in all are capped. What is skipped is noted in
`problems`; `incomplete` says part of what the files ask for was left unread, so the
settings found may differ from the board's.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_INCLUDE_DEPTH = 8
MAX_INCLUDES = 32  # include lines followed, over config.txt and every included file
MAX_LINES = 10000  # lines read in all (a stock config.txt has about 50)
MAX_PROBLEMS = 20

# Model filters and which boards they match (a board also "sees" its family's filter).
# Matched against the device-tree model string, e.g. "Raspberry Pi 4 Model B Rev 1.4".
_MODEL_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"raspberry pi 500", ("pi500", "pi5")),
    (r"compute module 5", ("cm5", "pi5")),
    (r"raspberry pi 5\b", ("pi5",)),
    (r"raspberry pi 400", ("pi400", "pi4")),
    (r"compute module 4s", ("cm4s", "pi3")),
    (r"compute module 4", ("cm4", "pi4")),
    (r"raspberry pi 4\b", ("pi4",)),
    (r"raspberry pi zero 2", ("pi02", "pi0w", "pi0")),
    (r"raspberry pi zero w", ("pi0w", "pi0")),
    (r"raspberry pi zero", ("pi0",)),
    (r"raspberry pi 3 model [ab] plus", ("pi3+", "pi3")),
    (r"compute module 3", ("cm3", "pi3")),
    (r"raspberry pi 3\b", ("pi3",)),
    (r"raspberry pi 2\b", ("pi2",)),
    (r"raspberry pi compute module\b", ("cm1", "pi1")),
    (r"raspberry pi model [ab]", ("pi1",)),
)

MODEL_FILTERS = frozenset(name for _, names in _MODEL_RULES for name in names) | {
    "pi1",
    "pi2",
    "pi3",
    "pi3+",
    "pi4",
    "pi5",
    "pi0",
    "pi0w",
    "pi02",
    "cm4",
    "cm5",
}

ACCUMULATING_KEYS = frozenset({"dtoverlay", "dtparam"})


def model_filters(board: str | None) -> frozenset[str]:
    """The model filter names (`pi4`, `cm4`, ...) that match `board`."""
    if not board:
        return frozenset()
    text = board.lower()
    for pattern, names in _MODEL_RULES:
        if re.search(pattern, text):
            return frozenset(names)
    return frozenset()


@dataclass
class Setting:
    key: str
    value: str
    source: str
    line: int


@dataclass
class EffectiveConfig:
    """Settings in effect: `values` holds the last value of each key (lower-case key)."""

    values: dict[str, Setting] = field(default_factory=dict)
    dtoverlays: list[Setting] = field(default_factory=list)
    dtparams: list[Setting] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    incomplete: bool = False  # an include cycle or a limit left part unread

    def get(self, key: str) -> str | None:
        setting = self.values.get(key.lower())
        return None if setting is None else setting.value

    def has_overlay(self, name: str) -> bool:
        return any(s.value.split(",")[0].strip() == name for s in self.dtoverlays)

    def has_dtparam(self, name: str) -> bool:
        for setting in self.dtparams:
            for part in setting.value.split(","):
                key, _, value = part.partition("=")
                if key.strip() == name and value.strip().lower() not in ("off", "0", "false"):
                    return True
        return False


def _filter_kind(name: str) -> str:
    lowered = name.lower()
    if lowered in ("all", "none") or lowered in MODEL_FILTERS or lowered.startswith("pi"):
        return "model"
    for prefix in ("edid", "gpio", "hdmi", "tryboot", "board-type", "0x", "cm"):
        if lowered.startswith(prefix):
            return "board-type" if prefix == "cm" else prefix
    return "other"


class _State:
    def __init__(self, board_filters: frozenset[str]) -> None:
        self.board_filters = board_filters
        self.active: dict[str, bool] = {}
        self.none = False

    def apply(self, section: str) -> None:
        name = section.strip()
        lowered = name.lower()
        if lowered == "all":
            self.active.clear()
            self.none = False
            return
        if lowered == "none":
            self.none = True
            return
        kind = _filter_kind(name)
        if kind == "model" or lowered in MODEL_FILTERS:
            self.active["model"] = lowered in self.board_filters
        elif kind == "hdmi":
            self.active.pop("hdmi", None)  # selects a port, hides nothing
        else:
            self.active[kind] = False  # cannot be evaluated here: treat as not matching

    @property
    def enabled(self) -> bool:
        return not self.none and all(self.active.values())


def evaluate(
    text: str,
    board: str | None,
    source: str = "config.txt",
    read_include: Callable[[str], str | None] | None = None,
) -> EffectiveConfig:
    """Settings of `text` in effect on `board` (a device-tree model string or None).

    `read_include(name)` returns the text of an included file (or None if missing).
    """
    reader = _Reader(model_filters(board), read_include)
    reader.read(text, source, include_key(posixpath.basename(source)))
    return reader.finish()


def include_key(name: str) -> str:
    """Which file of the boot partition `include NAME` reads, as one spelling: the
    partition is FAT (case-insensitive), a leading `/` is its root, `..` cannot leave it."""
    return posixpath.normpath("/" + name.lstrip("/")).lower()


class _Reader:
    """Reads config.txt and its includes into one result, within the limits above."""

    def __init__(
        self, board_filters: frozenset[str], read_include: Callable[[str], str | None] | None
    ) -> None:
        self.result = EffectiveConfig()
        self.state = _State(board_filters)
        self.read_include = read_include
        self.reading: list[tuple[str, str]] = []  # (key, name) of the files being read
        self.includes = 0
        self.lines = 0
        self.stopped = False  # MAX_LINES reached: nothing more is read
        self.unshown = 0

    def note(self, problem: str) -> None:
        if len(self.result.problems) < MAX_PROBLEMS:
            self.result.problems.append(problem)
        else:
            self.unshown += 1

    def incomplete(self, problem: str) -> None:
        """A note for something the files ask for that was left unread."""
        self.result.incomplete = True
        self.note(problem)

    def finish(self) -> EffectiveConfig:
        if self.unshown:
            self.result.problems.append(f"{self.unshown} more notes not shown")
        return self.result

    def read(self, text: str, source: str, key: str) -> None:
        self.result.files.append(source)
        self.reading.append((key, source))
        for number, raw in enumerate(text.splitlines(), start=1):
            if self.stopped:
                break
            if self.lines >= MAX_LINES:
                self.stopped = True
                self.incomplete(
                    f"{source}:{number}: stopped after {MAX_LINES} lines in all "
                    "(config.txt and its includes); the rest is not read"
                )
                break
            self.lines += 1
            self.line(raw, source, number)
        self.reading.pop()

    def line(self, raw: str, source: str, number: int) -> None:
        result = self.result
        line = raw.split("#", 1)[0].strip()
        if not line:
            return
        if line.startswith("[") and line.endswith("]"):
            self.state.apply(line[1:-1])
            return
        if not self.state.enabled:
            return
        if "=" not in line:
            word, _, rest = line.partition(" ")
            if word.lower() == "include":
                self.include(rest.strip(), f"{source}:{number}")
            else:
                result.values[word.lower()] = Setting(word.lower(), rest.strip(), source, number)
            return
        key, _, value = line.partition("=")
        key = key.strip().lower()
        setting = Setting(key, value.strip(), source, number)
        if key == "dtoverlay":
            result.dtoverlays.append(setting)
        elif key == "dtparam":
            result.dtparams.append(setting)
        else:
            result.values[key] = setting

    def include(self, name: str, where: str) -> None:
        if self.read_include is None or not name:
            self.note(f"{where}: include {name!r} not followed")
            return
        key = include_key(name)
        if any(k == key for k, _ in self.reading):
            chain = " -> ".join([source for _, source in self.reading] + [name])
            self.incomplete(f"{where}: include {name!r} not followed: include cycle {chain}")
            return
        if len(self.reading) > MAX_INCLUDE_DEPTH:
            self.incomplete(f"{where}: include nesting deeper than {MAX_INCLUDE_DEPTH}")
            return
        if self.includes >= MAX_INCLUDES:
            self.incomplete(
                f"{where}: include {name!r} not followed: more than {MAX_INCLUDES} includes"
            )
            return
        self.includes += 1
        included = self.read_include(name)
        if included is None:
            self.note(f"{where}: included file {name!r} not found")
            return
        self.read(included, name, key)
