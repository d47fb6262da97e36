"""The collection on every ansible-core line its `requires_ansible` admits, not only the one
in this venv: each line from PyPI in a venv of its own (2.20 and 2.21 need Python 3.12).

In each: `ansible-galaxy collection install` of the built collection, `ansible-doc` of every
role's inputs, the playbooks' syntax, the plan plugin run for real on recorded Pi facts (the
plan it returns compared with the CLI's planner), and a bad role input refused by the
argument specs before any task. The coralpi package reaches each venv through a .pth line
(the checkout, then this venv's pure-Python dependencies), as in test_wheel_install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from provision.collection import build
from provision.planning.role_variables import ROLE_VARIABLES, ROLES
from provision.planning.service import plan_host

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"

#: Lines this venv does not run (it runs 2.19, which tests/unit/test_collection.py covers),
#: with the Python each needs as a controller (provision/planning/matrix.toml).
LINES = [("2.17", "3.11"), ("2.18", "3.11"), ("2.20", "3.12"), ("2.21", "3.12")]

PI5_BOOKWORM = {
    "ansible_distribution": "Debian",
    "ansible_distribution_release": "bookworm",
    "ansible_architecture": "aarch64",
    "ansible_python_version": "3.11.2",
    "coralpi_glibc": "2.36",
    "coralpi_board": "Raspberry Pi 5 Model B Rev 1.0",
}

pytestmark = pytest.mark.pypi


def _interpreter(version: str) -> str:
    """A Python of this minor version: this venv's own, else one on PATH or under pyenv."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in [
        *sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True),
        Path(f"/usr/bin/python{version}"),
    ]:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return str(candidate)
    pytest.skip(f"no Python {version} on this machine (pyenv or /usr/bin) for this line")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build.build(tmp_path_factory.mktemp("collection") / "dist")


def _line_venv(tmp: Path, line: str, python: str) -> Path:
    """A venv with ansible-core `line` from PyPI and coralpi from this checkout; its bin."""
    venv = tmp / f"ansible-{line}"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-compile",
            "--disable-pip-version-check",
            f"ansible-core=={line}.*",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    purelib = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Appended after the venv's own site-packages: its ansible-core comes first.
    Path(purelib, "coralpi-checkout.pth").write_text(f"{REPO}\n{sysconfig.get_path('purelib')}\n")
    return venv / "bin"


def _run(bin_dir: Path, tool: str, *args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(bin_dir / tool), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{tool} {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("line", "python_version"), LINES, ids=[f"ansible-core-{name}" for name, _ in LINES]
)
def test_the_collection_installs_documents_and_plans_on_this_line(
    tarball: Path, tmp_path: Path, line: str, python_version: str
) -> None:
    bin_dir = _line_venv(tmp_path, line, _interpreter(python_version))
    version = subprocess.run(
        [str(bin_dir / "python"), "-c", "import ansible.release as r; print(r.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version.startswith(f"{line}."), version

    collections = tmp_path / "collections"
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),  # nothing of the checkout's
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_NOCOLOR": "1",
    }
    installed = _run(
        bin_dir,
        "ansible-galaxy",
        "collection",
        "install",
        str(tarball),
        "-p",
        str(collections),
        cwd=tmp_path,
        env=env,
    )
    assert "requires_ansible" not in installed, installed  # no "unsupported" warning

    docs = json.loads(
        _run(
            bin_dir,
            "ansible-doc",
            "-t",
            "role",
            "--json",
            *(f"coralpi.coral.{r}" for r in ROLES),
            cwd=tmp_path,
            env=env,
        ).split("\n[WARNING]")[0]
    )
    for role in ROLES:
        options = docs[f"coralpi.coral.{role}"]["entry_points"]["main"]["options"]
        assert set(options) == {v.name for v in ROLE_VARIABLES if v.role == role}, (line, role)

    for book in ("site", "probe"):
        _run(
            bin_dir,
            "ansible-playbook",
            "--syntax-check",
            "-i",
            "nohost,",
            f"coralpi.coral.{book}",
            cwd=tmp_path,
            env=env,
        )

    # The plan plugin, run for real by this line's ansible-playbook on recorded facts.
    out = tmp_path / "plan.json"
    book = tmp_path / "plan.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Plan a recorded Pi 5",
                    "hosts": "pi-a",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Plan it",
                            "coralpi.coral.plan": {"facts": "{{ recorded_facts }}"},
                            "register": "made",
                        },
                        {
                            "name": "Keep the plan",
                            "ansible.builtin.copy": {
                                "content": "{{ made.plan | to_json }}",
                                "dest": str(out),
                                "mode": "0600",
                            },
                        },
                    ],
                }
            ]
        )
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "pi-a": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": str(bin_dir / "python"),
                            "coralpi_runtime": "max",
                            "coralpi_accept_max_eula": True,
                        }
                    }
                }
            }
        )
    )
    _run(
        bin_dir,
        "ansible-playbook",
        "-i",
        str(inventory),
        str(book),
        "-e",
        json.dumps({"recorded_facts": PI5_BOOKWORM}),
        cwd=tmp_path,
        env=env,
    )
    cli = plan_host(PI5_BOOKWORM, {"coralpi_runtime": "max", "coralpi_accept_max_eula": True})
    assert json.loads(out.read_text()) == json.loads(json.dumps(cli.to_dict()))

    # A bad role input: refused by the argument specs, before any connection.
    camera = tmp_path / "camera.yml"
    camera.write_text(
        "- hosts: all\n  gather_facts: false\n  roles:\n    - role: coralpi.coral.coralpi_camera\n"
    )
    proc = subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-i",
            "nohost.invalid,",
            str(camera),
            "-e",
            '{"coralpi_camera_gpu_mem": "lots", "coralpi_plan": {}}',
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "argument 'coralpi_camera_gpu_mem' is of type" in said, said
    assert "UNREACHABLE" not in said, said
