"""verify's PCIe Coral checks on recorded Pi 5 trees (`--root`): the device on the bus without
its driver, the driver without its node, the node without its group, 16k pages, a kernel
upgrade that left the running kernel without the module, a reboot still pending."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from verify_fakeroot import FakeRoot

from verify import checks, expected, facts
from verify.kernel import parse_kernel_page_size, parse_proc_modules
from verify.rootfs import RootFS

PI5 = "Raspberry Pi 5 Model B Rev 1.0"
KERNEL8 = "6.12.25+rpt-rpi-v8"
KERNEL_2712 = "6.12.25+rpt-rpi-2712"
#: `grep -m1 -A0 KernelPageSize /proc/self/smaps` on each kernel, as recorded
SMAPS = "55d4a000-55d4b000 r--p 00000000 b3:02 1234 /usr/bin/cat\nKernelPageSize:        {} kB\n"
PROC_MODULES = (
    "apex 28672 0 - Live 0xffffffc079a10000 (O)\n"
    "gasket 102400 1 apex, Live 0xffffffc0799e0000 (O)\n"
    "rp1_pio 20480 0 - Live 0xffffffc079840000\n"
)
PCIE = expected.Expected(accelerator="pcie")


def pi5(root: FakeRoot, kernel: str = KERNEL8, page_kb: int = 4) -> FakeRoot:
    """A Pi 5 on bookworm with the Coral on the bus and nothing else of the driver."""
    root.os_release().board(PI5).users(apex="pi").pci("1ac1", "089a")
    root.write("/proc/sys/kernel/osrelease", kernel + "\n")
    root.write("/proc/self/smaps", SMAPS.format(page_kb))
    root.write("/proc/modules", "rp1_pio 20480 0 - Live 0xffffffc079840000\n")
    return root


def with_driver(root: FakeRoot, kernel: str = KERNEL8, loaded: bool = True) -> FakeRoot:
    root.write(f"/lib/modules/{kernel}/updates/dkms/apex.ko.xz", b"module")
    root.write(f"/lib/modules/{kernel}/updates/dkms/gasket.ko.xz", b"module")
    root.write(f"/lib/modules/{kernel}/build/Makefile", "")
    if loaded:
        root.write("/proc/modules", PROC_MODULES)
    return root


def with_node(root: FakeRoot, group: str = "apex") -> FakeRoot:
    """/dev/apex_0 owned by ``group``: /etc/group maps that name to the file's real gid."""
    node = root.write("/dev/apex_0", b"")
    gid = os.stat(node).st_gid
    root.write("/etc/group", f"root:x:{gid + 1}:\nplugdev:x:46:pi\n{group}:x:{gid}:pi\n")
    return root


def judged(root: FakeRoot) -> dict[str, checks.CheckResult]:
    gathered = facts.gather_system(RootFS(str(root.path)), "pi")
    return {
        r.name: r
        for r in (
            checks.check_pcie_kernel(gathered, PCIE),
            checks.check_pcie_driver(gathered, PCIE),
            checks.check_pcie_accelerator(gathered, PCIE),
            checks.check_reboot(gathered, PCIE),
        )
    }


def statuses(results: dict[str, checks.CheckResult]) -> dict[str, str]:
    return {name: r.status for name, r in results.items()}


def test_a_working_pi5_with_its_coral_passes(fake_root: FakeRoot) -> None:
    results = judged(with_node(with_driver(pi5(fake_root))))
    assert statuses(results) == {
        "pcie_kernel": "pass",
        "pcie_driver": "pass",
        "pcie_accelerator": "pass",
        "reboot": "pass",
    }
    assert results["pcie_kernel"].detail == f"4k pages ({KERNEL8})"
    assert "group apex" in results["pcie_accelerator"].detail


def test_device_on_the_bus_without_its_driver(fake_root: FakeRoot) -> None:
    results = judged(pi5(fake_root))
    assert results["pcie_driver"].status == "fail"
    assert "no apex module for any kernel" in results["pcie_driver"].detail
    acc = results["pcie_accelerator"]
    assert acc.status == "fail" and "0000:01:00.0" in acc.detail
    assert "not loaded" in acc.detail and "modprobe apex" in acc.fix


def test_driver_built_for_the_running_kernel_but_not_loaded(fake_root: FakeRoot) -> None:
    results = judged(with_driver(pi5(fake_root), loaded=False))
    assert results["pcie_driver"].status == "fail"
    assert "built for" in results["pcie_driver"].detail
    assert "modprobe apex" in results["pcie_driver"].fix


def test_driver_loaded_without_its_node(fake_root: FakeRoot) -> None:
    acc = judged(with_driver(pi5(fake_root)))["pcie_accelerator"]
    assert acc.status == "fail"
    assert "loaded but made no node" in acc.detail
    assert "pciex1-compat-pi5,no-mip" in acc.fix


def test_node_without_the_apex_group(fake_root: FakeRoot) -> None:
    acc = judged(with_node(with_driver(pi5(fake_root)), group="root"))["pcie_accelerator"]
    assert acc.status == "fail"
    assert "group root, not apex" in acc.detail
    assert "65-apex.rules" in acc.fix


def test_16k_pages_fail_and_say_which_kernel_to_boot(fake_root: FakeRoot) -> None:
    kernel = judged(pi5(fake_root, KERNEL_2712, page_kb=16))["pcie_kernel"]
    assert kernel.status == "fail"
    assert kernel.detail.startswith(f"16k pages ({KERNEL_2712})")
    assert "kernel=kernel8.img" in kernel.fix


def test_16k_pages_with_the_switch_pending_say_reboot(fake_root: FakeRoot) -> None:
    root = pi5(fake_root, KERNEL_2712, page_kb=16)
    root.write(
        "/run/coralpi/reboot-pending",
        "/boot/firmware/config.txt: dtparam=pciex1\n"
        "/boot/firmware/config.txt: kernel=kernel8.img\n",
    )
    results = judged(root)
    assert results["pcie_kernel"].fix == (
        "reboot: /boot/firmware/config.txt: kernel=kernel8.img is pending"
    )
    reboot = results["reboot"]
    assert reboot.status == "warn" and reboot.detail.startswith("reboot needed: pending ")
    assert "dtparam=pciex1" in reboot.detail


def test_a_kernel_upgrade_without_its_headers_leaves_the_running_kernel_without_the_module(
    fake_root: FakeRoot,
) -> None:
    # Built by DKMS for the old kernel; the Pi now runs a newer one without headers.
    root = pi5(fake_root, "6.12.34+rpt-rpi-v8")
    with_driver(root, KERNEL8, loaded=False)
    driver = judged(root)["pcie_driver"]
    assert driver.status == "fail"
    assert driver.detail.startswith("6.12.34+rpt-rpi-v8 has no apex module")
    assert "its headers are not installed" in driver.detail
    assert f"built for {KERNEL8} only" in driver.detail
    assert "dkms autoinstall" in driver.fix


def test_no_device_when_pcie_is_expected_is_a_warning(fake_root: FakeRoot) -> None:
    root = FakeRoot(fake_root.path)
    root.os_release().board(PI5).users()
    acc = judged(root)["pcie_accelerator"]
    assert acc.status == "warn" and "1ac1:089a" in acc.detail


def test_without_pcie_the_checks_skip(fake_root: FakeRoot) -> None:
    fake_root.os_release().board(PI5).users()
    gathered = facts.gather_system(RootFS(str(fake_root.path)), "pi")
    usb = expected.Expected(accelerator="usb")
    assert checks.check_pcie_kernel(gathered, usb).status == "skip"
    assert checks.check_pcie_driver(gathered, usb).status == "skip"


@pytest.mark.parametrize(("kb", "size"), [(4, 4096), (16, 16384), (64, 65536)])
def test_page_size_parser(kb: int, size: int) -> None:
    assert parse_kernel_page_size(SMAPS.format(kb)) == size
    assert parse_kernel_page_size("no such line\n") is None


def test_proc_modules_parser() -> None:
    assert parse_proc_modules(PROC_MODULES + "\n") == ["apex", "gasket", "rp1_pio"]


def test_the_real_root_reads_its_own_page_size() -> None:
    got = facts.gather_system(RootFS("/"), None).kernel.page_size
    assert got == os.sysconf("SC_PAGE_SIZE")


def test_group_of_a_node_outside_etc_group_is_its_gid(tmp_path: Path) -> None:
    root = FakeRoot(tmp_path)
    node = root.write("/dev/apex_0", b"")
    root.write("/etc/group", "")
    gathered = facts.gather_system(RootFS(str(tmp_path)), None)
    assert gathered.kernel.apex_group == str(os.stat(node).st_gid)
