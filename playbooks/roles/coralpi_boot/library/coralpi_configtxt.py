#!/usr/bin/python
"""Ansible module: write lines into a Raspberry Pi config.txt once, in coralpi's own block.

The pure part (``edit``) is unit-tested from recorded config.txt files; ``main`` is the
Ansible module around it (check mode and --diff supported).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

DOCUMENTATION = r"""
module: coralpi_configtxt
short_description: Write lines into a Raspberry Pi config.txt once, keeping the user's own
description:
  - Keeps one marked block of coralpi's lines at the end of config.txt (or where it already
    is), starting with its section filter (C([all]) resets every earlier filter).
  - A wanted line already in effect outside the block (before any filter, or under
    C([all])) is not written again. The user's lines are never changed.
  - Before changing the file, the previous one is kept beside it (I(backup_suffix)).
options:
  path:
    description: The config.txt to edit.
    type: path
    required: true
  lines:
    description: The lines that must be in effect (one setting each).
    type: list
    elements: str
    required: true
  section:
    description: The conditional filter the block starts with.
    type: str
    default: "[all]"
  backup_suffix:
    description: Suffix of the copy of the previous file, kept beside it.
    type: str
    default: .coralpi-prev
author: coralpi
"""

RETURN = r"""
added:
  description: The lines the block holds (wanted lines not already in effect).
  type: list
  returned: always
backup:
  description: Path of the previous file, when the file was changed.
  type: str
  returned: changed
"""

BEGIN = "# BEGIN coralpi_boot: M.2/PCIe Coral (managed by coralpi; edit outside this block)"
END = "# END coralpi_boot"
_SECTION = re.compile(r"^\s*\[[^\]]*\]\s*$")
_SETTING = re.compile(r"^[A-Za-z0-9_]+=[A-Za-z0-9_.,=:/+-]+$")


def normalize(line: str) -> str:
    """A setting as the firmware reads it: no comment, no spaces around ``=``."""
    text = line.split("#", 1)[0].strip()
    if "=" in text:
        key, value = text.split("=", 1)
        text = f"{key.strip()}={value.strip()}"
    return text


def split_block(text: str) -> tuple[list[str], int | None]:
    """(the file's lines without coralpi's block, where the block was or None)."""
    lines = text.splitlines()
    try:
        start = lines.index(BEGIN)
    except ValueError:
        return lines, None
    try:
        end = lines.index(END, start)
    except ValueError:
        raise ValueError(
            f"config.txt has coralpi's block start ({BEGIN!r}) but not its end ({END!r}): "
            "mend or remove the block by hand"
        ) from None
    return lines[:start] + lines[end + 1 :], start


def in_effect(lines: list[str]) -> set[str]:
    """Settings that apply to every board: before any filter, or under ``[all]``."""
    found: set[str] = set()
    unconditional = True
    for line in lines:
        if _SECTION.match(line):
            unconditional = line.strip().lower() == "[all]"
            continue
        setting = normalize(line)
        if unconditional and setting:
            found.add(setting)
    return found


def edit(text: str, wanted: list[str], section: str = "[all]") -> tuple[str, list[str]]:
    """config.txt ``text`` with ``wanted`` in effect: (new text, the lines of the block).

    Idempotent: ``edit(edit(t, w)[0], w) == edit(t, w)``. Lines outside the block are kept
    as they are, in their order; the block goes where it was, else at the end.
    """
    for line in wanted:
        if not _SETTING.match(line):
            raise ValueError(f"not a single config.txt setting: {line!r}")
    if not _SECTION.match(section):
        raise ValueError(f"not a config.txt section filter: {section!r}")
    rest, at = split_block(text)
    present = in_effect(rest)
    block_lines = [line for line in dict.fromkeys(wanted) if normalize(line) not in present]
    block = [BEGIN, section, *block_lines, END] if block_lines else []
    if at is None:
        if not block:
            return text, []
        at = len(rest)
    new = rest[:at] + block + rest[at:]
    newline = "\r\n" if "\r\n" in text else "\n"
    return (newline.join(new) + newline) if new else "", block_lines


def write_with_backup(path: str, text: str, suffix: str) -> str:
    """Keep the current file as ``path + suffix``, then replace ``path`` whole."""
    backup = path + suffix
    shutil.copy2(path, backup)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".coralpi-", dir=directory)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return backup


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "lines": {"type": "list", "elements": "str", "required": True},
            "section": {"type": "str", "default": "[all]"},
            "backup_suffix": {"type": "str", "default": ".coralpi-prev"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        with open(path) as handle:
            before = handle.read()
        after, added = edit(before, module.params["lines"], module.params["section"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"{path}: {exc}")
    result = {"changed": after != before, "added": added}
    if module._diff:
        result["diff"] = {
            "before": before,
            "after": after,
            "before_header": path,
            "after_header": path,
        }
    if result["changed"] and not module.check_mode:
        try:
            result["backup"] = write_with_backup(path, after, module.params["backup_suffix"])
        except OSError as exc:
            module.fail_json(msg=f"writing {path}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
