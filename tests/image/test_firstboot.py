"""``image prepare`` writes bundle and hook, idempotently; the prepared card then provisions
itself at first boot.

The cards are STAND-INS (standin_images). The Bookworm card's root is the test fleet's cached
debootstrap tree plus systemd. Its first boot runs in ``systemd-nspawn --boot`` on the
card's own ext4 root (loop-mounted read-write: the image really changes), inside the network
namespace of fleet host pi1 (no route anywhere but the test bridge: the apt proxy and the
stand-in sources), with the boot partition's files at /boot/firmware.

Limits, stated plainly:
- no kernel, firmware or initramfs run. The test does what the initramfs' ``imager_fixup``
  does (``/boot/`` -> ``/boot/firmware/`` in cmdline.txt and firstrun.sh) and hands the
  ``systemd.*`` words of cmdline.txt to systemd as its arguments, which is where a container's
  systemd reads its kernel command line from (systemd-run-generator then runs firstrun.sh as
  on a Pi, and ``systemd.run_success_action=reboot`` ends the container);
- this kernel has no vfat, so the boot partition is copied out with mtools before the boot
  and its files are written back with mtools after it; the checks then read the card with
  mtools, as any PC would read the report;
- the machine is x86_64, so the card is an amd64 one (the matrix and roles are the same);
- here the Trixie card's seed files are checked as files (merged with Imager's, one runcmd
  after two prepares) and the clean-up (scrub_seed.py) is run on them as the Pi would run
  it. Its first boot through cloud-init (a stand-in root with Debian's cloud-init) runs in
  test_firstboot_trixie.py, which states what a container cannot show of it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from booting import extract_boot, fat_of, nspawn_argv, tree_mib, write_back_boot
from image_cli import coralpi, sha256
from standin_images import (
    IMAGER_FIRSTRUN,
    IMAGER_NETWORK_CONFIG,
    IMAGER_USER_DATA,
    StandinSpec,
    build,
)

from provision.image import hook_cloudinit, hook_firstrun
from provision.image.partitions import find_root_partition, read_table
from testfleet import Fleet

BOOT_TIMEOUT = 1200


@pytest.fixture
def ssh_pub(tmp_path: Path) -> Path:
    key = tmp_path / "card_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "card-test", "-f", str(key)],
        check=True,
    )
    return key.with_suffix(".pub")


def prepare(
    image: Path, fleet: Fleet, lock: Path, host: str, *extra: str | Path
) -> dict[str, object]:
    proc = coralpi(
        "image",
        "prepare",
        image,
        "--hostname",
        "coral-b1",
        "-i",
        fleet.inventory_path,
        "--limit",
        host,
        "--lock",
        lock,
        "--json",
        *extra,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


# ------------------------------------------------------------------ boot helpers


def imager_fixup(boot: Path) -> None:
    """raspberrypi-sys-mods' initramfs step on Bookworm: /boot/ -> /boot/firmware/."""
    for name in ("cmdline.txt", "firstrun.sh"):
        path = boot / name
        if path.exists():
            path.write_text(path.read_text().replace("/boot/", "/boot/firmware/"))


@pytest.fixture
def mounted_card_root(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    mounts: list[Path] = []

    def mount(image: Path) -> Path:
        root = find_root_partition(image, read_table(image))
        mnt = tmp_path / "card-root"
        mnt.mkdir()
        subprocess.run(
            ["mount", "-o", f"loop,offset={root.start}", str(image), str(mnt)], check=True
        )
        mounts.append(mnt)
        return mnt

    yield mount  # type: ignore[misc]
    for mnt in mounts:
        subprocess.run(["umount", "-d", str(mnt)], check=False)


def boot_once(root: Path, boot: Path, netns: str, log: Path) -> int:
    """Boot the card's root with systemd (PID recorded, ended by PID on timeout)."""
    words = [w for w in (boot / "cmdline.txt").read_text().split() if w.startswith("systemd.")]
    argv = nspawn_argv(root, boot, "coralpi-card", netns=netns, words=words)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            return proc.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


# ------------------------------------------------------------------ tests


def test_bookworm_card_provisions_itself_at_first_boot(
    image_fleet: Fleet,
    fleet_lock: Path,
    systemd_tree: Path,
    ssh_pub: Path,
    tmp_path: Path,
    mounted_card_root: object,
) -> None:
    spec = StandinSpec(
        "bookworm",
        root_tree=systemd_tree,
        root_mib=tree_mib(systemd_tree) + 1536,
        boot_files={"firstrun.sh": IMAGER_FIRSTRUN},
    )
    image = build(tmp_path / "bookworm-standin.img", spec, tmp_path)
    imager_cmdline = fat_of(image).read_text("/cmdline.txt")
    assert imager_cmdline is not None

    first = prepare(image, image_fleet, fleet_lock, "pi1", "--ssh-key", ssh_pub)
    assert first["route"] == "firstrun" and first["release"] == "bookworm"
    fat = fat_of(image)
    once = (fat.read_text("/firstrun.sh"), fat.read_text("/cmdline.txt"))
    start = time.monotonic()
    prepare(image, image_fleet, fleet_lock, "pi1", "--ssh-key", ssh_pub)
    again_seconds = time.monotonic() - start
    twice = (fat.read_text("/firstrun.sh"), fat.read_text("/cmdline.txt"))
    assert twice == once, "preparing twice changed the hook"
    firstrun, cmdline = twice
    assert firstrun is not None and cmdline is not None
    assert firstrun.count(hook_firstrun.BEGIN) == 1
    assert cmdline.count("systemd.run=") == 1 and cmdline.count("\n") == 1
    hook = " ".join(hook_firstrun.CMDLINE_TOKENS)
    assert cmdline == imager_cmdline.rstrip("\n") + " " + hook + "\n"
    assert "userconf" in firstrun, "Imager's own steps must stay"
    listing = fat.listdir("/coralpi")
    for name in (
        "firstboot.sh",
        "bundle.env",
        "bundle.json",
        "playbooks",
        "verify",
        "artifacts",
        "ansible",
        "vars",
        "inventory.ini",
        "ansible.cfg",
        "authorized_keys",
    ):
        assert name in listing, listing
    plan = json.loads(fat.read_text("/coralpi/vars/plan.json") or "{}")
    arts = plan["coralpi_plans"]["localhost"]["artifacts"]
    assert arts["wheels_dir"] == "/boot/firmware/coralpi/artifacts/wheels"
    print(f"second prepare of the same card: {again_seconds:.1f}s")

    # -- first boot
    boot = tmp_path / "bootfs"
    extract_boot(image, boot)
    imager_fixup(boot)
    root = mounted_card_root(image)  # type: ignore[operator]
    log = tmp_path / "boot.log"
    start = time.monotonic()
    rc = boot_once(root, boot, image_fleet.host("pi1").netns, log)
    boot_seconds = time.monotonic() - start
    report_dir = boot / "coralpi-report"
    firstboot_log = (report_dir / "firstboot.log").read_text() if report_dir.exists() else ""
    assert rc == 133, (
        f"expected the reboot exit of nspawn, got {rc}\n{firstboot_log[-4000:]}"
        f"\n{log.read_text(errors='replace')[-3000:]}"
    )
    print(f"first boot (provision + verify, warm apt proxy): {boot_seconds:.0f}s")

    # The root file system: provisioned, hostname and key from the bundle, Imager's step ran.
    assert (root / "etc/hostname").read_text().strip() == "coral-b1"
    keys = (root / "home/pi/.ssh/authorized_keys").read_text()
    assert ssh_pub.read_text().strip() in keys
    assert (root / "var/lib/imager-firstrun-marker").exists()
    fact = json.loads((root / "etc/ansible/facts.d/coralpi.fact").read_text())
    assert fact["runtime_package"] == plan["coralpi_plans"]["localhost"]["runtime"]["package"]
    assert (root / "opt/coralpi/venv/bin/python").exists()

    # The card as any PC reads it afterwards.
    write_back_boot(image, boot)
    fat = fat_of(image)
    status = json.loads(fat.read_text("/coralpi-report/status.json") or "{}")
    assert status["status"] == "ok", firstboot_log[-4000:]
    verify = json.loads(fat.read_text("/coralpi-report/verify.json") or "{}")
    assert verify["result"] in ("pass", "warn"), verify
    assert verify["smoke"]["top"][0]["label"] == "Ara macao (Scarlet Macaw)"
    # Hook and secrets gone: no firstrun.sh (it held Imager's password hash), no
    # systemd.run on cmdline.txt, no bundle (vars with the proxy setting, the env file).
    assert not fat.exists("/firstrun.sh")
    final_cmdline = fat.read_text("/cmdline.txt") or ""
    assert "systemd.run" not in final_cmdline
    assert final_cmdline.split() == imager_cmdline.split()
    assert not fat.exists("/coralpi")
    assert "notarealpasswordhash" not in json.dumps(
        [fat.read_text(f"/{n}") for n in fat.listdir("/") if "." in n]
    )


def test_trixie_card_gets_cloud_init_seed_merged_once(
    image_fleet: Fleet, fleet_lock: Path, tmp_path: Path
) -> None:
    spec = StandinSpec(
        "trixie",
        boot_files={
            "user-data": IMAGER_USER_DATA.format(hostname="coral-b1"),
            "network-config": IMAGER_NETWORK_CONFIG,
        },
    )
    image = build(tmp_path / "trixie-standin.img", spec, tmp_path)
    result = prepare(image, image_fleet, fleet_lock, "pi3")
    assert result["route"] == "cloud-init"
    fat = fat_of(image)
    once = {
        n: fat.read_text(f"/{n}")
        for n in ("user-data", "meta-data", "network-config", "cmdline.txt")
    }
    prepare(image, image_fleet, fleet_lock, "pi3")
    twice = {n: fat.read_text(f"/{n}") for n in once}
    assert twice == once
    user_data = yaml.safe_load(twice["user-data"] or "")
    assert user_data["runcmd"].count(hook_cloudinit.RUNCMD) == 1
    assert user_data["users"][0]["name"] == "pi", "Imager's settings must stay"
    assert twice["network-config"] == IMAGER_NETWORK_CONFIG
    meta = yaml.safe_load(twice["meta-data"] or "")
    assert f"ds=nocloud;i={meta['instance-id']}" in (twice["cmdline.txt"] or "")
    assert not fat.exists("/firstrun.sh")
    assert "firstboot.sh" in fat.listdir("/coralpi")

    # The clean-up the Pi runs after its first boot, on a copy of the seed files.
    seed = tmp_path / "seed"
    seed.mkdir()
    for name in ("user-data", "network-config"):
        (seed / name).write_text(twice[name] or "")
    script = seed / "scrub_seed.py"
    script.write_bytes(fat.read("/coralpi/scrub_seed.py") or b"")
    subprocess.run(["python3", str(script), str(seed)], check=True)
    scrubbed = yaml.safe_load((seed / "user-data").read_text())
    assert hook_cloudinit.RUNCMD not in scrubbed.get("runcmd", [])
    assert "passwd" not in scrubbed["users"][0]
    assert "standin-wifi-passphrase" not in (seed / "network-config").read_text()


def test_card_too_small_for_the_bundle(
    image_fleet: Fleet, fleet_lock: Path, tmp_path: Path
) -> None:
    image = build(
        tmp_path / "small-standin.img",
        StandinSpec("bookworm", boot_mib=16, boot_fat="16"),
        tmp_path,
    )
    digest = sha256(image)
    proc = coralpi(
        "image",
        "prepare",
        image,
        "--hostname",
        "c1",
        "-i",
        image_fleet.inventory_path,
        "--limit",
        "pi1",
        "--lock",
        fleet_lock,
    )
    assert proc.returncode == 1
    assert "too small" in proc.stderr, proc.stderr
    assert sha256(image) == digest
