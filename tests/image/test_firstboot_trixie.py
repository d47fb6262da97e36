"""A Trixie card prepared by ``image prepare`` provisions itself at first boot through
cloud-init, as far as cloud-init runs in a container.

The card is a STAND-IN (standin_images): its root is the test fleet's cached trixie
debootstrap tree plus systemd and Debian's cloud-init, with a STAND-IN of Raspberry Pi OS's
``/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg`` (NoCloud seed from /boot/firmware). Its boot
partition holds either what Raspberry Pi Imager 2.x writes for Trixie (``imager``:
``user-data`` with a user, a password hash and its own ``runcmd``, ``network-config`` with
a Wi-Fi passphrase, ``meta-data`` with its instance id, `` ds=nocloud;i=<id>`` on
cmdline.txt) or the seed templates Raspberry Pi OS ships (``stock``: coralpi's own
instance id then goes into meta-data and onto cmdline.txt). ``image prepare`` merges
coralpi's runcmd into that seed. The card's own ext4 root is loop-mounted read-write and
booted with ``systemd-nspawn --boot`` in the network namespace of fleet host pi3 (no route
anywhere but the test bridge: the apt proxy and the stand-in sources), with the boot
partition's files at /boot/firmware. cloud-init's generator, ds-identify, its
local/network/config/final stages and their modules are Debian's, unmodified: they find
the NoCloud seed, set the hostname and run the runcmd, which runs ``firstboot.sh
cloud-init``. A second boot proves cloud-init does not run coralpi again (same instance
id: runcmd and scripts-user "already ran", their semaphore untouched).

Limits, stated plainly:
- no kernel, firmware or initramfs run. In a container cloud-init (and ds-identify) read
  the kernel command line from /proc/1/cmdline, so the ``ds=`` word of cmdline.txt is
  handed to systemd as its argument, as a Pi's kernel would hand it over in /proc/cmdline;
- the seed is a bound directory, not a FAT partition: cloud-init reads it through
  ``seedfrom: file:///boot/firmware`` (as on Raspberry Pi OS), but the vfat mount and its
  ordering before cloud-init are not exercised. This kernel has no vfat: the files are
  copied out with mtools before each boot and written back with mtools after it, and the
  checks read the card with mtools, as any PC would;
- the stand-in root is Debian's, not Raspberry Pi OS's: no NetworkManager/netplan (Debian's
  cloud-init renders the network config for systemd-networkd, which is not enabled, and
  skips Imager's Wi-Fi part with a warning; nothing is brought up, the container keeps the
  namespace's static address), no regenerate-ssh-host-keys service (ssh.service fails for
  want of host keys, as ``ssh_genkeytypes: []`` leaves key making to that service), a
  ``pi`` user that already exists (cloud-init then ignores Imager's ``passwd``), no
  tzdata. Imager's ``packages:`` entry fails (no route to Debian's mirror without the
  bundle's proxy); cloud-init reports it and goes on to runcmd, as on a Pi with no network;
- what is scrubbed is the seed on the boot partition. cloud-init's own copies in the root
  file system stay as cloud-init leaves them: ``/var/lib/cloud/instances/<id>/``
  (user-data.txt, network-config.json; root-only) and ``/var/log/cloud-init.log``
  (root:adm 0640), which logs the network config with Imager's Wi-Fi passphrase;
- the machine is x86_64, so the card is an amd64 one (the matrix and roles are the same).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from booting import extract_boot, fat_of, mounted_root, nspawn_argv, tree_mib, write_back_boot
from image_cli import coralpi
from standin_images import (
    IMAGER_INSTANCE_ID,
    IMAGER_META_DATA,
    IMAGER_NETWORK_CONFIG,
    IMAGER_USER_DATA,
    PIGEN_META_DATA,
    PIGEN_NETWORK_CONFIG,
    PIGEN_USER_DATA,
    RPI_CLOUD_CFG,
    RPI_CLOUD_CFG_PATH,
    StandinSpec,
    build,
    imager_cmdline,
)

from provision.image import hook_cloudinit
from testfleet import Fleet

HOSTNAME = "coral-t1"
FIRST_BOOT_TIMEOUT = 1500  # provision + verify through the apt proxy, on 2 busy cores
SECOND_BOOT_TIMEOUT = 300
STOP_TIMEOUT = 120
PARROT = "Ara macao (Scarlet Macaw)"


def boot_until(
    root: Path, boot: Path, netns: str, log: Path, done: Callable[[], bool], timeout: float
) -> float:
    """Boot the card's root with systemd until ``done()`` holds, then stop the container
    by the PID started here (SIGTERM: nspawn powers the container off; SIGKILL after
    STOP_TIMEOUT). Returns the seconds until ``done()``."""
    cmdline = (boot / "cmdline.txt").read_text()
    words = [w for w in cmdline.split() if w.startswith("ds=")]
    assert words, cmdline
    argv = nspawn_argv(root, boot, "coralpi-trixie-card", netns=netns, words=words)
    start = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            while not done():
                if proc.poll() is not None:
                    raise AssertionError(
                        f"the container ended early (exit {proc.returncode})"
                        f"\n{log.read_text(errors='replace')[-3000:]}"
                    )
                if time.monotonic() - start > timeout:
                    raise AssertionError(
                        f"not done after {timeout}s\n{log.read_text(errors='replace')[-3000:]}"
                    )
                time.sleep(3)
            return time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@dataclass(frozen=True)
class Seed:
    """What is on the card's boot partition before ``image prepare``."""

    name: str
    files: dict[str, str]
    imager: bool  # Imager's customisation (its instance id, user, secrets, runcmd)


SEEDS = [
    Seed(
        "imager",
        {
            "user-data": IMAGER_USER_DATA.format(hostname=HOSTNAME),
            "network-config": IMAGER_NETWORK_CONFIG,
            "meta-data": IMAGER_META_DATA,
            "cmdline.txt": imager_cmdline(),
        },
        imager=True,
    ),
    Seed(
        "stock",
        {
            "user-data": PIGEN_USER_DATA,
            "network-config": PIGEN_NETWORK_CONFIG,
            "meta-data": PIGEN_META_DATA,
        },
        imager=False,
    ),
]


@pytest.mark.parametrize("seed", SEEDS, ids=[s.name for s in SEEDS])
def test_trixie_card_provisions_itself_through_cloud_init(
    image_fleet: Fleet, fleet_lock: Path, cloud_init_tree: Path, tmp_path: Path, seed: Seed
) -> None:
    """``imager``: a card Imager customised (coralpi keeps its instance id and settings and
    takes the secrets out afterwards). ``stock``: a card flashed as Raspberry Pi OS ships it
    (coralpi's own instance id in meta-data and on cmdline.txt starts cloud-init)."""
    spec = StandinSpec(
        "trixie",
        root_tree=cloud_init_tree,
        root_mib=tree_mib(cloud_init_tree) + 3072,
        boot_files=dict(seed.files),
        root_files={RPI_CLOUD_CFG_PATH: RPI_CLOUD_CFG},
    )
    start = time.monotonic()
    image = build(tmp_path / "trixie-standin.img", spec, tmp_path)
    print(f"\n[{seed.name}] stand-in trixie card built: {time.monotonic() - start:.0f}s")
    flashed_cmdline = fat_of(image).read_text("/cmdline.txt") or ""

    start = time.monotonic()
    proc = coralpi(
        "image",
        "prepare",
        image,
        "--hostname",
        HOSTNAME,
        "-i",
        image_fleet.inventory_path,
        "--limit",
        "pi3",
        "--lock",
        fleet_lock,
        "--json",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["route"] == "cloud-init" and result["release"] == "trixie", result
    print(f"[{seed.name}] image prepare: {time.monotonic() - start:.0f}s")
    fat = fat_of(image)
    meta = yaml.safe_load(fat.read_text("/meta-data") or "")
    seeded = yaml.safe_load(fat.read_text("/user-data") or "")
    assert seeded["runcmd"][-1] == hook_cloudinit.RUNCMD
    assert fat.read_text("/network-config") == seed.files["network-config"], "kept as it is"
    if seed.imager:
        # Imager's seed is kept: its instance id (meta-data and cmdline.txt), its runcmd.
        assert meta == {"instance-id": IMAGER_INSTANCE_ID, "local-hostname": HOSTNAME}
        assert fat.read_text("/cmdline.txt") == flashed_cmdline
        assert len(seeded["runcmd"]) == 2
    else:
        assert meta["instance-id"].startswith(f"coralpi-{HOSTNAME}-"), meta
        assert meta["dsmode"] == "local" and meta["local-hostname"] == HOSTNAME
        assert (
            fat.read_text("/cmdline.txt")
            == flashed_cmdline.rstrip("\n") + f" ds=nocloud;i={meta['instance-id']}\n"
        )
    instance_id = meta["instance-id"]
    prepared_cmdline = fat.read_text("/cmdline.txt")

    boot = tmp_path / "bootfs"
    extract_boot(image, boot)
    report = boot / "coralpi-report"
    with mounted_root(image, tmp_path / "card-root") as root:
        assert (root / "etc/hostname").read_text().strip() != HOSTNAME
        assert not (root / "var/lib/cloud/instance").exists(), "the card must be unbooted"
        # cloud-init's /var/lib/cloud/instance is an absolute link: follow it in the card.
        instance = root / "var/lib/cloud/instances" / instance_id
        finished = instance / "boot-finished"

        # -- first boot: cloud-init runs the seed, its runcmd runs firstboot.sh to the end.
        log = tmp_path / "boot1.log"
        seconds = boot_until(
            root,
            boot,
            image_fleet.host("pi3").netns,
            log,
            lambda: (report / "status.json").exists() and finished.exists(),
            FIRST_BOOT_TIMEOUT,
        )
        print(
            f"[{seed.name}] first boot (cloud-init + provision + verify, apt proxy): {seconds:.0f}s"
        )
        firstboot_log = (report / "firstboot.log").read_text()
        cloud_log = (root / "var/log/cloud-init.log").read_text(errors="replace")
        output_log = (root / "var/log/cloud-init-output.log").read_text(errors="replace")
        context = f"{firstboot_log[-4000:]}\n--- cloud-init-output.log\n{output_log[-3000:]}"

        # cloud-init found the seed on the boot partition, with the card's instance id.
        assert (root / "var/lib/cloud/data/instance-id").read_text().strip() == instance_id
        assert "ds_config_seedfrom,file:///boot/firmware" in cloud_log, cloud_log[-3000:]
        # The hostname is cloud-init's doing (firstboot.sh sets it only on the firstrun route).
        assert (root / "etc/hostname").read_text().strip() == HOSTNAME, cloud_log[-3000:]
        assert "route cloud-init" in firstboot_log
        if seed.imager:
            assert "imager-runcmd" in output_log, "Imager's own runcmd must run too"
            # Not coralpi's to change (see the module docstring), shown for the record.
            print(
                f"[{seed.name}] cloud-init's own log holds Imager's Wi-Fi passphrase: "
                f"{'standin-wifi-passphrase' in cloud_log}"
            )
        # Provisioned.
        assert (root / "opt/coralpi/venv/bin/python").exists(), context
        fact = json.loads((root / "etc/ansible/facts.d/coralpi.fact").read_text())
        assert fact["runtime_package"].startswith("libedgetpu1-"), fact
        assert "coralpi/firstboot.sh" in (instance / "scripts/runcmd").read_text()
        semaphore = instance / "sem/config_scripts_user"
        assert semaphore.exists()
        sem_mtime, log_lines = mtime(semaphore), len(firstboot_log.splitlines())
        first_finished = mtime(finished)

        # The card as any PC reads it after the first boot.
        write_back_boot(image, boot)
        fat = fat_of(image)
        status = json.loads(fat.read_text("/coralpi-report/status.json") or "{}")
        assert status["status"] == "ok", context
        assert status["route"] == "cloud-init" and status["hostname"] == HOSTNAME
        assert status["bundle_kept"] is False
        verify = json.loads(fat.read_text("/coralpi-report/verify.json") or "{}")
        assert verify["result"] in ("pass", "warn"), verify
        assert verify["smoke"]["top"][0]["label"] == PARROT
        assert not fat.exists("/coralpi"), "the bundle must be gone"
        user_data_text = fat.read_text("/user-data") or ""
        user_data = yaml.safe_load(user_data_text)
        assert user_data_text.startswith("#cloud-config\n")
        assert "coralpi" not in user_data_text
        assert user_data["hostname"] == HOSTNAME
        network_text = fat.read_text("/network-config") or ""
        if seed.imager:
            assert user_data["runcmd"] == [["sh", "-c", "echo imager-runcmd"]], user_data
            assert user_data["users"][0]["name"] == "pi"
            assert "notarealpasswordhash" not in user_data_text
            assert "passwd" not in user_data["users"][0]
            assert "standin-wifi-passphrase" not in network_text
            assert yaml.safe_load(network_text)["network"]["wifis"]["wlan0"]["access-points"] == {
                "standin-ssid": {}
            }
        else:
            assert "runcmd" not in user_data and user_data["ssh_pwauth"] is False
            assert yaml.safe_load(network_text) == yaml.safe_load(PIGEN_NETWORK_CONFIG)
        # meta-data and cmdline.txt stay: the instance id is what keeps cloud-init from
        # treating the next boot as a new instance.
        assert fat.read_text("/cmdline.txt") == prepared_cmdline
        assert yaml.safe_load(fat.read_text("/meta-data") or "")["instance-id"] == instance_id

        # -- second boot, from the card as the first boot left it: same instance, so
        # cloud-init's per-instance runcmd (scripts_user) does not run coralpi again.
        boot2 = tmp_path / "bootfs2"
        extract_boot(image, boot2)
        log2 = tmp_path / "boot2.log"
        seconds = boot_until(
            root,
            boot2,
            image_fleet.host("pi3").netns,
            log2,
            lambda: mtime(finished) > first_finished,
            SECOND_BOOT_TIMEOUT,
        )
        print(f"[{seed.name}] second boot (cloud-init, nothing to do): {seconds:.0f}s")
        second_log = (root / "var/log/cloud-init.log").read_text(errors="replace")
        second_part = second_log[len(cloud_log) :]
        assert "running 'init-local'" in second_part, "cloud-init did not run again"
        assert mtime(semaphore) == sem_mtime, "scripts_user ran again"
        for module in ("config-runcmd", "config-scripts-user"):
            assert f"{module} already ran (freq=once-per-instance)" in second_part, second_part[
                -3000:
            ]
        assert (root / "var/lib/cloud/data/previous-instance-id").read_text().strip() == instance_id
        report2 = boot2 / "coralpi-report"
        assert len((report2 / "firstboot.log").read_text().splitlines()) == log_lines
        assert not (boot2 / "coralpi").exists()
        assert (root / "etc/hostname").read_text().strip() == HOSTNAME
