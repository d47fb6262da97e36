"""Reading a .deb's own control fields and debconf templates (provision/artifacts/debinfo).

The .debs are STAND-INs built at test time: testfleet/standin_deb.py in Python (control
archive gz, xz or zst) and, where dpkg-deb is installed, one built by dpkg-deb itself, so
the reader is shown to read what dpkg writes. Their payload is empty; the fields are those
of the community libedgetpu packages.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provision.artifacts import debinfo
from provision.artifacts.debinfo import DebError
from testfleet import standin_deb


@pytest.mark.parametrize("compress", ["gz", "xz", "zst"])
def test_control_fields_and_templates_come_from_the_deb(tmp_path: Path, compress: str) -> None:
    if compress == "zst" and shutil.which("zstd") is None:
        pytest.skip("needs zstd")
    deb = standin_deb.build(
        tmp_path / "libedgetpu1-max_16.0tf2.19.1-1.trixie_arm64.deb",
        "max",
        version="16.0tf2.19.1-1.trixie",
        arch="arm64",
        compress=compress,
    )
    got = debinfo.read_deb(deb)
    assert got.package == "libedgetpu1-max"
    assert got.version == "16.0tf2.19.1-1.trixie"
    assert got.architecture == "arm64"
    assert got.depends == ("libc6 (>= 2.28)", "libusb-1.0-0 (>= 2:1.0.20)")
    assert got.provides == ("libedgetpu1 (= 16.0tf2.19.1-1.trixie)",)
    assert got.conflicts == ("libedgetpu1",)
    assert got.templates == ("libedgetpu/accepted-eula boolean", "libedgetpu/error-eula error")
    # what a non-interactive install must answer: the boolean question only
    assert debinfo.boolean_questions(got) == ("libedgetpu/accepted-eula",)


def test_std_asks_nothing(tmp_path: Path) -> None:
    got = debinfo.read_deb(standin_deb.build(tmp_path / "s.deb", "std"))
    assert got.templates == () and debinfo.boolean_questions(got) == ()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_a_deb_built_by_dpkg_deb_reads_the_same(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        standin_deb.control_text("max", "16.0tf2.17.1-1.bookworm", "amd64")
    )
    (root / "DEBIAN" / "templates").write_text(standin_deb.MAX_TEMPLATES)
    out = tmp_path / "max.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    got = debinfo.read_deb(out)
    assert (got.package, got.architecture) == ("libedgetpu1-max", "amd64")
    assert debinfo.boolean_questions(got) == ("libedgetpu/accepted-eula",)


def test_what_the_host_cannot_satisfy_is_named(tmp_path: Path) -> None:
    got = debinfo.read_deb(
        standin_deb.build(tmp_path / "s.deb", "std", arch="arm64", depends="libc6 (>= 2.38)")
    )
    assert debinfo.unmet(got, dpkg_arch="arm64", glibc="2.41") == []
    assert debinfo.unmet(got, dpkg_arch="amd64", glibc="2.41") == [
        "it is built for Architecture arm64, the host is amd64"
    ]
    assert debinfo.unmet(got, dpkg_arch="arm64", glibc="2.36") == [
        "it Depends on libc6 (>= 2.38), the host has glibc 2.36"
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"stand-in payload, not a package\n", "no ar archive signature"),
        (b"!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n", "format"),
        (
            b"!<arch>\ndebian-binary   0           0     0     100644  400       `\n2.0\n",
            "truncated",
        ),
    ],
)
def test_what_is_not_a_deb_is_an_error(tmp_path: Path, data: bytes, match: str) -> None:
    path = tmp_path / "libedgetpu1-std_1_amd64.deb"
    path.write_bytes(data)
    with pytest.raises(DebError, match=match):
        debinfo.read_deb(path)
