"""The runtime .debs of Coral's own apt repository, pinned by sha256 like the community ones.

Coral's repository (``coral-edgetpu-stable`` on packages.cloud.google.com) is unmaintained
since 2021 and may vanish; a lock that holds its .debs by sha256 survives a mirror or its
loss. The sha256 is not trusted on first use: it comes from the repository's own signed
index, the chain apt itself checks:

1. ``dists/<suite>/InRelease``, its signature checked (``gpgv``) against the keyring of
   the accepted, fingerprint-checked Coral key (:mod:`provision.artifacts.keyring`);
2. ``main/binary-<arch>/Packages``, whose sha256 the signed Release lists;
3. the package's stanza there (``Version``, ``Filename``, ``SHA256``, ``Size``): the .deb
   is downloaded from ``<repo>/<Filename>`` and refused unless it hashes to that.

The lock then records it as a platform's ``deb`` entry; the role pushes and installs that
file (``apt`` with ``deb:``), so the host needs the repository no longer for the runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from provision.artifacts import debinfo
from provision.artifacts.cache import ArtifactError

SUITE = "coral-edgetpu-stable"
COMPONENT = "main"


class CoralIndexError(ArtifactError):
    """The Coral repository's index is not signed by an accepted key, or does not list
    what the plan installs."""


@dataclass(frozen=True)
class IndexEntry:
    """One package as the signed Packages index lists it."""

    package: str
    version: str
    architecture: str
    filename: str  # relative to the repository root, e.g. pool/main/libe/.../x.deb
    sha256: str
    size: int

    @property
    def basename(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


def inrelease_url(repo: str, suite: str = SUITE) -> str:
    return f"{repo.rstrip('/')}/dists/{suite}/InRelease"


def packages_path(debarch: str, component: str = COMPONENT) -> str:
    """The index file's path as the Release file names it."""
    return f"{component}/binary-{debarch}/Packages"


def packages_url(repo: str, debarch: str, suite: str = SUITE) -> str:
    return f"{repo.rstrip('/')}/dists/{suite}/{packages_path(debarch)}"


def verified_release(inrelease: bytes, keyring: bytes, source: str) -> str:
    """The Release text of a clear-signed InRelease, when its signature is good and made by
    a key of ``keyring`` (binary OpenPGP); raises CoralIndexError otherwise."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise CoralIndexError("gpgv is not installed (apt-get install gpgv): it checks the index")
    with tempfile.TemporaryDirectory(prefix="coralpi-gpgv-") as tmp:
        ring = os.path.join(tmp, "coral.gpg")
        with open(ring, "wb") as f:
            f.write(keyring)
        proc = subprocess.run(
            [gpgv, "--quiet", "--keyring", ring, "--output", "-", "-"],
            input=inrelease,
            capture_output=True,
            check=False,
            env=dict(os.environ, LC_ALL="C", GNUPGHOME=tmp),
        )
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CoralIndexError(
            f"{source} is not signed by an accepted Coral key "
            f"({err[-1] if err else 'gpgv gave no reason'}): refusing its index. If the "
            "repository's key was rotated, check the new fingerprint and add it to "
            "coralpi_coral_key_fingerprints."
        )
    return proc.stdout.decode("utf-8", errors="replace")


def release_digest(release: str, path: str, source: str) -> tuple[str, int]:
    """(sha256, size) the signed Release lists for ``path`` (e.g. main/binary-amd64/Packages)."""
    in_sha256 = False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_sha256 = line.strip() == "SHA256:"
            continue
        parts = line.split()
        if in_sha256 and len(parts) == 3 and parts[2] == path:
            return parts[0].lower(), int(parts[1])
    raise CoralIndexError(f"{source}: the signed Release lists no SHA256 for {path}")


def find_entry(packages: str, package: str, version: str, source: str) -> IndexEntry:
    """The stanza of ``package`` at exactly ``version`` in a Packages index."""
    listed = []
    for stanza in debinfo.paragraphs(packages):
        if stanza.get("Package") != package:
            continue
        listed.append(stanza.get("Version", "?"))
        if stanza.get("Version") != version:
            continue
        try:
            return IndexEntry(
                package=package,
                version=version,
                architecture=stanza["Architecture"],
                filename=stanza["Filename"],
                sha256=stanza["SHA256"].lower(),
                size=int(stanza["Size"]),
            )
        except (KeyError, ValueError):
            raise CoralIndexError(
                f"{source}: {package} {version} has no Filename / SHA256 / Size"
            ) from None
    have = ", ".join(listed) if listed else "none"
    raise CoralIndexError(f"{source}: no {package} {version} (the index lists versions: {have})")
