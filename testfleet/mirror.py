"""The Debian mirror this machine itself uses, read from its apt sources."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import FleetError

_APT_DIR = Path("/etc/apt")


def _uris_from_deb822(text: str) -> list[str]:
    uris: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        uris.extend(fields.get("uris", "").split())
    return uris


def _uris_from_one_line(text: str) -> list[str]:
    uris: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if words:
            uris.append(words[0])
    return uris


def debian_mirror(apt_dir: Path = _APT_DIR) -> str:
    """The first Debian archive URI (not the security archive) in the apt sources.

    Looks at ``sources.list.d/*.sources`` (deb822), then ``*.list`` and ``sources.list``.
    """
    candidates: list[str] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        candidates += _uris_from_deb822(path.read_text(errors="replace"))
    for path in [*sorted((apt_dir / "sources.list.d").glob("*.list")), apt_dir / "sources.list"]:
        if path.is_file():
            candidates += _uris_from_one_line(path.read_text(errors="replace"))
    for uri in candidates:
        stripped = uri.rstrip("/")
        if stripped.startswith(("http://", "https://")) and stripped.endswith("/debian"):
            return stripped
    raise FleetError(f"no Debian mirror (a URI ending in /debian) found in {apt_dir}")
