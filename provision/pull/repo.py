"""The pull repository (``coralpi pull init DIR``): what ``ansible-pull`` on each Pi runs.

Layout (a git repository; nothing in it is secret, so it may live on any git server)::

    local.yml            the entry point ansible-pull runs (the Pi's own name comes as
                         -e coralpi_pull_host=NAME from its coralpi-pull service)
    ansible.cfg          roles from playbooks/, inventory.ini (localhost, local connection)
    playbooks/           provision.yml, verify.yml, tasks/, roles/ (as the CLI runs them)
    hosts/<name>.json    per Pi: {"coralpi_plans": {"localhost": plan}} (made here, by the
                         controller, with the mirror's files and their sha256), its coralpi_*
                         settings and the pull settings (repository, branch, mirror URL)
    coralpi.lock         the lock the plans' files come from
    bootstrap.sh         run once on a Pi (or by a first-boot hook): Debian's packages, the
                         Ansible venv from the mirror's ansible-core wheel (sha256-checked),
                         then the first pull, which installs the timer
    pull.json            what was made: coralpi and ansible-core versions, hosts, refusals

Plans are made here, on the controller, and committed (docs/DESIGN.md, "Pull mode"): the
Pi then needs only ansible-core, not the coralpi package, and every Pi of a platform gets
the same plan the CLI would give it. A Pi whose Python cannot run the controller's
ansible-core as its own controller is refused with the reason (:func:`pi_ansible.decide`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision import __version__
from provision.artifacts import lockfile, mirror, pi_ansible
from provision.artifacts.cache import ArtifactCache
from provision.artifacts.service import (
    ArtifactSettings,
    ensure_host_artifacts,
    ensure_pi_ansible_wheel,
    playbook_plan,
)
from provision.errors import ConfigError, CoralpiError
from provision.planning.plan import Plan
from provision.planning.variables import BY_NAME
from provision.redaction import without_credentials
from provision.tools import shared

PLAYBOOKS = ("provision.yml", "verify.yml")
STATE_DIR = "/var/lib/coralpi/pull"

ANSIBLE_CFG = """# Ansible settings for ansible-pull on the Pi (written by coralpi pull init).
[defaults]
roles_path = playbooks/roles
inventory = inventory.ini
interpreter_python = /usr/bin/python3
retry_files_enabled = False
nocows = True
"""
INVENTORY = (
    "# ansible-pull: the Pi converges itself (no SSH); its name is coralpi_pull_host.\n"
    "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n"
)

LOCAL_YML = """---
# The entry point ansible-pull runs on each Pi (written by `coralpi pull init`). The Pi's
# coralpi-pull service passes its name in the repository as -e coralpi_pull_host=NAME;
# hosts/NAME.json holds its plan (made by the controller) and its settings.
- name: Take this Pi's plan and settings from the repository
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check that this Pi has a file in the repository
      ansible.builtin.assert:
        that:
          - coralpi_pull_host is defined
          - coralpi_pull_host is match('^[A-Za-z0-9._-]+$')
          - (playbook_dir ~ '/hosts/' ~ coralpi_pull_host ~ '.json') is file
        fail_msg: >-
          No hosts/{{ coralpi_pull_host | default('(coralpi_pull_host not given)') }}.json in
          the pull repository: add the Pi to the inventory and run `coralpi pull init` again.
        quiet: true

    - name: Read this Pi's plan and settings
      ansible.builtin.include_vars:
        file: "{{ playbook_dir }}/hosts/{{ coralpi_pull_host }}.json"

    - name: Gather what the plan was made for
      ansible.builtin.setup:
        gather_subset: ["!all", "!min", distribution, platform, python]

    - name: Check that the plan is this Pi's (release, architecture, Python)
      ansible.builtin.assert:
        that:
          - ansible_facts.distribution_release == coralpi_plans.localhost.target.codename
          - ansible_facts.architecture == coralpi_plans.localhost.target.arch
          - (ansible_facts.python.version.major ~ '.' ~ ansible_facts.python.version.minor)
            == coralpi_plans.localhost.target.python
        fail_msg: >-
          hosts/{{ coralpi_pull_host }}.json was planned for
          {{ coralpi_plans.localhost.target.codename }}/{{ coralpi_plans.localhost.target.arch }}
          with python {{ coralpi_plans.localhost.target.python }}, but this Pi runs
          {{ ansible_facts.distribution_release }}/{{ ansible_facts.architecture }} with python
          {{ ansible_facts.python.version.major }}.{{ ansible_facts.python.version.minor }}:
          fix its platform in the inventory and run `coralpi pull init` again.
        quiet: true

- name: Provision
  ansible.builtin.import_playbook: playbooks/provision.yml

- name: Verify
  ansible.builtin.import_playbook: playbooks/verify.yml

- name: Keep pulling
  hosts: localhost
  connection: local
  become: true
  gather_facts: false
  roles:
    - role: coralpi_pull
      tags: [coralpi_pull]
"""

BOOTSTRAP = """#!/bin/sh
# Put this Pi in pull mode (written by `coralpi pull init`): run once as root, e.g. from a
# first-boot hook:  sh bootstrap.sh NAME   (NAME: the Pi's file hosts/NAME.json)
# Debian's packages come from the Pi's apt sources (or its apt proxy); the ansible-core
# wheel from the artifact mirror, checked against its sha256; nothing from PyPI or GitHub.
set -eu
HOST=${{1:?usage: bootstrap.sh NAME, this Pi as named in the pull repository}}
REPO={repo}
BRANCH={branch}
MIRROR={mirror}
WHEEL_PATH={wheel_path}
WHEEL_SHA256={wheel_sha256}
ANSIBLE_VERSION={ansible_version}
VENV={venv}
STATE={state}
export DEBIAN_FRONTEND=noninteractive
step() {{ echo "coralpi-bootstrap: $1 at $(date +%s)"; }}

step apt
apt-get update -q
apt-get install -y -q --no-install-recommends git ca-certificates {debs}
step ansible

HAVE=$("$VENV/bin/python" -c "import ansible.release as r; print(r.__version__)" 2>/dev/null || :)
if [ "$HAVE" != "$ANSIBLE_VERSION" ]; then
  mkdir -p /var/cache/coralpi/ansible
  WHEEL=/var/cache/coralpi/ansible/$(basename "$WHEEL_PATH")
  python3 - "$MIRROR/$WHEEL_PATH" "$WHEEL" "$WHEEL_SHA256" <<'EOF'
import hashlib, sys, urllib.request
url, dest, want = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=120).read()
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit("%s: sha256 %s, the lock pins %s: refused" % (url, got, want))
open(dest, "wb").write(data)
EOF
  rm -rf "$VENV"
  python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install --no-index --no-deps --disable-pip-version-check -q "$WHEEL"
fi

step clone
mkdir -p "$STATE" /etc/coralpi
if [ ! -d "$STATE/checkout/.git" ]; then
  git clone -q --branch "$BRANCH" "$REPO" "$STATE/checkout"
fi
# The first pull runs the same runner the timer's service starts (the role installs both).
python3 - "$HOST" "$REPO" "$BRANCH" "$VENV" "$STATE" > /etc/coralpi/pull.json <<'EOF'
import json, sys
host, repo, branch, venv, state = sys.argv[1:]
print(json.dumps({{"repo_url": repo, "branch": branch, "host": host, "ansible_venv": venv,
                  "state_dir": state, "result_path": "/var/lib/coralpi/last-pull.json",
                  "full_interval": 86400, "report_url": ""}}, indent=2))
EOF
chmod 0600 /etc/coralpi/pull.json
step pull
RUNNER=$STATE/checkout/playbooks/roles/coralpi_pull/files/coralpi_pull_run.py
exec python3 "$RUNNER" --full /etc/coralpi/pull.json
"""


@dataclass(frozen=True)
class PullHost:
    """One inventory host to write: its plan (made by the controller) and settings."""

    name: str
    plan: Plan
    variables: Mapping[str, Any]


@dataclass
class PullRepo:
    dir: Path
    hosts: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    commit: str | None = None
    changed: bool = False


def _secret_settings(variables: Mapping[str, Any]) -> list[str]:
    """The settings whose value holds a login (never written into the repository)."""
    out = []
    for name, value in variables.items():
        var = BY_NAME.get(name)
        secret = var is not None and var.secret and isinstance(value, str)
        if secret and without_credentials(str(value)) != value:
            out.append(name)
    return out


def _ignore(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "GIT_AUTHOR_NAME": "coralpi",
        "GIT_AUTHOR_EMAIL": "coralpi@localhost",
        "GIT_COMMITTER_NAME": "coralpi",
        "GIT_COMMITTER_EMAIL": "coralpi@localhost",
        **os.environ,
    }
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, env=env
    )
    if proc.returncode != 0:
        raise CoralpiError(f"git {' '.join(args)} in {repo}: {proc.stderr.strip()}")
    return proc


def host_file(
    host: PullHost,
    settings: ArtifactSettings,
    cache: ArtifactCache,
    lock_file: Path,
    pull: Mapping[str, Any],
) -> dict[str, Any]:
    """hosts/<name>.json: the plan with the mirror's files, the settings, the pull's."""
    arts = ensure_host_artifacts(host.plan, settings, cache, lock_path=lock_file)
    on_pi = mirror.host_files(arts)
    plan = {
        **playbook_plan(host.plan, on_pi.artifacts),
        "mirror_files": on_pi.files,
        "mirror_dir": mirror.PI_DIR,
    }
    return {
        **dict(sorted(host.variables.items())),
        **pull,
        "coralpi_plans": {"localhost": plan},
    }


def write_repo(
    dest: Path,
    hosts: Sequence[PullHost],
    *,
    repo_url: str,
    branch: str,
    mirror_url: str,
    cache: ArtifactCache,
    lock_file: Path,
    refused: Mapping[str, str] | None = None,
    export_dir: Path | None = None,
    role_settings: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> PullRepo:
    """Write (or bring up to date) the pull repository at ``dest`` and commit what changed.

    Refused hosts (``refused``, and those whose Python cannot run the controller's
    ansible-core) get no file; ``pull.json`` names them with the reason. With
    ``export_dir`` the mirror tree of the lock (now holding every host's platform and the
    Pi's ansible-core) is written there too, and checked to hold every file the plans name.
    ``role_settings`` (role variables, e.g. ``coralpi_pull_interval``) go into every host's
    file."""
    if without_credentials(repo_url) != repo_url or without_credentials(mirror_url) != mirror_url:
        raise ConfigError(
            "the pull repository holds no secrets: give --repo-url and --mirror-url without a "
            "login (a Pi's credentials for them go on its card or into its git/netrc config)"
        )
    out = PullRepo(dest, refused=dict(refused or {}))
    files: dict[str, dict[str, Any]] = {}
    choices: dict[str, pi_ansible.PiAnsible] = {}
    wheel_entry: dict[str, Any] | None = None
    pull = {
        **dict(role_settings or {}),
        "coralpi_pull_repo_url": repo_url,
        "coralpi_pull_branch": branch,
        "coralpi_mirror_url": mirror_url.rstrip("/"),
    }
    for host in hosts:
        secret = _secret_settings(host.variables)
        if secret:
            out.refused[host.name] = (
                f"{', '.join(secret)} holds a login, and the pull repository holds no secrets: "
                "give the Pi that setting without it (the login goes on the card, or into "
                "Ansible Vault)"
            )
            continue
        try:
            choice = pi_ansible.decide(host.plan)
        except ConfigError as exc:
            out.refused[host.name] = f"pull mode runs Ansible on the Pi itself: {exc}"
            continue
        choices[host.name] = choice
        wheel = ensure_pi_ansible_wheel(host.plan, choice, cache, lock_path=lock_file)
        wheel_entry = mirror.mirror_file(wheel, "wheel").to_dict()
        settings = ArtifactSettings.from_vars(
            host.variables, cache_dir=cache.root, lock_file=lock_file
        )
        files[host.name] = host_file(host, settings, cache, lock_file, pull)
    if not files:
        why = "; ".join(f"{h}: {r}" for h, r in sorted(out.refused.items())) or "no hosts"
        raise ConfigError(f"no host can be put in pull mode ({why})")
    assert wheel_entry is not None
    if export_dir is not None:
        exported = mirror.export(lockfile.read(lock_file), cache, export_dir)
        needed = [
            f for d in files.values() for f in d["coralpi_plans"]["localhost"]["mirror_files"]
        ]
        missing = mirror.missing_from(
            {"files": [f.to_dict() for f in exported.files]}, [*needed, wheel_entry]
        )
        if missing:
            raise ConfigError(
                f"the mirror export {export_dir} lacks {len(missing)} file(s) the plans need "
                f"(first: {missing[0]})"
            )

    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / ".git").is_dir():
        _git(dest, "init", "-q", "-b", branch)
    books = shared("playbooks")
    target = dest / "playbooks"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for name in PLAYBOOKS:
        shutil.copyfile(books / name, target / name)
    shutil.copytree(books / "roles", target / "roles", ignore=_ignore)
    shutil.copytree(books / "tasks", target / "tasks", ignore=_ignore)
    hosts_dir = dest / "hosts"
    if hosts_dir.exists():
        shutil.rmtree(hosts_dir)
    for name, data in sorted(files.items()):
        _write(hosts_dir / f"{name}.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    _write(dest / "local.yml", LOCAL_YML)
    _write(dest / "ansible.cfg", ANSIBLE_CFG)
    _write(dest / "inventory.ini", INVENTORY)
    shutil.copyfile(lock_file, dest / "coralpi.lock")
    version = next(iter(choices.values())).version
    debs = next(iter(choices.values())).debian_packages
    _write(
        dest / "bootstrap.sh",
        BOOTSTRAP.format(
            repo=shlex.quote(repo_url),
            branch=shlex.quote(branch),
            mirror=shlex.quote(mirror_url.rstrip("/")),
            wheel_path=shlex.quote(wheel_entry["path"]),
            wheel_sha256=wheel_entry["sha256"],
            ansible_version=shlex.quote(version),
            venv=pi_ansible.VENV,
            state=STATE_DIR,
            debs=" ".join(debs),
        ),
        0o755,
    )
    manifest = {
        "coralpi_version": __version__,
        "repo_url": repo_url,
        "branch": branch,
        "mirror_url": mirror_url.rstrip("/"),
        "ansible_on_pi": {
            "ansible_core": version,
            "wheel": wheel_entry,
            "debian_packages": list(debs),
        },
        "hosts": sorted(files),
        "refused": dict(sorted(out.refused.items())),
    }
    _write(dest / "pull.json", json.dumps(manifest, indent=2) + "\n")
    out.hosts = sorted(files)
    if commit:
        _git(dest, "add", "-A")
        if _git(dest, "status", "--porcelain").stdout.strip():
            _git(dest, "commit", "-q", "-m", f"coralpi pull init: {len(files)} host(s)")
            out.changed = True
        out.commit = _git(dest, "rev-parse", "HEAD").stdout.strip()
    return out
