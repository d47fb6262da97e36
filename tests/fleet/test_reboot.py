"""The reboot path, on a test host booted by systemd: `coralpi_allow_reboot` lets coralpi_boot
reboot the host after it changed config.txt (or for what an earlier run left pending) and
wait for it; the host comes back and the pending record is gone.

The host (``init="systemd"``) is the bookworm tree with systemd, booted by systemd-nspawn in
its network namespace; a reboot inside it ends nspawn (exit 133) and the test fleet boots
it again (testfleet/hosts.py), with a fresh /run and a new boot id, as a Pi would come
back. A Pi 5 STAND-IN as in test_roles_converge.py (Bookworm's config.txt and a
kernel8.img placeholder on /boot/firmware; the board is the plan's). Not run here: the
firmware reading config.txt (a container has no firmware and boots no kernel: nothing of
the new lines takes effect, only the reboot itself is real).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fleet_cli import Run, host_text, run_playbook

from provision.artifacts.service import HostArtifacts
from provision.planning.matrix import resolve
from provision.planning.plan import Plan
from provision.planning.targets import Choices, Target
from testfleet import Fleet, HostSpec
from testfleet.pi_files import BOOKWORM_CONFIG_TXT

pytestmark = pytest.mark.pcie

MakeFleet = Callable[..., Fleet]
CONFIG = "/boot/firmware/config.txt"
PENDING = "/run/coralpi/reboot-pending"
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


@pytest.fixture(scope="module")
def booted_fleet(make_fleet: MakeFleet) -> Fleet:
    return make_fleet("reboot", hosts=[HostSpec("pi5", "bookworm", init="systemd")])


def pi5_plan() -> Plan:
    target = Target(
        "debian", "bookworm", "x86_64", "3.11", "2.36", "Raspberry Pi 5 Model B Rev 1.0"
    )
    return resolve(target, Choices(accelerator="pcie"))


def placeholder_artifacts(workdir: Path) -> HostArtifacts:
    """Files the plan would carry; coralpi_boot (the only role run here) reads none."""
    empty = workdir / "no-artifacts"
    empty.mkdir(exist_ok=True)
    return HostArtifacts(
        wheels_dir=empty,
        runtime_debs={},
        coral_keyring=None,
        verify_assets=empty,
        verify_package=empty / "verify.tar.gz",
        driver_deb=empty / "gasket-dkms.deb",
    )


def boot(fleet: Fleet, workdir: Path, allow: bool) -> Run:
    plans = {"pi5": (pi5_plan(), placeholder_artifacts(workdir))}
    flag = f"coralpi_allow_reboot={'true' if allow else 'false'}"
    return run_playbook(
        fleet, workdir, "provision.yml", plans, "--tags", "coralpi_boot", "-e", flag
    )


def boot_id(fleet: Fleet) -> str:
    return host_text(fleet, "pi5", BOOT_ID).strip()


def pending(fleet: Fleet) -> str | None:
    proc = fleet.ssh("pi5", f"cat {PENDING}", timeout=60)
    return proc.stdout if proc.returncode == 0 else None


def test_allow_reboot_reboots_waits_and_clears_what_was_pending(
    booted_fleet: Fleet, tmp_path: Path
) -> None:
    fleet = booted_fleet
    assert host_text(fleet, "pi5", "cat /proc/1/comm").strip() == "systemd"
    setup = f"mkdir -p /boot/firmware && cat > {CONFIG} && : > /boot/firmware/kernel8.img"
    proc = fleet.ssh("pi5", setup, become=True, input=BOOKWORM_CONFIG_TXT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = list(pi5_plan().pcie.config_lines)  # type: ignore[union-attr]

    # Not allowed: the lines are written, the reboot is left pending and recorded.
    first_boot = boot_id(fleet)
    run = boot(fleet, tmp_path, allow=False)
    assert run.rc == 0, run.output[-6000:]
    assert "reboot needed: dtparam=pciex1" in run.output
    assert (pending(fleet) or "").splitlines() == [f"{CONFIG}: {line}" for line in lines]
    assert boot_id(fleet) == first_boot

    # Allowed now, nothing left to change: the pending reboot is done and waited for.
    run = boot(fleet, tmp_path, allow=True)
    assert run.rc == 0, run.output[-6000:]
    assert "TASK [coralpi_boot : Reboot for what an earlier run left pending]" in run.output
    assert run.changed("pi5") == 1, run.output[-6000:]
    second_boot = boot_id(fleet)
    assert second_boot != first_boot
    assert pending(fleet) is None
    text = host_text(fleet, "pi5", f"cat {CONFIG}")
    assert text.startswith(BOOKWORM_CONFIG_TXT) and "kernel=kernel8.img" in text

    # A fresh config.txt with reboots allowed: written, rebooted in the same run (before
    # the driver role would run), nothing recorded as pending.
    proc = fleet.ssh("pi5", f"cat > {CONFIG}", become=True, input=BOOKWORM_CONFIG_TXT)
    assert proc.returncode == 0, proc.stderr
    run = boot(fleet, tmp_path, allow=True)
    assert run.rc == 0, run.output[-6000:]
    assert "RUNNING HANDLER [coralpi_boot : Reboot to apply the boot configuration]" in (run.output)
    assert "reboot needed" not in run.output
    third_boot = boot_id(fleet)
    assert third_boot != second_boot
    assert pending(fleet) is None
    assert host_text(fleet, "pi5", f"cat {CONFIG}.coralpi-prev") == BOOKWORM_CONFIG_TXT

    # Converged: no change, no reboot.
    run = boot(fleet, tmp_path, allow=True)
    assert run.rc == 0 and run.changed("pi5") == 0, run.output[-6000:]
    assert boot_id(fleet) == third_boot
