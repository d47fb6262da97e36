"""The verify package as one archive: what it holds, and that it is reproducible."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from provision.artifacts import verify_package


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getnames()


def _fake_package(root: Path) -> Path:
    pkg = root / "verify"
    (pkg / "checks").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    (pkg / "__main__.py").write_text("print('verify')\n")
    (pkg / "checks" / "camera.py").write_text("X = 1\n")
    (pkg / "__pycache__" / "__main__.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "stale.pyc").write_bytes(b"\0")
    return pkg


def test_the_archive_holds_the_package_under_verify_without_byte_code(tmp_path: Path) -> None:
    names = _names(verify_package.archive_bytes(_fake_package(tmp_path)))
    assert names == ["verify", "verify/checks", "verify/__main__.py", "verify/checks/camera.py"]


def test_the_real_package_is_in_it_owned_by_root() -> None:
    data = verify_package.archive_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    names = {m.name for m in members}
    assert "verify/__main__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 0)}


def test_same_package_same_bytes_and_name_and_a_change_makes_a_new_one(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path / "src")
    cache = tmp_path / "cache"
    first = verify_package.ensure_archive(cache, pkg)
    (pkg / "__main__.py").touch()  # a new mtime alone changes nothing
    assert verify_package.ensure_archive(cache, pkg) == first
    assert verify_package.archive_bytes(pkg) == first.read_bytes()
    (pkg / "checks" / "camera.py").write_text("X = 2\n")
    second = verify_package.ensure_archive(cache, pkg)
    assert second != first and second.parent == first.parent == cache / "verify-package"
    assert first.is_file()  # runs that still name the old one keep it
