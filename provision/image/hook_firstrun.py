"""Bookworm's first-boot hook, as Raspberry Pi Imager writes it (pure text functions).

Imager puts ``firstrun.sh`` on the boot partition and appends
`` systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot
systemd.unit=kernel-command-line.target`` to the one line of ``cmdline.txt``; at boot the
initramfs (raspberrypi-sys-mods' ``imager_fixup``) rewrites ``/boot/`` to
``/boot/firmware/``, systemd runs the script once, and the script ends by deleting itself
and stripping `` systemd.run...`` from ``cmdline.txt``.

coralpi adds one marked block that runs the bundle. An Imager ``firstrun.sh`` gets the block
just before its final clean-up (so Imager's user, Wi-Fi and locale settings are in place
first); a ``firstrun.sh`` of any other shape is refused, never overwritten. Preparing again
replaces the block: one hook, however often a card is prepared.
"""

from __future__ import annotations

import re

from provision.image.errors import ImageError

CMDLINE_TOKENS = (
    "systemd.run=/boot/firstrun.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
)
BEGIN = "# >>> coralpi first-boot bundle (written by coralpi image prepare) >>>"
END = "# <<< coralpi first-boot bundle <<<"

#: Runs the bundle. No literal boot path: the initramfs rewrites ``/boot/`` in this file,
#: and the script's own location is the boot partition's mount point either way.
BLOCK = f"""{BEGIN}
CORALPI_BOOT=$(dirname "$(readlink -f "$0")")
sh "$CORALPI_BOOT/coralpi/firstboot.sh" firstrun || true
{END}
"""

#: Imager's clean-up, the line coralpi's block goes before.
_IMAGER_CLEANUP = re.compile(r"^[ \t]*rm -f /boot(/firmware)?/firstrun\.sh[ \t]*$", re.M)

STANDALONE = f"""#!/bin/bash
# First-boot script in the shape Raspberry Pi Imager writes: run once by systemd
# (systemd.run= on cmdline.txt), then it deletes itself and the cmdline.txt entries.
set +e

{BLOCK}
rm -f /boot/firstrun.sh
sed -i 's| systemd.run.*||g' /boot/cmdline.txt
exit 0
"""


def cmdline_with_hook(text: str, where: str = "cmdline.txt") -> str:
    """``cmdline.txt`` with the systemd.run entries appended once."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise ImageError(
            f"{where}: expected the kernel command line on one line, found {len(lines)} "
            "non-empty lines; refusing to guess"
        )
    words = lines[0].split()
    for word in words:
        if word.startswith("systemd.run=") and word.removeprefix("systemd.run=") not in (
            "/boot/firstrun.sh",
            "/boot/firmware/firstrun.sh",
        ):
            raise ImageError(
                f"{where} already runs {word.split('=', 1)[1]} at first boot (systemd.run=); "
                "coralpi only adds itself to Raspberry Pi Imager's /boot/firstrun.sh. "
                "Remove that entry or prepare a fresh card."
            )
    have_run = any(w.startswith("systemd.run=") for w in words)
    missing = [
        t
        for t in CMDLINE_TOKENS
        if t not in words and not (have_run and t.startswith("systemd.run="))
    ]
    if not missing:
        return lines[0].rstrip() + "\n"
    return lines[0].rstrip() + " " + " ".join(missing) + "\n"


def firstrun_with_hook(existing: str | None, where: str = "firstrun.sh") -> str:
    """The ``firstrun.sh`` to write: coralpi's own, or Imager's with coralpi's block added."""
    if existing is None or not existing.strip():
        return STANDALONE
    if BEGIN in existing:
        start = existing.index(BEGIN)
        end_at = existing.find(END, start)
        if end_at < 0:
            raise ImageError(f"{where}: coralpi's block has no end marker; fix it by hand")
        stop = existing.find("\n", end_at)
        stop = len(existing) if stop < 0 else stop + 1
        return existing[:start] + BLOCK + existing[stop:]
    match = _IMAGER_CLEANUP.search(existing)
    if match is None:
        raise ImageError(
            f"{where} exists but is not one Raspberry Pi Imager wrote (no "
            "`rm -f /boot/firstrun.sh` clean-up line): coralpi will neither overwrite it nor "
            "guess where its step belongs. Remove it, or add "
            "`sh /boot/firmware/coralpi/firstboot.sh firstrun` to it by hand and prepare "
            "with a fresh firstrun.sh."
        )
    return existing[: match.start()] + BLOCK + existing[match.start() :]


def has_hook(firstrun: str | None, cmdline: str | None) -> bool:
    return bool(firstrun and BEGIN in firstrun and cmdline and "systemd.run=" in cmdline)
