"""The pull repository (`coralpi pull init`) and the artifact mirror, on this machine only.

The host's files are STAND-IN files in a temporary cache (the artifact service is replaced
by a function that returns them; its own downloads are tested elsewhere): what is tested is
what the repository and the mirror make of them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision.artifacts import mirror
from provision.artifacts.cache import ArtifactCache
from provision.artifacts.service import HostArtifacts
from provision.errors import ConfigError
from provision.planning.matrix import platform_target, resolve
from provision.planning.targets import Target, choices_from_vars
from provision.pull import repo as pull_repo
from provision.pull.repo import PullHost, write_repo

VENV_BIN = Path(sys.executable).parent


def _plan(spec: str) -> Any:
    base = platform_target(spec)
    target = Target(base.os_id, base.codename, base.arch, base.python, base.glibc, None)
    return resolve(target, choices_from_vars({}))


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def standin_files(tmp_path: Path) -> HostArtifacts:
    """STAND-IN cache files for one host, laid out as the cache lays them out."""
    cache = tmp_path / "cache"
    wheels = cache / "platform" / "x" / "wheels"
    _file(wheels / "tflite_runtime-2.14.0-cp311-cp311-manylinux_2_34_x86_64.whl", b"wheel-1")
    _file(wheels / "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", b"wheel-2")
    deb = _file(cache / "deb" / "aa" / "libedgetpu1-std_16.0_amd64.deb", b"deb-std")
    assets = cache / "verify-assets"
    _file(assets / "parrot.jpg", b"jpeg")
    _file(assets / "labels.txt", b"labels")
    package = _file(cache / "verify-package" / "verify-0123.tar.gz", b"tar")
    return HostArtifacts(wheels, {"std": deb}, None, assets, package)


@pytest.fixture
def standin_service(
    tmp_path: Path, standin_files: HostArtifacts, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The artifact service replaced by the STAND-IN files; returns the lock file."""
    wheel = _file(
        tmp_path / "cache" / "wheel" / "bb" / "ansible_core-2.19.0-py3-none-any.whl", b"a"
    )
    monkeypatch.setattr(pull_repo, "ensure_host_artifacts", lambda *a, **k: standin_files)
    monkeypatch.setattr(pull_repo, "ensure_pi_ansible_wheel", lambda *a, **k: wheel)
    lock = tmp_path / "coralpi.lock"
    lock.write_text("# stand-in lock\n")
    return lock


def _write(tmp_path: Path, lock: Path, hosts: list[PullHost], **kw: Any) -> pull_repo.PullRepo:
    return write_repo(
        tmp_path / "repo",
        hosts,
        repo_url="git://10.0.0.1/pull",
        branch="main",
        mirror_url="http://10.0.0.1:8081/",
        cache=ArtifactCache.open(tmp_path / "cache"),
        lock_file=lock,
        **kw,
    )


def test_host_files_name_each_file_by_its_sha256_and_where_the_roles_read_it(
    standin_files: HostArtifacts,
) -> None:
    got = mirror.host_files(standin_files, "/var/cache/coralpi/mirror")
    by_dest = {f["dest"]: f for f in got.files}
    assert sorted(by_dest) == [
        "assets/labels.txt",
        "assets/parrot.jpg",
        "debs/libedgetpu1-std_16.0_amd64.deb",
        "verify/verify-0123.tar.gz",
        "wheels/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl",
        "wheels/tflite_runtime-2.14.0-cp311-cp311-manylinux_2_34_x86_64.whl",
    ]
    jpeg = by_dest["assets/parrot.jpg"]
    assert jpeg["sha256"] == hashlib.sha256(b"jpeg").hexdigest()
    assert jpeg["path"] == f"files/{jpeg['sha256']}/parrot.jpg" and jpeg["size"] == 4
    arts = got.artifacts.to_dict()
    assert arts["wheels_dir"] == "/var/cache/coralpi/mirror/wheels"
    assert arts["verify_assets"] == "/var/cache/coralpi/mirror/assets"
    assert arts["runtime_debs"] == {
        "std": "/var/cache/coralpi/mirror/debs/libedgetpu1-std_16.0_amd64.deb"
    }
    assert arts["coral_keyring"] == "" and arts["driver_deb"] == ""


def test_export_writes_each_file_once_by_content_with_its_index_and_lock(
    tmp_path: Path, standin_files: HostArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [(p, "wheel") for p in sorted(standin_files.wheels_dir.iterdir())]
    files.append((standin_files.verify_package, "verify-package"))
    monkeypatch.setattr(mirror, "locked_files", lambda lock, cache: files)
    from provision.artifacts.lockfile import Lock

    dest = tmp_path / "export"
    first = mirror.export(Lock(), ArtifactCache.open(tmp_path / "cache"), dest)
    assert first.copied == 3
    index = json.loads((dest / "index.json").read_text())
    for entry in index["files"]:
        served = dest / entry["path"]
        assert hashlib.sha256(served.read_bytes()).hexdigest() == entry["sha256"]
        assert served.stat().st_mode & 0o777 == 0o644
    assert (dest / "coralpi.lock").is_file()
    again = mirror.export(Lock(), ArtifactCache.open(tmp_path / "cache"), dest)
    assert again.copied == 0 and again.files == first.files
    wanted = mirror.host_files(standin_files).files
    missing = mirror.missing_from(index, wanted)
    assert sorted(missing) == sorted(f["path"] for f in wanted if f["kind"] in ("deb", "asset"))


def test_pull_init_writes_a_repository_ansible_can_run_and_commits_only_changes(
    tmp_path: Path, standin_service: Path
) -> None:
    hosts = [
        PullHost(n, _plan("bookworm/aarch64/3.11"), {"coralpi_runtime": "std"}) for n in ("a", "b")
    ]
    made = _write(tmp_path, standin_service, hosts, role_settings={"coralpi_pull_interval": "1h"})
    assert made.hosts == ["a", "b"] and made.changed and made.refused == {}
    root = made.dir
    data = json.loads((root / "hosts" / "a.json").read_text())
    assert data["coralpi_pull_repo_url"] == "git://10.0.0.1/pull"
    assert data["coralpi_mirror_url"] == "http://10.0.0.1:8081"
    assert data["coralpi_pull_interval"] == "1h" and data["coralpi_runtime"] == "std"
    plan = data["coralpi_plans"]["localhost"]
    assert plan["target"]["codename"] == "bookworm"
    assert plan["mirror_dir"] == mirror.PI_DIR and len(plan["mirror_files"]) == 6
    assert plan["artifacts"]["wheels_dir"] == f"{mirror.PI_DIR}/wheels"
    boot = (root / "bootstrap.sh").read_text()
    wheel_sha = hashlib.sha256(b"a").hexdigest()
    assert f"WHEEL_SHA256={wheel_sha}" in boot and "python3-yaml" in boot
    assert subprocess.run(["sh", "-n", str(root / "bootstrap.sh")], check=False).returncode == 0
    for name in ("local.yml", "ansible.cfg", "inventory.ini", "coralpi.lock", "pull.json"):
        assert (root / name).is_file(), name
    assert (
        root / "playbooks" / "roles" / "coralpi_pull" / "files" / "coralpi_pull_run.py"
    ).is_file()
    syntax = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "--syntax-check", "local.yml"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    again = _write(tmp_path, standin_service, hosts, role_settings={"coralpi_pull_interval": "1h"})
    assert again.changed is False and again.commit == made.commit


def test_pull_init_refuses_pis_that_cannot_pull_and_settings_with_a_login(
    tmp_path: Path, standin_service: Path
) -> None:
    hosts = [
        PullHost("new", _plan("bookworm/aarch64/3.11"), {}),
        PullHost("old", _plan("bullseye/aarch64/3.9"), {}),
        PullHost(
            "secret", _plan("bookworm/aarch64/3.11"), {"coralpi_apt_proxy": "http://u:pw@p:3142"}
        ),
    ]
    made = _write(tmp_path, standin_service, hosts)
    assert made.hosts == ["new"]
    assert "python 3.9 cannot run ansible-core" in made.refused["old"]
    assert "coralpi_apt_proxy holds a login" in made.refused["secret"]
    text = "".join(p.read_text() for p in (made.dir / "hosts").iterdir())
    assert "pw@" not in text
    manifest = json.loads((made.dir / "pull.json").read_text())
    assert sorted(manifest["refused"]) == ["old", "secret"]
    with pytest.raises(ConfigError, match="no host can be put in pull mode"):
        _write(tmp_path, standin_service, hosts[1:])
    with pytest.raises(ConfigError, match="holds no secrets"):
        write_repo(
            tmp_path / "r2",
            hosts[:1],
            repo_url="https://tok@git.example/pull",
            branch="main",
            mirror_url="http://m",
            cache=ArtifactCache.open(tmp_path / "cache"),
            lock_file=standin_service,
        )


def test_fetch_export_writes_the_mirror_of_a_lock(tmp_path: Path) -> None:
    """The real command on a lock that pins nothing yet: the tree still holds what every
    host installs besides the lock's files, this coralpi's verify package."""
    from provision.artifacts.lockfile import Lock, render

    lock = tmp_path / "coralpi.lock"
    lock.write_text(render(Lock()))
    export = tmp_path / "export"
    proc = subprocess.run(
        [
            str(VENV_BIN / "coralpi"),
            "fetch",
            "--lock",
            str(lock),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--export",
            str(export),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "exported 1 file(s)" in proc.stdout
    (entry,) = json.loads((export / "index.json").read_text())["files"]
    assert entry["kind"] == "verify-package" and entry["name"].startswith("verify-")
    served = export / entry["path"]
    assert hashlib.sha256(served.read_bytes()).hexdigest() == entry["sha256"]
    assert (export / "coralpi.lock").read_text() == lock.read_text()
