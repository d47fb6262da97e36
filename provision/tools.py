"""Finding the Ansible command-line tools that belong to this Python environment."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from provision.errors import ConfigError


def tool_path(name: str) -> str:
    """Path of an ansible-* executable: the one beside this interpreter first, then PATH.

    The venv's own tools come first so that `.venv/bin/coralpi` works without an activated
    venv and never mixes in another ansible-core from the system.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"{name} not found: install coralpi with `make install` (needs ansible-core)"
        )
    return found


def share_root() -> Path:
    """Where coralpi's playbooks, ``ansible.cfg`` and default inventory are, wherever the
    package runs from: ``provision/_share`` holds links to the checkout's own folders in a
    source tree, and the files themselves in an installed wheel."""
    return (Path(__file__).parent / "_share").resolve()


def shared(*parts: str) -> Path:
    """A file or folder of :func:`share_root` (``shared("playbooks", "roles")``), resolved."""
    path = share_root().joinpath(*parts).resolve()
    if not path.exists():
        raise ConfigError(f"{path} is missing: is coralpi installed completely?")
    return path


def playbook(name: str) -> Path:
    """Absolute path of one of coralpi's playbooks."""
    return shared("playbooks", name)
