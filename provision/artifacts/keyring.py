"""Checking the Coral apt signing key by fingerprint and turning it into an apt keyring.

The key file Coral publishes (``<repo>/doc/apt-key.gpg``) holds several keys and has been
rotated before, so the file is trusted only if it carries at least one key whose fingerprint
is on an accepted list (``coralpi_coral_key_fingerprints``). The keyring handed to apt's
``signed-by=`` holds exactly the accepted keys found in the file (binary OpenPGP, as
``gpg --export`` writes it), nothing else from the file.

gpg runs in a throw-away GNUPGHOME, so the user's own keyrings are never read or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provision.artifacts.cache import ArtifactError

#: Fingerprints seen in public configs pinning packages.cloud.google.com/apt/doc/apt-key.gpg
#: (FIELD-NOTES.md): the older "Google Cloud Packages Automatic Signing Key" and the 2021
#: "Rapture" key (its absence shows as NO_PUBKEY B53DC80D13EDEF05).
DEFAULT_CORAL_FINGERPRINTS: tuple[str, ...] = (
    "54A647F9048D5688D7DA2ABE6A030B21BA07F4FB",
    "A362B822F6DEDC652817EA46B53DC80D13EDEF05",
)


class KeyringError(ArtifactError):
    """The key file holds no accepted key, or gpg could not read it."""


@dataclass(frozen=True)
class KeyInfo:
    """One primary key of a key file: its fingerprint, subkey fingerprints and user ids."""

    fingerprint: str
    subkeys: tuple[str, ...]
    uids: tuple[str, ...]

    def describe(self) -> str:
        uid = f" ({self.uids[0]})" if self.uids else ""
        return f"{self.fingerprint}{uid}"


def normalize_fingerprint(value: str) -> str:
    fpr = value.replace(" ", "").replace(":", "").upper()
    if fpr.startswith("0X"):
        fpr = fpr[2:]
    if len(fpr) not in (40, 64) or any(c not in "0123456789ABCDEF" for c in fpr):
        raise KeyringError(
            f"coralpi_coral_key_fingerprints: {value!r} is not a full key fingerprint "
            "(40 hex digits; short key ids are not accepted)"
        )
    return fpr


def parse_colons(text: str) -> list[KeyInfo]:
    """Keys from ``gpg --with-colons`` output (pure; tested on recorded output)."""
    keys: list[KeyInfo] = []
    primary: str | None = None
    subs: list[str] = []
    uids: list[str] = []
    expect: str | None = None  # which record the next fpr line belongs to

    def flush() -> None:
        if primary is not None:
            keys.append(KeyInfo(primary, tuple(subs), tuple(uids)))

    for line in text.splitlines():
        fields = line.split(":")
        record = fields[0]
        if record == "pub":
            flush()
            primary, subs, uids, expect = None, [], [], "pub"
        elif record == "sub":
            expect = "sub"
        elif record == "fpr" and len(fields) > 9:
            if expect == "pub":
                primary = fields[9].upper()
            elif expect == "sub":
                subs.append(fields[9].upper())
            expect = None
        elif record == "uid" and len(fields) > 9:
            uids.append(fields[9].replace("\\x3a", ":"))
    flush()
    return keys


def _gpg(args: Sequence[str], data: bytes | None, home: str) -> bytes:
    gpg = shutil.which("gpg")
    if gpg is None:
        raise KeyringError("gpg is not installed (apt-get install gnupg): it checks the Coral key")
    env = dict(os.environ, GNUPGHOME=home, LC_ALL="C")
    proc = subprocess.run(
        [gpg, "--batch", "--no-tty", "--quiet", *args],
        input=data,
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise KeyringError(f"gpg {args[0]} failed: {err[-1] if err else 'no output'}")
    return proc.stdout


def read_keys(data: bytes) -> list[KeyInfo]:
    """The primary keys of an armored or binary OpenPGP key file."""
    with tempfile.TemporaryDirectory(prefix="coralpi-gpg-") as home:
        out = _gpg(["--show-keys", "--with-colons", "--with-fingerprint"], data, home)
    return parse_colons(out.decode(errors="replace"))


def accepted_keys(keys: Iterable[KeyInfo], accepted: Iterable[str]) -> list[KeyInfo]:
    """Keys whose primary (or a subkey) fingerprint is on the accepted list."""
    wanted = {normalize_fingerprint(a) for a in accepted}
    return [k for k in keys if k.fingerprint in wanted or wanted.intersection(k.subkeys)]


def build_keyring(data: bytes, accepted: Sequence[str], source: str) -> tuple[bytes, list[str]]:
    """Check ``data`` against ``accepted`` fingerprints; return (binary keyring, matched).

    Raises KeyringError listing the fingerprints found when none is accepted.
    """
    if not accepted:
        raise KeyringError(
            "coralpi_coral_key_fingerprints is empty: no key can be trusted for the Coral source"
        )
    keys = read_keys(data)
    if not keys:
        raise KeyringError(f"the key file from {source} holds no OpenPGP public key")
    good = accepted_keys(keys, accepted)
    if not good:
        found = "; ".join(k.describe() for k in keys)
        wanted = ", ".join(normalize_fingerprint(a) for a in accepted)
        raise KeyringError(
            f"the key file from {source} holds none of the accepted fingerprints. "
            f"Found: {found}. Accepted (coralpi_coral_key_fingerprints): {wanted}. "
            "If the repository's key was rotated, check the new fingerprint against a trusted "
            "source and add it to coralpi_coral_key_fingerprints."
        )
    matched = sorted(k.fingerprint for k in good)
    with tempfile.TemporaryDirectory(prefix="coralpi-gpg-") as home:
        _gpg(["--import"], data, home)
        keyring = _gpg(["--export", *matched], None, home)
    if not keyring:
        raise KeyringError(f"gpg exported nothing for {', '.join(matched)} from {source}")
    return keyring, matched
