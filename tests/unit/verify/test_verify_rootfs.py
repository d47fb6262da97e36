"""`--root`: every read below a recorded root stays inside it, as under chroot."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verify_fakeroot import REPO, FakeRoot

from verify import facts
from verify.rootfs import MAX_SYMLINK_HOPS, RootFS

CANARY = "CANARY-5f1c-outside-the-root"


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file next to the root (tmp_path/root), which nothing may read through the root."""
    path = tmp_path / "canary.txt"
    path.write_text(f"camera_auto_detect=1\n{CANARY}\n")
    return path


def link(root: FakeRoot, system_path: str, target: str | Path) -> Path:
    at = root.path / system_path.lstrip("/")
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(target)
    return at


def test_an_absolute_symlink_points_into_the_root_not_at_this_machine(
    fake_root: FakeRoot, canary: Path
) -> None:
    link(fake_root, "/boot/firmware/config.txt", canary)
    fs = RootFS(str(fake_root.path))
    assert fs.read_text("/boot/firmware/config.txt") is None
    assert not fs.is_file("/boot/firmware/config.txt")
    assert fs.exists("/boot/firmware/config.txt")  # the link itself is there
    # the same target recorded inside the root is what the link means
    fake_root.write(str(canary), "start_x=1\n")
    assert fs.read_text("/boot/firmware/config.txt") == "start_x=1\n"
    assert fs.resolve("/boot/firmware/config.txt") == str(fake_root.path) + str(canary)


def test_dot_dot_stops_at_the_root(fake_root: FakeRoot, canary: Path) -> None:
    fs = RootFS(str(fake_root.path))
    assert fs.read_text("/../canary.txt") is None
    assert fs.read_text("/etc/../../../canary.txt") is None
    link(fake_root, "/etc/up", "../../../../../../../../" + str(canary).lstrip("/"))
    assert fs.read_text("/etc/up") is None
    fake_root.write("/canary.txt", "inside\n")
    assert fs.read_text("/../canary.txt") == "inside\n"
    assert fs.read_text("/etc/../../canary.txt") == "inside\n"


def test_a_symlinked_directory_outside_the_root_is_not_listed_or_read(
    fake_root: FakeRoot, tmp_path: Path
) -> None:
    outside = tmp_path / "host-apt"
    outside.mkdir()
    (outside / "coral.list").write_text(f"deb https://{CANARY} coral-edgetpu-stable main\n")
    link(fake_root, "/etc/apt/sources.list.d", outside)
    link(fake_root, "/lib/udev/rules.d", outside)
    fs = RootFS(str(fake_root.path))
    assert fs.glob("/etc/apt/sources.list.d/*.list") == []
    assert fs.listdir("/etc/apt/sources.list.d") == []
    assert fs.read_text("/etc/apt/sources.list.d/coral.list") is None
    gathered = facts.gather_system(fs, None)
    assert gathered.apt_sources == [] and gathered.udev_rules == []


def test_symlinks_inside_the_root_are_followed_like_on_the_pi(fake_root: FakeRoot) -> None:
    # sysfs as recorded from a Pi: devices/* are absolute links into /sys/devices
    device = "/sys/devices/platform/scb/fd500000.pcie/usb2/2-1"
    fake_root.write(device + "/idVendor", "18d1\n")
    fake_root.write(device + "/idProduct", "9302\n")
    fake_root.write(device + "/speed", "5000\n")
    link(fake_root, "/sys/bus/usb/devices/2-1", device)
    link(fake_root, "/sys/bus/usb/devices/usb2", "../../../devices/platform/scb/fd500000.pcie/usb2")
    fake_root.write("/boot/firmware/config.txt", "camera_auto_detect=1\n")
    link(fake_root, "/boot/config.txt", "firmware/config.txt")
    fs = RootFS(str(fake_root.path))
    assert fs.glob("/sys/bus/usb/devices/*/idVendor") == ["/sys/bus/usb/devices/2-1/idVendor"]
    assert fs.glob("/sys/bus/usb/devices/*") == [
        "/sys/bus/usb/devices/2-1",
        "/sys/bus/usb/devices/usb2",
    ]
    assert fs.listdir("/sys/bus/usb/devices/usb2") == ["2-1"]
    assert fs.read_text("/boot/config.txt") == "camera_auto_detect=1\n"
    gathered = facts.gather_system(fs, None)
    assert [(d.vendor, d.product, d.speed) for d in gathered.usb_devices] == [
        ("18d1", "9302", "5000")
    ]


def test_symlink_loops_and_long_chains_are_errors_not_hangs(fake_root: FakeRoot) -> None:
    link(fake_root, "/etc/a", "b")
    link(fake_root, "/etc/b", "/etc/a")
    fs = RootFS(str(fake_root.path))
    with pytest.raises(OSError) as raised:
        fs.resolve("/etc/a")
    assert raised.value.errno == errno.ELOOP
    assert fs.read_text("/etc/a") is None and not fs.is_file("/etc/a")
    assert fs.glob("/etc/a/*") == []
    fake_root.write("/etc/end", "end\n")
    for n in range(MAX_SYMLINK_HOPS + 1):
        link(fake_root, f"/etc/chain{n}", "end" if n == 0 else f"/etc/chain{n - 1}")
    assert fs.read_text(f"/etc/chain{MAX_SYMLINK_HOPS - 1}") == "end\n"
    assert fs.read_text(f"/etc/chain{MAX_SYMLINK_HOPS}") is None


@pytest.mark.timeout(30)
def test_a_fifo_in_the_root_is_not_waited_on(fake_root: FakeRoot) -> None:
    (fake_root.path / "proc" / "device-tree").mkdir(parents=True)
    os.mkfifo(fake_root.path / "proc" / "device-tree" / "model")
    fs = RootFS(str(fake_root.path))
    assert fs.read_bytes("/proc/device-tree/model") is None


def test_the_real_root_reads_as_before() -> None:
    fs = RootFS("/")
    assert fs.is_real and fs.resolve("/etc/../etc/hostname") == "/etc/../etc/hostname"
    assert fs.is_dir("/etc") and fs.exists("/")
    assert fs.read_bytes("/proc/self/status") is not None


def test_verify_with_root_never_reports_a_file_outside_it(
    fake_root: FakeRoot, canary: Path, tmp_path: Path
) -> None:
    fake_root.os_release("bookworm")
    link(fake_root, "/boot/firmware/config.txt", canary)
    link(fake_root, "/proc/device-tree/model", canary)
    link(fake_root, "/etc/ansible/facts.d/coralpi.fact", canary)
    (tmp_path / "coral.list").write_text(f"deb https://{CANARY}/apt coral-edgetpu-stable main\n")
    link(fake_root, "/etc/apt/sources.list.d", tmp_path)
    fake_root.write("/boot/config.txt", "include ../../../canary.txt\ninclude /../canary.txt\n")
    done = subprocess.run(
        [sys.executable, "-m", "verify", "--json", "--no-smoke", "--root", str(fake_root.path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 2), done.stderr
    assert CANARY not in done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["facts"]["board"] is None
    assert document["facts"]["boot_config"] == "/boot/config.txt"


# A tree with links that point up, out and in circles: no path may resolve outside it.
LINKS = {
    "abs_out": "/../../..",
    "rel_out": "../../../../..",
    "to_etc": "/etc",
    "loop": "loop",
    "dir_up": "..",
}
COMPONENTS = st.sampled_from(["", ".", "..", "etc", "sub", *LINKS])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(COMPONENTS, max_size=10))
def test_no_path_resolves_outside_the_root(fake_root: FakeRoot, parts: list[str]) -> None:
    if not (fake_root.path / "etc").exists():
        (fake_root.path / "etc" / "sub").mkdir(parents=True)
        for name, target in LINKS.items():
            (fake_root.path / "etc" / name).symlink_to(target)
            (fake_root.path / "etc" / "sub" / name).symlink_to(target)
    fs = RootFS(str(fake_root.path))
    try:
        host = fs.resolve("/" + "/".join(parts))
    except OSError:
        return
    root = str(fake_root.path)
    assert os.path.commonpath([root, host]) == root
    assert os.path.commonpath([root, os.path.realpath(host)]) == root
