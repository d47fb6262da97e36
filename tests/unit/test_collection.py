"""The collection coralpi.coral: built from playbooks/ and installed with ansible-galaxy,
its roles' inputs (argument specs) generated from the variables registry, its plugins'
planning the same as the CLI's, and role variables accepted where users set them."""

from __future__ import annotations

import dataclasses
import filecmp
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision.collection import actions, build, specs
from provision.errors import ConfigError
from provision.planning import role_variables
from provision.planning.inventory import check_variables
from provision.planning.matrix_data import load_matrix_data
from provision.planning.role_variables import ROLE_BY_NAME, ROLE_VARIABLES, ROLES
from provision.planning.service import plan_host

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
VENV_BIN = Path(sys.executable).parent

BOOKWORM_PI = {
    "ansible_distribution": "Debian",
    "ansible_distribution_release": "bookworm",
    "ansible_architecture": "aarch64",
    "ansible_python_version": "3.11.2",
    "coralpi_glibc": "2.36",
    "coralpi_board": "Raspberry Pi 5 Model B Rev 1.0",
}


def _tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in the venv")
    return str(path)


# -- the registry, the defaults and the argument specs agree ---------------------------------


def test_the_registry_holds_exactly_each_roles_defaults() -> None:
    for role in ROLES:
        defaults = yaml.safe_load(
            (PLAYBOOKS / "roles" / role / "defaults" / "main.yml").read_text()
        )
        registered = [v.name for v in ROLE_VARIABLES if v.role == role]
        assert registered == list(defaults), role
    assert {p.name for p in (PLAYBOOKS / "roles").iterdir()} == set(ROLES)


def test_registry_types_fit_the_constant_defaults() -> None:
    for role in ROLES:
        defaults = yaml.safe_load(
            (PLAYBOOKS / "roles" / role / "defaults" / "main.yml").read_text()
        )
        for name, value in defaults.items():
            variable = ROLE_BY_NAME[name]
            text = value if isinstance(value, str) and "{{" in value else ""
            if variable.origin == "setting":  # a constant, or a place on the controller
                assert "coralpi_" not in text, name
            elif variable.origin == "plan":
                assert "coralpi_plan." in text, name
            else:  # follows an inventory setting, or other role variables
                assert text and "coralpi_plan" not in text, name
            role_variables.check_role_value(variable, value)  # raises if it does not fit


def test_argument_specs_are_what_the_registry_makes() -> None:
    assert specs.stale(PLAYBOOKS / "roles") == []
    spec = yaml.safe_load((PLAYBOOKS / "roles/coralpi_apt/meta/argument_specs.yml").read_text())
    option = spec["argument_specs"]["main"]["options"]["coralpi_apt_cache_valid_time"]
    assert option["type"] == "int" and option["default"] == 3600
    assert "stays fresh" in option["description"][0]


def test_a_registry_change_makes_the_specs_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tuple(
        dataclasses.replace(v, type="str") if v.name == "coralpi_camera_gpu_mem" else v
        for v in ROLE_VARIABLES
    )
    monkeypatch.setattr(specs, "ROLE_VARIABLES", changed)
    assert specs.stale(PLAYBOOKS / "roles") == [
        PLAYBOOKS / "roles/coralpi_camera/meta/argument_specs.yml"
    ]


def test_a_default_missing_from_the_registry_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fewer = tuple(v for v in ROLE_VARIABLES if v.name != "coralpi_verify_timeout")
    monkeypatch.setattr(specs, "ROLE_VARIABLES", fewer)
    with pytest.raises(ValueError, match="coralpi_verify_timeout is not in the variables registry"):
        specs.stale(PLAYBOOKS / "roles")


# -- role variables where users set them ----------------------------------------------------


def test_role_variables_are_accepted_in_an_inventory_and_checked_by_type() -> None:
    # Role variables are checked, then left to Ansible (not part of the coralpi settings).
    assert check_variables("pi1", {"coralpi_apt_cache_valid_time": 3600}) == {}
    assert check_variables("pi1", {"coralpi_verify_extra_args": ["--json"]}) == {}
    assert check_variables("pi1", {"coralpi_edgetpu_pin_version": "no"}) == {}
    assert check_variables("pi1", {"coralpi_camera_gpu_mem": "{{ my_gpu_mem }}"}) == {}
    for name, value, why in (
        ("coralpi_apt_cache_valid_time", "soon", "is not a whole number"),
        ("coralpi_verify_extra_args", "--json", "is not a list"),
        ("coralpi_edgetpu_variant", "mid", "is not one of std, max"),
        ("coralpi_edgetpu_pin_version", "sometimes", "sometimes"),
    ):
        with pytest.raises(ConfigError, match=f"host pi1: {name}: .*{why}"):
            check_variables("pi1", {name: value})
    with pytest.raises(ConfigError, match="mean coralpi_apt_cache_valid_time"):
        check_variables("pi1", {"coralpi_apt_cache_valid_tim": 60})


def test_readme_lists_every_role_variable_by_origin() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Roles and their variables", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `(coralpi_\w+)`:.*\| (.*) \|$", line)
        if match:
            rows[match[1]] = match[2]
    assert list(rows) == list(ROLES)
    for role, cell in rows.items():
        listed: dict[str, str] = {}
        for part in cell.split("; "):
            origin, names = part.split(": ", 1)
            for short in re.findall(r"`(\w+)`", names):
                name = short if short.startswith("coralpi_") else role + short
                listed[name] = origin
        expected = {v.name: v.origin for v in ROLE_VARIABLES if v.role == role}
        assert listed == {n: _README_ORIGIN[o] for n, o in expected.items()}, role


_README_ORIGIN = {
    "setting": "settings",
    "inventory": "follow the inventory",
    "plan": "from the plan",
    "derived": "derived",
}


# -- the plugins plan as the CLI does ---------------------------------------------------------


def test_the_plan_plugin_makes_the_plan_the_cli_makes() -> None:
    task_vars: dict[str, Any] = {
        "inventory_hostname": "pi-a",
        "coralpi_runtime": "{{ wanted_runtime }}",
        "coralpi_accept_max_eula": "yes",
        "coralpi_apt_cache_valid_time": 60,
        "coralpi_apt_coral_check": {"rc": 0},  # a registered result: not a setting
        "ansible_user": "pi",
    }

    def render(value: Any) -> Any:
        return "max" if value == "{{ wanted_runtime }}" else value

    settings = actions.host_settings("pi-a", task_vars, render)
    assert settings == {"coralpi_runtime": "max", "coralpi_accept_max_eula": True}
    plan = actions.plan_for("pi-a", BOOKWORM_PI, settings, "2.19.4")
    cli = plan_host(BOOKWORM_PI, {"coralpi_runtime": "max", "coralpi_accept_max_eula": True})
    assert plan == cli and plan.choices.runtime == "max"


def test_the_plan_plugin_refuses_what_the_cli_refuses() -> None:
    with pytest.raises(ConfigError, match="host pi-a: coralpi_runtime: 'mid' is not one of"):
        actions.plan_for("pi-a", BOOKWORM_PI, {"coralpi_runtime": "mid"}, "2.19.4")
    with pytest.raises(ConfigError, match="host pi-a: coralpi_edgetpu_variant: 'mid'"):
        actions.host_settings("pi-a", {"coralpi_edgetpu_variant": "mid"}, lambda v: v)
    with pytest.raises(ConfigError, match="host pi-a: no facts to plan from"):
        actions.plan_for("pi-a", {}, {}, "2.19.4")
    old_pi = {**BOOKWORM_PI, "ansible_distribution_release": "buster", "coralpi_glibc": "2.28"}
    old_pi["coralpi_board"] = "Raspberry Pi 4 Model B Rev 1.4"  # a Pi 5 needs bookworm
    old_pi["ansible_python_version"] = "3.7.3"
    with pytest.raises(ConfigError, match=r"host pi-a: .*ansible-core"):
        actions.plan_for("pi-a", old_pi, {}, "2.19.4")


# -- the collection's metadata ----------------------------------------------------------------


def test_galaxy_version_and_requires_ansible_follow_the_project() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = build.galaxy(PLAYBOOKS)
    assert info["version"] == project["version"]
    core = next(d for d in project["dependencies"] if d.startswith("ansible-core"))
    lower = core.split(">=", 1)[1]
    lines = [str(entry["line"]) for entry in load_matrix_data()["ansible_core"]]
    newest = max(lines, key=lambda line: tuple(map(int, line.split("."))))
    runtime = yaml.safe_load((PLAYBOOKS / "collection/meta/runtime.yml").read_text())
    major, minor = map(int, newest.split("."))
    assert runtime["requires_ansible"] == f">={lower}.0,<{major}.{minor + 1}.0"


# -- built, installed, documented, run --------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built from playbooks/ and installed by ansible-galaxy into a
    temporary collections path (the directory holding ansible_collections/)."""
    tmp = tmp_path_factory.mktemp("collection")
    tarball = build.build(tmp / "dist")
    root = tmp / "collections"
    subprocess.run(
        [_tool("ansible-galaxy"), "collection", "install", str(tarball), "-p", str(root)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return root


def _env(collections: Path, cwd: Path) -> dict[str, str]:
    empty_cfg = cwd / "ansible.cfg"
    empty_cfg.write_text("[defaults]\n")
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_CONFIG": str(empty_cfg),  # nothing of the checkout's configuration
        "ANSIBLE_NOCOLOR": "1",
    }


def test_the_installed_collection_is_made_of_the_repositorys_files(installed: Path) -> None:
    coll = installed / "ansible_collections" / "coralpi" / "coral"
    assert sorted(p.name for p in (coll / "playbooks").glob("*.yml")) == sorted(build.PLAYBOOKS)
    compare = filecmp.dircmp(PLAYBOOKS / "roles", coll / "roles", ignore=["__pycache__"])
    stack = [compare]
    while stack:
        cmp = stack.pop()
        assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, cmp.left
        stack.extend(cmp.subdirs.values())
    assert (coll / "plugins/action/plan.py").read_text() == (
        PLAYBOOKS / "collection/plugins/action/plan.py"
    ).read_text()
    assert (coll / "changelogs/changelog.yaml").is_file()


def test_ansible_doc_shows_each_roles_inputs(installed: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [_tool("ansible-doc"), "-t", "role", "--json", *(f"coralpi.coral.{r}" for r in ROLES)],
        capture_output=True,
        text=True,
        env=_env(installed, tmp_path),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    for role in ROLES:
        options = docs[f"coralpi.coral.{role}"]["entry_points"]["main"]["options"]
        assert set(options) == {v.name for v in ROLE_VARIABLES if v.role == role}
    proc = subprocess.run(
        [_tool("ansible-doc"), "coralpi.coral.artifacts"],
        capture_output=True,
        text=True,
        env=_env(installed, tmp_path),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and "file lock" in proc.stdout, proc.stderr


def test_the_collections_playbooks_parse_without_a_checkout(
    installed: Path, tmp_path: Path
) -> None:
    for book in ("site", "probe"):  # site imports provision and verify
        proc = subprocess.run(
            [_tool("ansible-playbook"), "--syntax-check", "-i", "nohost,", f"coralpi.coral.{book}"],
            capture_output=True,
            text=True,
            env=_env(installed, tmp_path),
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_argument_specs_refuse_a_bad_value_before_any_task(installed: Path, tmp_path: Path) -> None:
    book = tmp_path / "camera.yml"
    book.write_text(
        "- hosts: all\n  gather_facts: false\n  roles:\n    - role: coralpi.coral.coralpi_camera\n"
    )
    proc = subprocess.run(
        [
            _tool("ansible-playbook"),
            "-i",
            "nohost.invalid,",
            str(book),
            "-e",
            '{"coralpi_camera_gpu_mem": "lots", "coralpi_plan": {}}',
        ],
        capture_output=True,
        text=True,
        env=_env(installed, tmp_path),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # The role's validation is its first task: it fails on the controller, before any
    # connection to the (unresolvable) host is tried.
    assert "Validating arguments against arg spec 'main'" in out
    assert "argument 'coralpi_camera_gpu_mem' is of type str" in out, out
    assert "UNREACHABLE" not in out, out
