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


def repo_root() -> Path:
    """The directory holding playbooks/ (the source tree this package runs from)."""
    return Path(__file__).resolve().parent.parent


def playbook(name: str) -> Path:
    """Absolute path of one of coralpi's playbooks."""
    path = repo_root() / "playbooks" / name
    if not path.exists():
        raise ConfigError(f"playbook {path} is missing: is this a complete coralpi checkout?")
    return path
