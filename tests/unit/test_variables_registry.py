"""The registry of ``coralpi_*`` variables and what describes it agree: the README's table,
``inventory/group_vars/all.yml``, the inventory check and the plan's choices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.planning.inventory import KNOWN_VARIABLES, check_variables
from provision.planning.targets import Choices
from provision.planning.variables import BY_NAME, REGISTRY

REPO = Path(__file__).resolve().parents[2]


def _readme_table() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Inventories and their variables", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `(coralpi_\w+)` \|(.*)\|(.*)\|$", line)
        if match:
            rows[match[1]] = [match[2].strip(), match[3].strip()]
    return rows


def test_the_readme_table_lists_exactly_the_registry() -> None:
    rows = _readme_table()
    assert list(rows) == [v.name for v in REGISTRY]
    for variable in REGISTRY:
        if variable.kind == "choice":
            assert rows[variable.name][0] == ", ".join(f"`{c}`" for c in variable.choices)


def test_group_vars_all_documents_every_variable_with_its_default() -> None:
    text = (REPO / "inventory" / "group_vars" / "all.yml").read_text()
    named = re.findall(r"^# (coralpi_\w+):(.*)$", text, re.M)
    assert [name for name, _ in named] == [v.name for v in REGISTRY]
    for name, value in named:
        default = BY_NAME[name].default
        if default:
            assert value.strip() == default, name


def test_inventory_check_and_choices_follow_the_registry() -> None:
    assert set(KNOWN_VARIABLES) == set(BY_NAME)
    for variable in REGISTRY:
        if variable.kind == "bool":
            for spelling, meaning in (("yes", True), ("Off", False), ("1", True)):
                assert check_variables("h", {variable.name: spelling}) == {variable.name: meaning}
            with pytest.raises(ConfigError, match=f"host h: {variable.name}: 'sometimes'"):
                check_variables("h", {variable.name: "sometimes"})
    for name, field in (
        ("coralpi_runtime", "runtime"),
        ("coralpi_accelerator", "accelerator"),
        ("coralpi_opencv", "opencv"),
    ):
        for choice in BY_NAME[name].choices:
            extra = {"accept_max_eula": True} if choice == "max" else {}
            assert getattr(Choices(**{field: choice, **extra}), field) == choice
        with pytest.raises(ConfigError, match=f"{name}: 'other' is not one of"):
            Choices(**{field: "other"})
        assert getattr(Choices(), field) == BY_NAME[name].default
