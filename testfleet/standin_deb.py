"""STAND-IN runtime .debs built in Python at test time (no dpkg needed).

A real Debian binary package layout (deb(5): an ar archive of ``debian-binary``,
``control.tar.<gz|xz|zst>`` and ``data.tar.gz``) with the control fields and debconf
templates of the community libedgetpu packages as their own files state them (Package,
Version, Architecture, Depends on libc6 and libusb, Provides/Conflicts libedgetpu1; the max
package's ``libedgetpu/accepted-eula`` boolean and ``libedgetpu/error-eula`` note). The
payload is empty: these are for the controller's reading and pinning code, not for hosts
(testfleet/standin_coral.py builds installable ones with dpkg-deb).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

MAX_TEMPLATES = """Template: libedgetpu/accepted-eula
Type: boolean
Default: false
Description: Continue to install the Edge TPU runtime that runs at the maximum operating frequency?
 (STAND-IN text) The max runtime makes the USB Accelerator hot.

Template: libedgetpu/error-eula
Type: error
Description: Installation aborted.
 (STAND-IN text) The license was not accepted.
"""


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _compress(data: bytes, how: str) -> bytes:
    if how == "gz":
        import gzip

        return gzip.compress(data, mtime=0)
    if how == "xz":
        import lzma

        return lzma.compress(data)
    if how == "zst":
        return subprocess.run(
            ["zstd", "-q", "-c"], input=data, capture_output=True, check=True
        ).stdout
    raise ValueError(how)


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += header.encode("ascii") + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def control_text(variant: str, version: str, arch: str, depends: str | None = None) -> str:
    deps = depends if depends is not None else "libc6 (>= 2.28), libusb-1.0-0 (>= 2:1.0.20)"
    return (
        f"Package: libedgetpu1-{variant}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: STAND-IN <standin@testfleet.invalid>\n"
        f"Depends: {deps}\nProvides: libedgetpu1 (= {version})\nConflicts: libedgetpu1\n"
        "Replaces: libedgetpu1\nSection: misc\nPriority: optional\n"
        "Description: STAND-IN Edge TPU runtime (no payload)\n for the controller's .deb reader\n"
    )


def build(
    path: Path,
    variant: str,
    *,
    version: str = "16.0tf2.17.1-1.bookworm",
    arch: str = "amd64",
    depends: str | None = None,
    compress: str = "xz",
    pad: int = 0,
) -> Path:
    """A STAND-IN libedgetpu1-<variant> .deb at ``path`` (``pad`` bytes of filler in its
    data archive, for tests that need a size)."""
    files = {"control": control_text(variant, version, arch, depends).encode()}
    if variant == "max":
        files["templates"] = MAX_TEMPLATES.encode()
    data = _tar({"usr/share/doc/standin/filler": b"\n" * pad})
    deb = _ar(
        [
            ("debian-binary", b"2.0\n"),
            (f"control.tar.{compress}", _compress(_tar(files), compress)),
            ("data.tar.gz", _compress(data, "gz")),
        ]
    )
    path.write_bytes(deb)
    return path
