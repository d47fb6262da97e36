"""ELF symbol-version needs of wheels, on stand-in shared objects compiled here.

The stand-in wheels hold shared objects gcc builds at test time (testfleet/standin_elf.py):
one linked against STAND-IN libraries defining GLIBC_2.99, GLIBCXX_3.4.99 and CXXABI_1.3.99,
so its `.gnu.version_r` names needs no real target meets; a clean one needs only what this
machine's real glibc gives. The reader, the lock form and the refusal are the real code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provision.artifacts import elf_needs
from provision.artifacts.cache import ArtifactError
from provision.artifacts.elf_needs import TargetLibs, WheelNeedsError
from testfleet import standin_elf

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("elf")
    return {
        "needy": standin_elf.needy_object(tmp / "needy"),
        "clean": standin_elf.clean_object(tmp / "clean"),
    }


def _wheel(tmp: Path, name: str, members: dict[str, bytes]) -> Path:
    return standin_elf.wheel(tmp / name, members)


BOOKWORM = TargetLibs("2.36", "3.4.30", "1.3.13", "bookworm x86_64")


def test_a_wheel_needing_more_than_the_target_has_is_refused_by_name(
    objects: dict[str, Path], tmp_path: Path
) -> None:
    wheel = _wheel(
        tmp_path,
        "standin_needy-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        {
            "standin_needy/__init__.py": b"",
            # an ELF object found by its bytes, whatever its name says
            "standin_needy/libs/_needy.so.1": objects["needy"].read_bytes(),
        },
    )
    needs = elf_needs.wheel_needs(wheel)
    assert {n: (v.version, v.library) for n, v in needs.items()} == {
        "GLIBC": ("2.99", "libc.so.6"),
        "GLIBCXX": ("3.4.99", "libstdc++.so.6"),
        "CXXABI": ("1.3.99", "libstdc++.so.6"),
    }
    with pytest.raises(WheelNeedsError) as err:
        elf_needs.check_wheel(wheel.name, needs, BOOKWORM, "bookworm/x86_64/python3.11")
    msg = str(err.value)
    assert wheel.name in msg
    assert "standin_needy/libs/_needy.so.1 needs GLIBC_2.99" in msg
    assert "has glibc up to GLIBC_2.36" in msg
    assert "needs GLIBCXX_3.4.99" in msg and "libstdc++ up to GLIBCXX_3.4.30" in msg
    assert "CXXABI_1.3.99" in msg
    assert "coralpi lock" in msg  # what to do


def test_a_clean_wheel_passes_and_its_needs_round_trip_through_the_lock_form(
    objects: dict[str, Path], tmp_path: Path
) -> None:
    wheel = _wheel(
        tmp_path,
        "standin_clean-1.0-cp311-cp311-linux_x86_64.whl",
        {"standin_clean/_clean.so": objects["clean"].read_bytes(), "README": b"x" * 100},
    )
    needs = elf_needs.wheel_needs(wheel)
    assert set(needs) == {"GLIBC"}  # puts@GLIBC_2.x from this machine's real libc
    assert elf_needs.version_key(needs["GLIBC"].version) <= (2, 36)
    elf_needs.check_wheel(wheel.name, needs, BOOKWORM, "bookworm")  # no exception
    lines = elf_needs.render(needs)
    assert lines == (f"GLIBC_{needs['GLIBC'].version} by standin_clean/_clean.so",)
    back = elf_needs.parse(lines)
    assert back["GLIBC"].version == needs["GLIBC"].version
    assert back["GLIBC"].path == "standin_clean/_clean.so"


def test_a_pure_python_wheel_needs_nothing(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, "pure-1.0-py3-none-any.whl", {"pure/__init__.py": b"x = 1\n" * 20})
    assert elf_needs.wheel_needs(wheel) == {}
    assert elf_needs.render({}) == ()


def test_unknown_target_levels_are_not_guessed(objects: dict[str, Path]) -> None:
    needs = elf_needs.highest(elf_needs.object_needs(objects["needy"].read_bytes(), "x.so"))
    short = elf_needs.shortfalls(needs, TargetLibs("2.36", None, None, "somewhere"))
    assert short == ["x.so needs GLIBC_2.99, but somewhere has glibc up to GLIBC_2.36"]


def test_version_comparison_is_numeric_not_textual() -> None:
    need = elf_needs.Need("GLIBCXX", "3.4.9", "libstdc++.so.6", "a.so")
    assert elf_needs.shortfalls({"GLIBCXX": need}, TargetLibs("2.36", "3.4.30")) == []
    need = elf_needs.Need("GLIBC", "2.4", "libc.so.6", "a.so")
    assert elf_needs.shortfalls({"GLIBC": need}, TargetLibs("2.36")) == []
    need = elf_needs.Need("GLIBC", "2.36.1", "libc.so.6", "a.so")
    assert elf_needs.shortfalls({"GLIBC": need}, TargetLibs("2.36")) != []


def test_a_broken_elf_member_is_an_error_not_a_pass(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, "broken-1.0-py3-none-any.whl", {"b/x.so": b"\x7fELF" + b"\0" * 80})
    with pytest.raises(ArtifactError, match=r"b/x\.so: not a readable ELF object"):
        elf_needs.wheel_needs(wheel)
