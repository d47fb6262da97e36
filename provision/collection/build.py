"""Assemble the collection ``coralpi.coral`` from ``playbooks/`` and build its tarball.

Nothing of the collection is kept twice in the repository: the build copies, into a
scratch directory laid out as a collection,

- ``playbooks/collection/`` (``galaxy.yml``, ``meta/runtime.yml``, ``plugins/``,
  ``changelogs/``, ``README.md``) to the collection's top,
- ``playbooks/roles/`` to ``roles/``,
- the playbooks ``site``, ``provision``, ``verify`` and ``probe`` and ``playbooks/tasks/``
  to ``playbooks/`` (``image.yml`` stays with the CLI: it needs ``coralpi image build``),

and runs ``ansible-galaxy collection build`` there.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from provision.errors import ConfigError
from provision.tools import shared, tool_path

PLAYBOOKS = ("site.yml", "provision.yml", "verify.yml", "probe.yml")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def galaxy(source: Path) -> dict[str, object]:
    data = yaml.safe_load((source / "collection" / "galaxy.yml").read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{source}/collection/galaxy.yml is not a mapping")
    return data


def assemble(source: Path, dest: Path) -> Path:
    """Lay the collection out in ``dest`` (which must not exist) from ``source``, a
    ``playbooks/`` directory."""
    shutil.copytree(source / "collection", dest, ignore=_IGNORE)
    shutil.copytree(source / "roles", dest / "roles", ignore=_IGNORE)
    books = dest / "playbooks"
    books.mkdir()
    for name in PLAYBOOKS:
        shutil.copy2(source / name, books / name)
    shutil.copytree(source / "tasks", books / "tasks", ignore=_IGNORE)
    return dest


def build(output: Path, source: Path | None = None) -> Path:
    """Build ``coralpi-coral-<version>.tar.gz`` into ``output``; its path."""
    source = source or shared("playbooks")
    info = galaxy(source)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coralpi-collection-") as tmp:
        stage = assemble(source, Path(tmp) / "coral")
        proc = subprocess.run(
            [
                tool_path("ansible-galaxy"),
                "collection",
                "build",
                str(stage),
                "--output-path",
                str(output),
                "--force",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise ConfigError(f"ansible-galaxy collection build failed: {proc.stderr.strip()}")
    tarball = output / f"{info['namespace']}-{info['name']}-{info['version']}.tar.gz"
    if not tarball.is_file():
        raise ConfigError(f"ansible-galaxy built no {tarball.name}: {proc.stdout.strip()}")
    return tarball
