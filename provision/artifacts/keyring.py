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
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provision.artifacts.cache import ArtifactError
from verify import coral_keys

#: The key accepted by default for packages.cloud.google.com/apt (coral-edgetpu-stable),
#: and the keys the key file carries that are left out on purpose (the 2018 key, expired
#: 2021-03-31; Artifact Registry's shared signer 35BAA0B3..., which proves the host, not
#: Coral: if apt reports NO_PUBKEY C0BA5CE6DC6315A3 for coral-edgetpu-stable, add it to
#: coralpi_coral_key_fingerprints knowingly). One list, with its sources, in
#: verify/coral_keys.py: verify on the Pi judges keyrings by the same one.
DEFAULT_CORAL_FINGERPRINTS: tuple[str, ...] = coral_keys.ACCEPTED


class KeyringError(ArtifactError):
    """The key file holds no accepted key, or gpg could not read it."""


@dataclass(frozen=True)
class KeyInfo:
    """One primary key of a key file: its fingerprint, subkey fingerprints and user ids."""

    fingerprint: str
    subkeys: tuple[str, ...]
    uids: tuple[str, ...]
    #: gpg's validity of the primary key ("e" expired, "r" revoked, ...) and its expiry
    #: (seconds since the epoch, "" if none), from ``--with-colons``.
    validity: str = ""
    expires: str = ""

    def describe(self) -> str:
        uid = f" ({self.uids[0]})" if self.uids else ""
        return f"{self.fingerprint}{uid}"

    def problem(self, now: float | None = None) -> str | None:
        """Why the key cannot be trusted to sign a repository today, or None."""
        if self.validity == "r":
            return "is revoked"
        when = int(self.expires) if self.expires.isdigit() else None
        expired = self.validity == "e" or (
            when is not None and when <= (time.time() if now is None else now)
        )
        if expired:
            day = time.strftime("%Y-%m-%d", time.gmtime(when)) if when else "an unknown date"
            return f"expired on {day}"
        return None


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
    state = ("", "")  # validity, expiry of the current primary key
    expect: str | None = None  # which record the next fpr line belongs to

    def flush() -> None:
        if primary is not None:
            keys.append(KeyInfo(primary, tuple(subs), tuple(uids), *state))

    for line in text.splitlines():
        fields = line.split(":")
        record = fields[0]
        if record == "pub":
            flush()
            primary, subs, uids, expect = None, [], [], "pub"
            state = (fields[1] if len(fields) > 1 else "", fields[6] if len(fields) > 6 else "")
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


def untrusted_accepted(data: bytes, accepted: Sequence[str]) -> list[str]:
    """Accepted keys in the file that are expired or revoked, by name (left out of the
    keyring; said in the lock so nobody takes them for trusted)."""
    keys = accepted_keys(read_keys(data), accepted)
    return [f"{k.describe()} {k.problem()}" for k in keys if k.problem() is not None]


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
    usable = [k for k in good if k.problem() is None]
    if not usable:
        bad = "; ".join(f"{k.describe()} {k.problem()}" for k in good)
        raise KeyringError(
            f"the key file from {source} holds accepted key(s) that cannot be trusted: {bad}. "
            "apt would refuse what they sign (EXPKEYSIG / REVKEYSIG). The repository has "
            "probably rotated its key: check the new fingerprint against a trusted source and "
            "add it to coralpi_coral_key_fingerprints."
        )
    matched = sorted(k.fingerprint for k in usable)
    with tempfile.TemporaryDirectory(prefix="coralpi-gpg-") as home:
        _gpg(["--import"], data, home)
        keyring = _gpg(["--export", *matched], None, home)
    if not keyring:
        raise KeyringError(f"gpg exported nothing for {', '.join(matched)} from {source}")
    return keyring, matched
