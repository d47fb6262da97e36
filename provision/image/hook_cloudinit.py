"""Trixie's first-boot hook: cloud-init NoCloud seed files on the boot partition.

Raspberry Pi OS Trixie ships cloud-init; Raspberry Pi Imager 2.x customises a card by
writing ``user-data``, ``meta-data`` and ``network-config`` to the boot partition (and
`` ds=nocloud;i=<instance id>`` on ``cmdline.txt``). coralpi adds one ``runcmd`` entry that
runs the bundle, and the hostname; Imager's own settings in an existing ``user-data`` are
kept (merged; YAML comments are not kept). A ``user-data`` that is not ``#cloud-config``, or
that names another hostname, is refused. Preparing again finds coralpi's entry and adds
nothing: one hook.

After the run the bundle's ``scrub_seed.py`` removes coralpi's entry and every password
Imager left in the seed files (cloud-init ignores edited seed files unless the instance id
changes, so this changes nothing at later boots).
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from provision.image.errors import ImageError

BOOT_MOUNT = "/boot/firmware"
RUNCMD = ["sh", f"{BOOT_MOUNT}/coralpi/firstboot.sh", "cloud-init"]
HEADER = "#cloud-config\n"


def _load(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImageError(f"{where}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ImageError(f"{where}: expected a YAML mapping")
    return data


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=1000)


def user_data_with_hook(existing: str | None, hostname: str, where: str = "user-data") -> str:
    if existing is None or not existing.strip():
        data: dict[str, Any] = {}
    else:
        first = existing.lstrip().splitlines()[0].strip()
        if first != "#cloud-config":
            raise ImageError(
                f"{where} exists and is not #cloud-config (starts with {first[:40]!r}): "
                "coralpi can only merge its run into cloud-config user-data; remove the file "
                "or convert it"
            )
        data = _load(existing, where)
    other = data.get("hostname")
    if other not in (None, hostname):
        raise ImageError(
            f"{where} sets hostname {other!r} but --hostname is {hostname!r}: change one of "
            "them (coralpi will not overwrite Imager's setting silently)"
        )
    data["hostname"] = hostname
    runcmd = data.get("runcmd") or []
    if not isinstance(runcmd, list):
        raise ImageError(f"{where}: runcmd is not a list")
    if RUNCMD not in runcmd:
        runcmd.append(list(RUNCMD))
    data["runcmd"] = runcmd
    return HEADER + _dump(data)


def instance_id(hostname: str, salt: str) -> str:
    return f"coralpi-{hostname}-{hashlib.sha256(salt.encode()).hexdigest()[:12]}"


def meta_data_with_hook(
    existing: str | None,
    hostname: str,
    salt: str,
    where: str = "meta-data",
    used_ids: tuple[str, ...] = (),
) -> str:
    """meta-data with ``local-hostname`` and an instance id: an existing one is kept (the
    card's first boot is still to come), unless cloud-init on the card already ran with it
    (``used_ids``): then it would treat the boot as the same instance and skip the runcmd,
    so the card gets a fresh id."""
    data = {} if existing is None or not existing.strip() else _load(existing, where)
    if str(data.get("instance-id")) in used_ids:
        del data["instance-id"]
    data.setdefault("instance-id", instance_id(hostname, salt))
    other = data.get("local-hostname")
    if other not in (None, hostname):
        raise ImageError(f"{where} sets local-hostname {other!r} but --hostname is {hostname!r}")
    data["local-hostname"] = hostname
    return _dump(data)


def network_config_default(existing: str | None) -> str | None:
    """A wired DHCP configuration when there is none (an existing one is kept as it is)."""
    if existing is not None and existing.strip():
        return None
    return _dump(
        {
            "network": {
                "version": 2,
                "ethernets": {"eth0": {"dhcp4": True, "optional": True}},
            }
        }
    )


def cmdline_with_nocloud(
    text: str, iid: str, where: str = "cmdline.txt", used_ids: tuple[str, ...] = ()
) -> str:
    """Append `` ds=nocloud;i=<id>`` as Imager 2.x does, unless a ``ds=`` is there; an
    ``i=`` naming an instance cloud-init already ran (``used_ids``) becomes ``iid`` (the
    kernel command line's id wins over meta-data's)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise ImageError(f"{where}: expected the kernel command line on one line")
    words = lines[0].split()
    if any(w.startswith("ds=") for w in words):
        out = []
        for word in words:
            if word.startswith("ds="):
                parts = word.split(";")
                word = ";".join(
                    f"i={iid}" if p.startswith("i=") and p[2:] in used_ids else p for p in parts
                )
            out.append(word)
        return " ".join(out) + "\n"
    return lines[0].rstrip() + f" ds=nocloud;i={iid}\n"


def meta_instance_id(meta_data: str) -> str:
    value = _load(meta_data, "meta-data").get("instance-id")
    return str(value)


def has_hook(user_data: str | None) -> bool:
    if not user_data:
        return False
    try:
        data = yaml.safe_load(user_data) or {}
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and RUNCMD in (data.get("runcmd") or [])
