"""The golden table: every decision of the planner, as a table people can check.

One row per release x architecture x board class x accelerator x runtime variant (each
release with its own Python and glibc, the default OpenCV and camera choices): the Edge TPU
runtime file, the Python runtime and its TF version, numpy, OpenCV, camera and boot
configuration, or the refusal text; the matrix rows the decision was read from (numbered
sources at the end) and the oldest date one of them was checked.

The table is generated from :func:`provision.planning.matrix.resolve` and checked in as
``docs/decisions.md``: ``coralpi matrix golden --write`` rewrites it, ``--check`` (run by
``make lint`` and a unit test) fails when it is stale. Every change of a decision is
thereby a reviewed change of that file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from provision.errors import ConfigError, UnsupportedTarget
from provision.planning.boards import board_for
from provision.planning.matrix import load_matrix, resolve
from provision.planning.plan import FactSource, Plan
from provision.planning.targets import ACCELERATORS, ARCHS, RUNTIMES, Choices, Target

#: Where the table is checked in (relative to the repository root).
GOLDEN_PATH = Path("docs") / "decisions.md"

#: One /proc/device-tree/model string per row of the boards table, as the boards print
#: them (a board class of the golden table each). A new board row needs its model here.
BOARD_MODELS: tuple[str, ...] = (
    "Raspberry Pi 5 Model B Rev 1.0",
    "Raspberry Pi 500 Rev 1.0",
    "Raspberry Pi Compute Module 5 Rev 1.0",
    "Raspberry Pi 4 Model B Rev 1.4",
    "Raspberry Pi 400 Rev 1.0",
    "Raspberry Pi Compute Module 4 Rev 1.0",
    "Raspberry Pi 3 Model B Plus Rev 1.3",
)
#: The board class of a host that is not a Raspberry Pi (a PC, another ARM board).
NOT_A_PI = "not a Pi"

COLUMNS = (
    "arch",
    "board",
    "accelerator",
    "runtime",
    "Edge TPU runtime",
    "Python runtime",
    "numpy",
    "OpenCV",
    "camera",
    "boot config",
    "refusal / warnings",
    "sources",
    "checked",
)


@dataclass(frozen=True)
class GoldenRow:
    release: str
    arch: str
    board: str  # a board name, or NOT_A_PI
    accelerator: str
    runtime: str
    edgetpu_runtime: str
    python_runtime: str
    numpy: str
    opencv: str
    camera: str
    boot_config: str
    refusal: str  # the refusal text, or the plan's warnings ("" for neither)
    sources: tuple[FactSource, ...]

    @property
    def checked(self) -> str:
        """The oldest date one of the row's sources was checked."""
        dates = sorted(s.checked for s in self.sources if s.checked)
        return dates[0] if dates else ""


def board_classes(arch: str) -> tuple[str | None, ...]:
    """The boards a host of ``arch`` may be (None: not a Pi). No Pi runs x86_64."""
    if arch == "x86_64":
        return (None,)
    return (None, *BOARD_MODELS)


def _plan_columns(plan: Plan) -> dict[str, str]:
    rt, py = plan.runtime, plan.python_runtime
    edgetpu = rt.deb_filename or f"{rt.package}={rt.version} ({rt.source})"
    if rt.tf_version:
        edgetpu += f", TF {rt.tf_version}"
    camera = plan.camera.method
    if plan.camera.config_path and plan.camera.method != "none":
        camera += f" ({plan.camera.config_path})"
    boot = "-"
    if plan.pcie is not None:
        pcie = plan.pcie
        where = pcie.config_path or "no config.txt"
        lines = "; ".join(pcie.config_lines) or "no lines"
        boot = (
            f"{where}: {lines}; headers {', '.join(pcie.headers_packages)}; "
            f"{pcie.driver_deb}; reboot {pcie.reboot}"
        )
    opencv = f"{plan.opencv.package} ({plan.opencv.source})"
    if plan.opencv.version:
        opencv = f"{plan.opencv.package}=={plan.opencv.version} ({plan.opencv.source})"
    return {
        "edgetpu_runtime": edgetpu,
        "python_runtime": f"{py.package}=={py.version}, TF {py.tf_version or '?'}",
        "numpy": f"numpy{plan.numpy.constraint} ({plan.numpy.source})",
        "opencv": opencv,
        "camera": camera,
        "boot_config": boot,
        "refusal": " ".join(f"warning: {w}" for w in plan.warnings),
    }


def _refusal_sources(target: Target) -> tuple[FactSource, ...]:
    """What a refusal is read from: the release row and the board row."""
    rel = load_matrix().releases.get(target.codename)
    out = []
    if rel is not None:
        out.append(FactSource(f"release {rel.name}", rel.source, rel.checked))
    board = board_for(target.board)
    if board is not None:
        out.append(FactSource(f"board {board.name}", board.source, board.checked))
    return tuple(out)


def rows() -> Iterator[GoldenRow]:
    """Every row, in table order (releases as the matrix lists them)."""
    for rel in load_matrix().releases.values():
        for arch in ARCHS:
            for model in board_classes(arch):
                board = board_for(model)
                board_name = board.name if board is not None else NOT_A_PI
                target = Target(rel.os_ids[0], rel.name, arch, rel.python, rel.glibc, model)
                for accelerator in ACCELERATORS:
                    for runtime in RUNTIMES:
                        choices = Choices(
                            runtime=runtime,
                            accelerator=accelerator,
                            accept_max_eula=runtime == "max",
                        )
                        key = (rel.name, arch, board_name, accelerator, runtime)
                        try:
                            plan = resolve(target, choices)
                        except (UnsupportedTarget, ConfigError) as exc:
                            yield GoldenRow(
                                *key,
                                *("-",) * 6,
                                refusal=f"REFUSED: {exc}",
                                sources=_refusal_sources(target),
                            )
                            continue
                        yield GoldenRow(*key, **_plan_columns(plan), sources=plan.sources)


@cache
def table() -> tuple[GoldenRow, ...]:
    """Every row (the matrix is read once per process, so the rows are made once too)."""
    return tuple(rows())


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


def render(given: Sequence[GoldenRow] | None = None) -> str:
    """The Markdown text of ``docs/decisions.md`` (of ``given`` rows, default all)."""
    all_rows = list(table() if given is None else given)
    numbers: dict[tuple[str, str], int] = {}
    for row in all_rows:
        for s in row.sources:
            numbers.setdefault((s.what, s.source), len(numbers) + 1)
    when = {(s.what, s.source): s.checked for row in all_rows for s in row.sources}
    out = [
        "# Decisions of the planner (golden table)",
        "",
        "Generated by `coralpi matrix golden --write` from `provision/matrix.toml`; do not "
        "edit by hand. `make lint` and `tests/unit/test_golden.py` fail when it is stale, so "
        "every change of a decision is a reviewed change of this file.",
        "",
        "One row per release x architecture x board class x accelerator x runtime variant; "
        "each release with its own Python and glibc, `coralpi_opencv: apt` and the camera "
        "on. *sources* are numbered at the end; *checked* is the oldest date one of them "
        "was checked.",
    ]
    releases = load_matrix().releases
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    current = None
    for row in all_rows:
        if row.release != current:
            current = row.release
            rel = releases[row.release]
            out += [
                "",
                f"## {rel.name} ({rel.family} {rel.version}, Python {rel.python}, "
                f"glibc {rel.glibc})",
                "",
                header,
                rule,
            ]
        refs = ", ".join(str(n) for n in sorted({numbers[(s.what, s.source)] for s in row.sources}))
        cells = (
            row.arch,
            row.board,
            row.accelerator,
            row.runtime,
            row.edgetpu_runtime,
            row.python_runtime,
            row.numpy,
            row.opencv,
            row.camera,
            row.boot_config,
            row.refusal,
            refs,
            row.checked,
        )
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out += ["", "## Sources", ""]
    for (what, source), n in numbers.items():
        checked = f" (checked {when[(what, source)]})" if when[(what, source)] else ""
        out.append(f"{n}. {what}: {source}{checked}")
    return "\n".join(out) + "\n"


def write(path: Path) -> bool:
    """Rewrite the table; True when it changed."""
    text = render()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True
