"""The tags a playbook defines, read from its YAML as ``ansible-playbook --list-tags`` lists
them, and the check that refuses a ``--tags`` / ``--skip-tags`` it does not define."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from provision.errors import ConfigError
from provision.tools import playbook, shared

#: Ansible's own tags: `always` tasks (taking the plan, gathering facts) must run whatever
#: is selected, and `never` ones never; neither is a part of the job a user can pick.
_SPECIAL_TAGS = frozenset({"always", "never"})


# The tags the playbooks define (read from their YAML, as ansible-playbook --list-tags would)

_TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers", "block", "rescue", "always")
_ROLE_TASKS = ("include_role", "import_role")
_TASK_FILES = ("include_tasks", "import_tasks")


def _module(item: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The argument of the first of ``names`` (short or ``ansible.builtin.``) in a task."""
    for name in names:
        for key in (name, f"ansible.builtin.{name}"):
            if key in item:
                return item[key]
    return None


def _tags_of(item: dict[str, Any]) -> Iterator[str]:
    value = item.get("tags")
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        for tag in value:
            text = str(tag).strip()
            if text and "{{" not in text:
                yield text


class _Tags:
    """Reads playbooks, task files and roles for their tags (each file once)."""

    def __init__(self, roles_dir: Path) -> None:
        self.roles_dir = roles_dir
        self.seen: set[Path] = set()
        self.tags: set[str] = set()

    def file(self, path: Path) -> None:
        path = path.resolve()
        if path in self.seen or not path.is_file():
            return
        self.seen.add(path)
        self.items(yaml.safe_load(path.read_text(encoding="utf-8")), path.parent)

    def role(self, name: str) -> None:
        for tasks in sorted((self.roles_dir / name / "tasks").glob("**/*.y*ml")):
            self.file(tasks)

    def items(self, items: Any, here: Path) -> None:
        """A list of plays, tasks or blocks (``here``: where relative file names start)."""
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            self.tags.update(_tags_of(item))
            imported = _module(item, ("import_playbook",))
            if isinstance(imported, str) and "{{" not in imported:
                self.file(here / imported)
            included = _module(item, _TASK_FILES)
            included = included.get("file") if isinstance(included, dict) else included
            if isinstance(included, str) and "{{" not in included:
                self.file(here / included)
            role = _module(item, _ROLE_TASKS)
            if isinstance(role, dict) and isinstance(role.get("name"), str):
                self.role(role["name"])
            for entry in item.get("roles") or []:
                name = entry.get("role") or entry.get("name") if isinstance(entry, dict) else entry
                if isinstance(entry, dict):
                    self.tags.update(_tags_of(entry))
                if isinstance(name, str):
                    self.role(name)
            for key in _TASK_LISTS:
                self.items(item.get(key), here)


def playbook_tags(book: Path, roles_dir: Path | None = None) -> set[str]:
    """Every tag ``book`` can select, as ``ansible-playbook --list-tags`` lists them: on its
    plays, role entries and tasks, in what it imports or includes by a literal name, and
    on the tasks of the roles it runs (in ``roles_dir``); Ansible's ``always`` and
    ``never`` are not among them."""
    reader = _Tags(roles_dir or book.parent / "roles")
    reader.file(book)
    return reader.tags - _SPECIAL_TAGS


def check_tags(book: str, tags: Iterable[str], skip_tags: Iterable[str]) -> None:
    """Refuse a tag the playbook does not define, naming the ones it does (before any host
    is touched)."""
    wanted = [("--tags", t) for t in tags] + [("--skip-tags", t) for t in skip_tags]
    if not wanted:
        return
    known = playbook_tags(playbook(book), shared("playbooks", "roles"))
    unknown = [(flag, tag) for flag, tag in wanted if tag not in known]
    if unknown:
        given = ", ".join(f"{flag} {tag}" for flag, tag in unknown)
        offer = (
            f"known tags: {', '.join(sorted(known))}"
            if known
            else "it defines no tags (each role's inclusion in playbooks/provision.yml "
            "needs its role name as a tag)"
        )
        raise ConfigError(f"{given}: not a tag of playbooks/{book}; {offer}")
