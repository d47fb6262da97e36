"""Bad input is refused with a clear message before a single byte is written.

Every case builds its own STAND-IN card (see standin_images) and checks the file's sha256
is unchanged after the refusal. Plans come from ``--platform`` (no network): the refusals
all happen before the bundle is built. "Card too small" needs a real bundle and lives in
test_prepare_write.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from image_cli import coralpi, sha256
from standin_images import IMAGER_USER_DATA, StandinSpec, build

from provision.image.errors import ImageError
from provision.image.partitions import read_table
from provision.image.planning import from_platform
from provision.image.prepare import inspect_card

PLATFORM = {"bookworm": "bookworm/x86_64/3.11", "trixie": "trixie/x86_64/3.13"}

Maker = Callable[[Path], Path]


def standin(**kw: object) -> Maker:
    def make(tmp: Path) -> Path:
        return build(tmp / "standin.img", StandinSpec(**kw), tmp)  # type: ignore[arg-type]

    return make


def not_an_image(tmp: Path) -> Path:
    path = tmp / "photo.img"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4096)
    return path


def truncated(tmp: Path) -> Path:
    path = standin()(tmp)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 32 * 2**20)
    return path


CASES = [
    # (id, make the card, extra CLI args, expected message)
    ("not-a-disk-image", not_an_image, [], "not a disk image"),
    ("no-fat-partition", standin(boot_type="83", boot_fat=""), [], "no FAT boot partition"),
    ("fat-type-unformatted", standin(boot_fat=""), [], "holds no FAT file system"),
    (
        "unsupported-release",
        standin(release="bullseye"),
        ["--platform", "bullseye/x86_64/3.9"],
        "unsupported release",
    ),
    (
        "plan-for-another-release",
        standin(release="bookworm"),
        ["--platform", PLATFORM["trixie"]],
        "holds bookworm",
    ),
    ("plan-for-another-arch", standin(arch="arm64"), [], "aarch64 system"),
    ("truncated-image", truncated, [], "truncated image"),
    (
        "foreign-firstrun",
        standin(boot_files={"firstrun.sh": "#!/bin/sh\necho mine\n"}),
        [],
        "not one Raspberry Pi Imager wrote",
    ),
    (
        "cmdline-runs-something-else",
        standin(
            boot_files={
                "cmdline.txt": "console=tty1 root=/dev/mmcblk0p2 systemd.run=/boot/other.sh\n"
            }
        ),
        [],
        "already runs /boot/other.sh",
    ),
    (
        "user-data-not-cloud-config",
        standin(release="trixie", boot_files={"user-data": "#!/bin/sh\necho hi\n"}),
        ["--platform", PLATFORM["trixie"]],
        "not #cloud-config",
    ),
    (
        "user-data-other-hostname",
        standin(
            release="trixie", boot_files={"user-data": IMAGER_USER_DATA.format(hostname="otherpi")}
        ),
        ["--platform", PLATFORM["trixie"]],
        "sets hostname 'otherpi'",
    ),
    (
        "trixie-without-cloud-init",
        standin(release="trixie", cloud_init=False),
        ["--platform", PLATFORM["trixie"]],
        "without cloud-init",
    ),
    ("bad-hostname", standin(), ["--hostname", "not_a_host!"], "hostname"),
]


@pytest.mark.parametrize(
    ("make", "args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_before_writing(
    image_tools: None, tmp_path: Path, make: Maker, args: list[str], message: str
) -> None:
    card = make(tmp_path)
    before = sha256(card)
    argv = ["image", "prepare", card, "--hostname", "coral1"]
    if "--platform" not in args:
        argv += ["--platform", PLATFORM["bookworm"]]
    proc = coralpi(*argv, *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert sha256(card) == before


def test_private_key_is_refused(image_tools: None, tmp_path: Path) -> None:
    card = standin()(tmp_path)
    key = tmp_path / "id_ed25519"
    key.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    before = sha256(card)
    proc = coralpi(
        "image",
        "prepare",
        card,
        "--hostname",
        "c1",
        "--platform",
        PLATFORM["bookworm"],
        "--ssh-key",
        key,
    )
    assert proc.returncode == 1 and "private key" in proc.stderr
    assert sha256(card) == before


# ----------------------------------------------------------------- block devices


@contextmanager
def loop_device(image: Path | str, offset: int = 0) -> Iterator[Path]:
    """A loop device over ``image`` (from ``offset``): the stand-in card as a block device."""
    dev = subprocess.run(
        ["losetup", "--find", "--show", "--offset", str(offset), str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextmanager
def mounted_root(backing: Path, mnt: Path) -> Iterator[None]:
    """Mount the card's root partition (through a loop device at its offset) read-only."""
    table = read_table(backing)
    mnt.mkdir()
    with loop_device(backing, table.root_candidates()[0].start) as part:
        subprocess.run(["mount", "-o", "ro", str(part), str(mnt)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


def test_mounted_card_is_refused(image_tools: None, root_only: None, tmp_path: Path) -> None:
    """A card whose root partition is mounted (as a desktop auto-mounts it) is refused, as
    is an image file with a loop-mounted partition."""
    image = standin()(tmp_path)
    before = sha256(image)
    with loop_device(image) as dev, mounted_root(dev, tmp_path / "mnt"):
        proc = coralpi(
            "image", "prepare", dev, "--hostname", "c1", "--platform", PLATFORM["bookworm"], "--yes"
        )
        assert proc.returncode == 1
        assert f"is mounted (at {tmp_path / 'mnt'})" in proc.stderr, proc.stderr
    with mounted_root(image, tmp_path / "mnt2"):
        proc = coralpi(
            "image", "prepare", image, "--hostname", "c1", "--platform", PLATFORM["bookworm"]
        )
        assert proc.returncode == 1
        assert f"is mounted (at {tmp_path / 'mnt2'}) through a loop device" in proc.stderr
    assert sha256(image) == before


def test_this_machines_own_disk_is_refused(
    image_tools: None, root_only: None, tmp_path: Path
) -> None:
    """The check is fed the loop device as if it held / (the test cannot offer this
    machine's real root disk, and must never risk writing to it)."""
    image = standin()(tmp_path)
    with loop_device(image) as dev:
        st = dev.stat()
        devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        with pytest.raises(ImageError, match="holds this machine's root file system"):
            inspect_card(dev, mountinfo="", root_devnos=[devno])
        # And the real machine's root is recognised as such from its mountinfo.
        mountinfo = Path("/proc/self/mountinfo").read_text()
        root_line = next(ln for ln in mountinfo.splitlines() if ln.split()[4] == "/")
        assert root_line.split()[2] not in {devno}


def test_block_device_needs_confirmation(
    image_tools: None, root_only: None, tmp_path: Path
) -> None:
    image = standin()(tmp_path)
    with loop_device(image) as dev:
        before = sha256(image)
        proc = coralpi(
            "image",
            "prepare",
            dev,
            "--hostname",
            "c1",
            "--platform",
            PLATFORM["bookworm"],
            stdin="",
        )
        assert proc.returncode == 1
        assert "needs confirmation; run on a terminal or pass --yes" in proc.stderr, proc.stderr
        assert sha256(image) == before
        answers: list[str] = []

        def say_no(question: str) -> str:
            answers.append(question)
            return "n"

        from provision.image.prepare import prepare

        with pytest.raises(ImageError, match="not confirmed, nothing written"):
            prepare(dev, "c1", lambda: from_platform(PLATFORM["bookworm"], {}), ask=say_no)
        assert answers and str(dev) in answers[0]
        assert sha256(image) == before
