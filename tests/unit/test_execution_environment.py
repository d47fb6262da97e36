"""The AWX execution environment (execution-environment.yml): `ansible-builder create`
writes its build context from the real collection tarball and coralpi wheel, so the
definition is complete (ansible-builder's own schema, every file it names present); no
container runtime is needed or used."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from provision.collection import build

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    builder = BIN / "ansible-builder"
    if not builder.exists():
        pytest.skip("ansible-builder is not installed in the venv (make install)")
    files = tmp_path / "build" / "ee-files"
    tarball = build.build(files)
    tarball.rename(files / "coralpi-coral.tar.gz")
    wheel = subprocess.run(
        [
            str(BIN / "pip"),
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(files),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert wheel.returncode == 0, wheel.stderr
    definition = tmp_path / "execution-environment.yml"
    shutil.copyfile(REPO / "execution-environment.yml", definition)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    spec = yaml.safe_load(definition.read_text())
    wanted = spec["dependencies"]["python"][0].rsplit("/", 1)[1]
    assert wanted == f"coralpi-{version}-py3-none-any.whl"
    assert (files / wanted).is_file(), sorted(p.name for p in files.iterdir())

    context = tmp_path / "context"
    proc = subprocess.run(
        [
            str(builder),
            "create",
            "-f",
            str(definition),
            "-c",
            str(context),
            "--output-filename",
            "Containerfile",
            "-v",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile
    assert "COPY _build/coralpi /build/coralpi" in containerfile
    copied = context / "_build" / "coralpi"
    assert (copied / "coralpi-coral.tar.gz").is_file() and (copied / wanted).is_file()
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert galaxy["collections"][0]["name"] == "/build/coralpi/coralpi-coral.tar.gz"
    assert (
        "coralpi @ file:///build/coralpi/" in (context / "_build" / "requirements.txt").read_text()
    )
