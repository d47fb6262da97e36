"""Which qemu-user interpreter an image build's chroot uses (from binfmt_misc entries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.image.chroot import chroot_argv, interpreter_for
from provision.image.errors import ImageError


def entry(binfmt: Path, name: str, interpreter: str, flags: str, enabled: bool = True) -> None:
    binfmt.mkdir(exist_ok=True)
    (binfmt / name).write_text(
        f"{'enabled' if enabled else 'disabled'}\ninterpreter {interpreter}\nflags: {flags}\n"
        "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
    )


def test_native_architecture_needs_no_interpreter(tmp_path: Path) -> None:
    assert interpreter_for("x86_64", "x86_64", tmp_path) is None
    assert interpreter_for("aarch64", "aarch64", tmp_path) is None


def test_debian_handler_held_open_by_the_kernel(tmp_path: Path) -> None:
    entry(tmp_path, "qemu-aarch64", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "POCF")
    assert interpreter_for("aarch64", "x86_64", tmp_path) == (
        Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"),
        True,
    )


def test_prefixed_handler_without_f_flag_must_be_bound_into_the_root(tmp_path: Path) -> None:
    entry(tmp_path, "coralpi-qemu-arm", "/usr/bin/qemu-arm-static", "OC")
    assert interpreter_for("armv7l", "x86_64", tmp_path) == (
        Path("/usr/bin/qemu-arm-static"),
        False,
    )


@pytest.mark.parametrize("setup", ["none", "disabled", "other-arch"])
def test_missing_handler_says_what_to_install(tmp_path: Path, setup: str) -> None:
    binfmt = tmp_path / "binfmt_misc"
    if setup == "disabled":
        entry(binfmt, "qemu-aarch64", "/usr/bin/qemu-aarch64-static", "F", enabled=False)
    elif setup == "other-arch":
        entry(binfmt, "qemu-arm", "/usr/bin/qemu-arm-static", "F")
    with pytest.raises(ImageError, match="install qemu-user-static") as err:
        interpreter_for("aarch64", "x86_64", binfmt)
    assert "qemu-aarch64" in str(err.value)


def test_chroot_runs_with_a_clean_environment(tmp_path: Path) -> None:
    argv = chroot_argv(tmp_path, "apt-get", "clean", env={"SOURCE_DATE_EPOCH": "1"})
    assert argv[:4] == ["chroot", str(tmp_path), "/usr/bin/env", "-i"]
    assert "SOURCE_DATE_EPOCH=1" in argv and "DEBIAN_FRONTEND=noninteractive" in argv
    assert argv[-2:] == ["apt-get", "clean"]
