"""coralpi from its wheel, outside any checkout: the playbooks and roles travel inside it.

The wheel is built here (offline, with this environment's setuptools) and installed with
`pip --no-deps --no-index` into a fresh venv that borrows this environment's dependencies
(ansible-core, ansible-runner...) through a .pth line; `coralpi plan -i` then probes this
machine from an empty directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [
    "provision/_share/ansible.cfg",
    "provision/_share/inventory/localhost.yml",
    "provision/_share/inventory/group_vars/all.yml",
    "provision/_share/playbooks/site.yml",
    "provision/_share/playbooks/probe.yml",
    "provision/_share/playbooks/tasks/take_plan.yml",
    "provision/_share/playbooks/roles/coralpi_apt/tasks/main.yml",
    "provision/_share/playbooks/roles/coralpi_apt/meta/argument_specs.yml",
    "provision/_share/playbooks/collection/galaxy.yml",
    "provision/_share/playbooks/collection/plugins/action/plan.py",
    "provision/planning/matrix.toml",
    "verify/__main__.py",
]


def test_the_installed_wheel_plans_this_machine_from_an_empty_directory(tmp_path: Path) -> None:
    src = tmp_path / "src"  # what an sdist holds; the build leaves the checkout alone
    for name in ("provision", "verify", "playbooks", "inventory"):
        shutil.copytree(
            ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "README.md", "ansible.cfg"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=600,
        cwd=src,
    )
    (wheel,) = dist.glob("coralpi-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names, sorted(set(SHIPPED) - names)
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies, not coralpi itself (this environment's coralpi is an editable
    # install whose finder a .pth line does not load).
    Path(site, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    (empty / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: /usr/bin/python3\n"
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    where = subprocess.run(
        [str(py), "-c", "import provision, verify; print(provision.__file__, verify.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
    ).stdout
    assert str(ROOT) not in where and where.startswith(site), where
    proc = subprocess.run(
        [str(venv / "bin" / "coralpi"), "plan", "-i", "hosts.yml", "--json"],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        timeout=300,
        check=False,
    )
    assert "is missing" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data["plans"]) | set(data["errors"]) == {"localhost"}, proc.stderr
    assert not any(e.startswith("not probed") for e in data["errors"].values()), data
    assert list(empty.iterdir()) == [empty / "hosts.yml"]  # nothing written where it ran

    # The installed package builds the collection from the playbooks it carries.
    built = subprocess.run(
        [str(py), "-m", "provision.collection", "build", "--output", str(tmp_path / "coll")],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert Path(built.stdout.strip()) == tmp_path / "coll" / "coralpi-coral-0.1.0.tar.gz"
