"""Run on the Pi after the first-boot run (Trixie): take coralpi's runcmd entry and every
password out of the cloud-init seed files on the boot partition.

Raspberry Pi Imager leaves the user's password hash and Wi-Fi passphrases in ``user-data``
and ``network-config`` after first boot. cloud-init has already applied them (and ignores
edited seed files while the instance id is unchanged), so removing them changes nothing but
what a lost card gives away. Usage: python3 scrub_seed.py BOOT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

RUNCMD_SCRIPT = "coralpi/firstboot.sh"
USER_SECRETS = ("passwd", "hashed_passwd", "plain_text_passwd")


def scrub_user_data(data: dict[str, Any]) -> dict[str, Any]:
    runcmd = [
        c
        for c in data.get("runcmd") or []
        if not (isinstance(c, list) and any(RUNCMD_SCRIPT in str(p) for p in c))
        and not (isinstance(c, str) and RUNCMD_SCRIPT in c)
    ]
    if runcmd:
        data["runcmd"] = runcmd
    else:
        data.pop("runcmd", None)
    for key in ("password", "chpasswd"):
        data.pop(key, None)
    for user in data.get("users") or []:
        if isinstance(user, dict):
            for key in USER_SECRETS:
                user.pop(key, None)
    return data


def scrub_network(data: dict[str, Any]) -> dict[str, Any]:
    net = data.get("network", data)
    for wifi in (net.get("wifis") or {}).values():
        if not isinstance(wifi, dict):
            continue
        for point in (wifi.get("access-points") or {}).values():
            if isinstance(point, dict):
                point.pop("password", None)
                auth = point.get("auth")
                if isinstance(auth, dict):
                    auth.pop("password", None)
    return data


def main(boot: Path) -> int:
    user_data = boot / "user-data"
    if user_data.is_file():
        data = yaml.safe_load(user_data.read_text()) or {}
        text = "#cloud-config\n" + yaml.safe_dump(scrub_user_data(data), sort_keys=False)
        user_data.write_text(text)
    network = boot / "network-config"
    if network.is_file():
        data = yaml.safe_load(network.read_text()) or {}
        network.write_text(yaml.safe_dump(scrub_network(data), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
