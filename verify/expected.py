"""What the host should have: from the plan (`--plan FILE`) or the local fact the roles wrote."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MODULE_OF_PACKAGE = {
    "tflite-runtime": "tflite_runtime.interpreter",
    "ai-edge-litert": "ai_edge_litert.interpreter",
}


@dataclass
class Expected:
    origin: str | None = None  # "plan <file>" | "local fact" | None (nothing to compare to)
    runtime_package: str | None = None
    runtime_variant: str | None = None  # "std" | "max"
    runtime_version: str | None = None
    runtime_source: str | None = None  # "coral-apt" | "community-deb"
    python_runtime_package: str | None = None
    python_runtime_version: str | None = None
    python_runtime_module: str | None = None
    numpy_constraint: str | None = None
    opencv_source: str | None = None
    ld_preload: str | None = None
    ld_preload_known: bool = False  # True when plan/fact said (even "no preload")
    camera: bool | None = None
    camera_method: str | None = None
    camera_config_path: str | None = None
    accelerator: str | None = None  # "usb" | "pcie"
    venv: str | None = None
    #: The Coral key fingerprints the controller's lock accepted (empty: not recorded).
    coral_key_fingerprints: tuple[str, ...] = ()


def variant_of(package: str | None) -> str | None:
    if not package:
        return None
    match = re.search(r"libedgetpu1-(std|max)", package)
    return match.group(1) if match else None


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _fingerprints(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(str(f).replace(" ", "").upper() for f in value if isinstance(f, str) and f)


def from_fact(fact: dict[str, Any]) -> Expected:
    package = _str(fact.get("runtime_package"))
    py_package = _str(fact.get("python_runtime_package"))
    camera_method = _str(fact.get("camera_method"))
    return Expected(
        origin="local fact",
        runtime_package=package,
        runtime_variant=_str(fact.get("runtime_variant")) or variant_of(package),
        runtime_version=_str(fact.get("runtime_version")),
        runtime_source=_str(fact.get("runtime_source")),
        python_runtime_package=py_package,
        python_runtime_version=_str(fact.get("python_runtime_version")),
        python_runtime_module=MODULE_OF_PACKAGE.get(py_package or ""),
        numpy_constraint=_str(fact.get("numpy_constraint")),
        opencv_source=_str(fact.get("opencv_source")),
        ld_preload=_str(fact.get("ld_preload")),
        ld_preload_known="ld_preload" in fact,
        camera=None if camera_method is None else camera_method != "none",
        camera_method=camera_method,
        camera_config_path=_str(fact.get("camera_config_path")),
        accelerator=_str(fact.get("accelerator")),
        venv=_str(fact.get("venv")),
        coral_key_fingerprints=_fingerprints(fact.get("coral_key_fingerprints")),
    )


def _section(plan: dict[str, Any], key: str) -> dict[str, Any]:
    value = plan.get(key)
    return value if isinstance(value, dict) else {}


def from_plan(plan: dict[str, Any], origin: str) -> Expected:
    runtime = _section(plan, "runtime")
    python_runtime = _section(plan, "python_runtime")
    choices = _section(plan, "choices")
    camera = _section(plan, "camera")
    package = _str(runtime.get("package"))
    camera_method = _str(camera.get("method"))
    camera_choice = choices.get("camera")
    return Expected(
        origin=origin,
        runtime_package=package,
        runtime_variant=_str(choices.get("runtime")) or variant_of(package),
        runtime_version=_str(runtime.get("version")),
        runtime_source=_str(runtime.get("source")),
        python_runtime_package=_str(python_runtime.get("package")),
        python_runtime_version=_str(python_runtime.get("version")),
        python_runtime_module=_str(python_runtime.get("module"))
        or MODULE_OF_PACKAGE.get(_str(python_runtime.get("package")) or ""),
        numpy_constraint=_str(_section(plan, "numpy").get("constraint")),
        opencv_source=_str(_section(plan, "opencv").get("source")),
        ld_preload=_str(plan.get("ld_preload")),
        ld_preload_known="ld_preload" in plan,
        camera=(
            bool(camera_choice)
            if camera_choice is not None
            else None
            if camera_method is None
            else camera_method != "none"
        ),
        camera_method=camera_method,
        camera_config_path=_str(camera.get("config_path")),
        accelerator=_str(choices.get("accelerator")),
        venv=_str(_section(plan, "venv").get("path")),
        coral_key_fingerprints=_fingerprints(
            _section(plan, "artifacts").get("coral_key_fingerprints")
        ),
    )


# ------------------------------------------------------------- version constraints


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not match:
        return ()
    return tuple(int(part) for part in match.group(1).split("."))


def _compare(left: tuple[int, ...], right: tuple[int, ...]) -> int:
    width = max(len(left), len(right))
    a = left + (0,) * (width - len(left))
    b = right + (0,) * (width - len(right))
    return (a > b) - (a < b)


def satisfies(version: str, constraint: str) -> bool:
    """`version` meets a PEP 440-style constraint list like ">=1.23.2,<2" (release parts only).

    Raises ValueError for a constraint it cannot read.
    """
    have = _release(version)
    for clause in constraint.split(","):
        clause = clause.strip()
        if not clause:
            continue
        match = re.match(r"^(==|!=|<=|>=|<|>|~=)\s*([0-9][0-9.*]*)$", clause)
        if not match:
            raise ValueError(f"cannot read version constraint {clause!r}")
        op, target = match.group(1), match.group(2)
        if op in ("==", "!=") and target.endswith(".*"):
            prefix = _release(target[:-2])
            equal = have[: len(prefix)] == prefix
            if equal != (op == "=="):
                return False
            continue
        want = _release(target)
        cmp = _compare(have, want)
        if op == "~=":
            upper = want[:-1]
            if cmp < 0 or have[: len(upper)] != upper:
                return False
            continue
        ok = {
            "==": cmp == 0,
            "!=": cmp != 0,
            "<": cmp < 0,
            "<=": cmp <= 0,
            ">": cmp > 0,
            ">=": cmp >= 0,
        }[op]
        if not ok:
            return False
    return True


def default_numpy_constraint(python_runtime_package: str | None) -> str | None:
    if python_runtime_package == "tflite-runtime":
        return "<2"  # built against numpy 1.x: numpy 2 fails at import (_ARRAY_API not found)
    if python_runtime_package == "ai-edge-litert":
        return ">=1.23.2"
    return None
