"""The first-boot hooks as text: Imager-compatible, merged or refused, never duplicated."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from standin_images import (
    CMDLINE_TXT,
    IMAGER_FIRSTRUN,
    IMAGER_NETWORK_CONFIG,
    IMAGER_USER_DATA,
)

from provision.image import hook_cloudinit, hook_firstrun
from provision.image.errors import ImageError
from provision.image.partitions import fat_kind, parse_sfdisk_json
from provision.image.rootfs_probe import probe_root

CMDLINE = CMDLINE_TXT.format(partuuid="5e3da3da")
HOOK = " ".join(hook_firstrun.CMDLINE_TOKENS)


def test_cmdline_gets_imagers_entries_once() -> None:
    once = hook_firstrun.cmdline_with_hook(CMDLINE)
    assert once == CMDLINE.rstrip("\n") + " " + HOOK + "\n"
    assert hook_firstrun.cmdline_with_hook(once) == once
    assert once.count("\n") == 1


def test_cmdline_written_by_imager_is_left_alone() -> None:
    imager = CMDLINE.rstrip("\n") + " " + HOOK + "\n"
    assert hook_firstrun.cmdline_with_hook(imager) == imager


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CMDLINE.rstrip() + " systemd.run=/usr/local/bin/other.sh\n", "already runs"),
        ("console=tty1\nroot=/dev/mmcblk0p2\n", "one line"),
        ("\n", "one line"),
    ],
)
def test_cmdline_refusals(text: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        hook_firstrun.cmdline_with_hook(text)


def test_standalone_firstrun_cleans_up_like_imagers() -> None:
    script = hook_firstrun.firstrun_with_hook(None)
    assert script.startswith("#!/bin/bash\n")
    assert script.count(hook_firstrun.BEGIN) == 1
    lines = script.splitlines()
    assert lines[-3:] == [
        "rm -f /boot/firstrun.sh",
        "sed -i 's| systemd.run.*||g' /boot/cmdline.txt",
        "exit 0",
    ]
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_imager_firstrun_gets_the_block_before_its_cleanup_once() -> None:
    merged = hook_firstrun.firstrun_with_hook(IMAGER_FIRSTRUN)
    assert merged.count(hook_firstrun.BEGIN) == 1
    assert (
        merged.index("userconf")
        < merged.index(hook_firstrun.BEGIN)
        < merged.index("rm -f /boot/firstrun.sh")
    )
    # Imager's own lines are all still there, in order.
    assert [
        ln for ln in merged.splitlines() if ln not in hook_firstrun.BLOCK.splitlines()
    ] == IMAGER_FIRSTRUN.splitlines()
    again = hook_firstrun.firstrun_with_hook(merged)
    assert again == merged


def test_firstrun_of_another_shape_is_refused() -> None:
    with pytest.raises(ImageError, match="not one Raspberry Pi Imager wrote"):
        hook_firstrun.firstrun_with_hook("#!/bin/sh\necho my own first boot\n")


def test_user_data_new_and_merged_once() -> None:
    fresh = yaml.safe_load(hook_cloudinit.user_data_with_hook(None, "coral7"))
    assert fresh == {"hostname": "coral7", "runcmd": [hook_cloudinit.RUNCMD]}

    imager = IMAGER_USER_DATA.format(hostname="coral7")
    merged_text = hook_cloudinit.user_data_with_hook(imager, "coral7")
    assert merged_text.startswith("#cloud-config\n")
    merged = yaml.safe_load(merged_text)
    original = yaml.safe_load(imager)
    assert merged["runcmd"] == [*original["runcmd"], hook_cloudinit.RUNCMD]
    assert {k: v for k, v in merged.items() if k != "runcmd"} == {
        k: v for k, v in original.items() if k != "runcmd"
    }
    assert hook_cloudinit.user_data_with_hook(merged_text, "coral7") == merged_text
    assert hook_cloudinit.has_hook(merged_text)


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        ("#!/bin/sh\necho hi\n", "not #cloud-config"),
        (IMAGER_USER_DATA.format(hostname="otherpi"), "sets hostname 'otherpi'"),
        ("#cloud-config\nruncmd: echo\n", "runcmd is not a list"),
        ("#cloud-config\n- a list\n", "mapping"),
    ],
)
def test_user_data_refusals(existing: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        hook_cloudinit.user_data_with_hook(existing, "coral7")


def test_meta_data_keeps_an_existing_instance_id() -> None:
    fresh = yaml.safe_load(hook_cloudinit.meta_data_with_hook(None, "coral7", "salt"))
    assert fresh["local-hostname"] == "coral7"
    assert fresh["instance-id"].startswith("coralpi-coral7-")
    kept = yaml.safe_load(
        hook_cloudinit.meta_data_with_hook("instance-id: rpi-imager-1\n", "coral7", "salt")
    )
    assert kept["instance-id"] == "rpi-imager-1"


def test_cmdline_nocloud_once() -> None:
    once = hook_cloudinit.cmdline_with_nocloud(CMDLINE, "iid-1")
    assert once.endswith(" ds=nocloud;i=iid-1\n")
    assert hook_cloudinit.cmdline_with_nocloud(once, "iid-2") == once


def test_a_card_that_already_booted_gets_a_fresh_instance_id() -> None:
    """cloud-init skips runcmd for an instance it already ran: re-preparing a card that
    booted with Imager's id must give meta-data and cmdline.txt a new one."""
    used = ("rpi-imager-1",)
    meta = yaml.safe_load(
        hook_cloudinit.meta_data_with_hook(
            "instance-id: rpi-imager-1\n", "coral7", "salt", used_ids=used
        )
    )
    assert meta["instance-id"].startswith("coralpi-coral7-")
    booted = CMDLINE.rstrip("\n") + " ds=nocloud;i=rpi-imager-1;s=file:///boot/firmware/\n"
    again = hook_cloudinit.cmdline_with_nocloud(booted, meta["instance-id"], used_ids=used)
    assert f"ds=nocloud;i={meta['instance-id']};s=file:///boot/firmware/" in again
    assert "rpi-imager-1" not in again and again.count("ds=") == 1
    # An id cloud-init has not used yet stays, as before.
    assert hook_cloudinit.cmdline_with_nocloud(booted, "other", used_ids=()) == booted


def test_probe_lists_the_instances_cloud_init_ran(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    for name in ("rpi-imager-1", "coralpi-c7-1"):
        (tree / "var/lib/cloud/instances" / name).mkdir(parents=True)
    (tree / "var/lib/cloud/instances/not-a-dir").write_text("")
    image = tmp_path / "root.img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(tree), str(image), "8M"], check=True)
    assert probe_root(image, 0).cloud_instances == ("coralpi-c7-1", "rpi-imager-1")


def test_network_config_kept_when_present() -> None:
    assert hook_cloudinit.network_config_default(IMAGER_NETWORK_CONFIG) is None
    made = yaml.safe_load(hook_cloudinit.network_config_default(None) or "")
    assert made["network"]["ethernets"]["eth0"]["dhcp4"] is True


def _scrub_module() -> object:
    path = Path(__file__).resolve().parents[2] / "provision" / "image" / "pi" / "scrub_seed.py"
    spec = importlib.util.spec_from_file_location("scrub_seed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scrub_seed_removes_our_runcmd_and_every_password(tmp_path: Path) -> None:
    boot = tmp_path
    user_data = hook_cloudinit.user_data_with_hook(IMAGER_USER_DATA.format(hostname="c7"), "c7")
    (boot / "user-data").write_text(user_data)
    (boot / "network-config").write_text(IMAGER_NETWORK_CONFIG)
    script = Path(_scrub_module().__file__)  # type: ignore[attr-defined]
    subprocess.run([sys.executable, str(script), str(boot)], check=True)
    scrubbed = (boot / "user-data").read_text()
    assert scrubbed.startswith("#cloud-config\n")
    data = yaml.safe_load(scrubbed)
    assert data["runcmd"] == [["sh", "-c", "echo imager-runcmd"]]
    assert "passwd" not in data["users"][0] and data["users"][0]["name"] == "pi"
    assert "standin-wifi-passphrase" not in (boot / "network-config").read_text()
    assert "notarealpasswordhash" not in scrubbed
    net = yaml.safe_load((boot / "network-config").read_text())
    assert net["network"]["wifis"]["wlan0"]["access-points"]["standin-ssid"] == {}


def test_partition_table_parsing_and_fat_detection() -> None:
    table = parse_sfdisk_json(
        '{"partitiontable": {"label": "dos", "sectorsize": 512, "partitions": ['
        '{"node": "x.img1", "start": 8192, "size": 1048576, "type": "c"},'
        '{"node": "x.img2", "start": 1056768, "size": 4096000, "type": "83"}]}}',
        "x.img",
    )
    assert [p.start for p in table.partitions] == [8192 * 512, 1056768 * 512]
    assert table.boot_candidates()[0].number == 1
    assert table.root_candidates()[0].number == 2
    assert table.end == (1056768 + 4096000) * 512
    sector = bytearray(512)
    sector[510:512] = b"\x55\xaa"
    assert fat_kind(bytes(sector)) is None
    sector[0x52:0x5A] = b"FAT32   "
    assert fat_kind(bytes(sector)) == "FAT32"
    with pytest.raises(ImageError, match="unreadable"):
        parse_sfdisk_json("{}", "x.img")
