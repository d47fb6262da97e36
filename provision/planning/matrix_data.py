"""Loads the compatibility data table (``matrix.toml`` beside this file) once."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

MATRIX_PATH = Path(__file__).with_name("matrix.toml")


@cache
def load_matrix_data() -> dict[str, Any]:
    """The parsed ``matrix.toml`` (cached: read once per process)."""
    with MATRIX_PATH.open("rb") as fh:
        return tomllib.load(fh)


def release_names() -> list[str]:
    """Known release codenames, in file order."""
    return list(load_matrix_data()["releases"])


def codename_for_version(family: str, version: str) -> str | None:
    """Codename of ``family``'s release ``version`` ("12.5" -> bookworm, "22.04" -> jammy).

    Debian releases are matched on the major version, Ubuntu ones on "YY.MM".
    """
    parts = version.strip().split(".")
    for name, rel in load_matrix_data()["releases"].items():
        if rel["family"] != family:
            continue
        width = len(str(rel["version"]).split("."))
        if ".".join(parts[:width]) == rel["version"]:
            return str(name)
    return None
