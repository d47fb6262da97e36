"""The playbooks and inventories pass ansible-lint (production profile), yamllint and
`ansible-playbook --syntax-check`, run as the real tools over the repository's files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PLAYBOOKS = sorted((REPO_ROOT / "playbooks").glob("*.yml"))
ROLES = sorted(p for p in (REPO_ROOT / "playbooks" / "roles").iterdir() if p.is_dir())
ENV = {
    **os.environ,
    "ANSIBLE_NOCOLOR": "1",
    "NO_COLOR": "1",
    "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
}


def _tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in the venv")
    return str(path)


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_four_playbooks_exist() -> None:
    assert {p.name for p in PLAYBOOKS} >= {"site.yml", "provision.yml", "verify.yml", "probe.yml"}


def test_yamllint_is_clean() -> None:
    proc = _run(
        [
            _tool("yamllint"),
            "-s",
            "-f",
            "parsable",
            "playbooks",
            "inventory",
            ".yamllint",
            ".ansible-lint",
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile_is_clean() -> None:
    proc = _run(
        [_tool("ansible-lint"), "--profile", "production", "--nocolor", "-f", "pep8", "playbooks"]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
@pytest.mark.parametrize("inventory", ["localhost.yml", "example-fleet.yml"])
def test_syntax_check(playbook: Path, inventory: str) -> None:
    proc = _run(
        [
            _tool("ansible-playbook"),
            "--syntax-check",
            "-i",
            str(REPO_ROOT / "inventory" / inventory),
            str(playbook),
        ],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_role_variables_are_prefixed_and_documented(role: Path) -> None:
    """Every default carries the role's name and sits in a paragraph that opens with a comment."""
    defaults = role / "defaults" / "main.yml"
    data = yaml.safe_load(defaults.read_text()) or {}
    assert data, f"{defaults} defines no variables"
    lines = defaults.read_text().splitlines()
    for name in data:
        assert name.startswith(role.name + "_"), f"{role.name}: {name} lacks the role prefix"
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        while start > 0 and lines[start - 1].strip():
            start -= 1
        assert lines[start].startswith("#"), f"{role.name}: {name} has no comment saying what it is"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_role_asserts_its_inputs_first(role: Path) -> None:
    tasks = yaml.safe_load((role / "tasks" / "main.yml").read_text())
    assert "ansible.builtin.assert" in tasks[0], f"{role.name}: first task is not an assert"
    assert tasks[0]["ansible.builtin.assert"].get("fail_msg"), f"{role.name}: no fail_msg"


def _all_tasks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks of a task list, those inside block/rescue/always included."""
    found = []
    for item in items or []:
        found.append(item)
        for part in ("block", "rescue", "always"):
            if isinstance(item.get(part), list):
                found += _all_tasks(item[part])
    return found


def _task_files() -> list[Path]:
    roles = REPO_ROOT / "playbooks" / "roles"
    shared = REPO_ROOT / "playbooks" / "tasks"
    return sorted(
        [*roles.glob("*/tasks/*.yml"), *roles.glob("*/handlers/*.yml"), *shared.glob("*.yml")]
    )


def test_commands_take_values_as_argv_never_inside_a_command_line() -> None:
    """A value templated into a shell or command line could end a word or start another
    command; `argv` hands each value to the program as one argument."""
    offenders = []
    tasks = [(f, t) for f in _task_files() for t in _all_tasks(yaml.safe_load(f.read_text()))]
    for play in PLAYBOOKS:
        for entry in yaml.safe_load(play.read_text()) or []:
            for part in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                tasks += [(play, t) for t in _all_tasks(entry.get(part) or [])]
    for path, task in tasks:
        for module in ("ansible.builtin.shell", "ansible.builtin.command"):
            if module not in task:
                continue
            args = task[module]
            line = args if isinstance(args, str) else (args or {}).get("cmd", "")
            if "{{" in str(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}: {task.get('name')}")
    assert not offenders, offenders


def test_shell_script_templates_quote_every_value() -> None:
    """Every value a script template puts on a command line goes through `quote`; values in
    its comments are checked by the role's input assertions."""
    offenders = []
    for template in sorted((REPO_ROOT / "playbooks" / "roles").glob("*/templates/*.j2")):
        lines = template.read_text().splitlines()
        if not (lines and lines[0].startswith("#!") and lines[0].endswith("sh")):
            continue
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("#"):
                continue
            for expression in re.findall(r"\{\{-?(.*?)-?\}\}", line):
                if "quote" not in expression:
                    offenders.append(f"{template.name}:{number}: {expression.strip()}")
    assert not offenders, offenders
