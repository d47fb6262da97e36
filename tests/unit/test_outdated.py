"""`coralpi matrix outdated`: what PyPI has that matrix.toml does not know, on recorded
index pages (tests/unit/data/pypi/, see its README) and once against PyPI (marker pypi)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from provision import cli
from provision.commands import matrix_cmd
from provision.planning import outdated
from provision.planning.matrix import load_matrix

RECORDED = Path(__file__).parent / "data" / "pypi"


class RecordedIndex:
    """PyPI's answers as recorded in tests/unit/data/pypi; a package not recorded there
    stands for a source that cannot be reached."""

    def releases(self, package: str) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        path = RECORDED / f"{package}.json"
        if not path.is_file():
            raise outdated.requests.ConnectionError(f"{package}: not recorded")
        releases: Mapping[str, Sequence[Mapping[str, Any]]] = json.loads(path.read_text())[
            "releases"
        ]
        return releases


def findings(report: outdated.Report, package: str) -> list[outdated.Finding]:
    return [f for f in report.findings if f.package == package]


def test_recorded_pages_show_what_the_matrix_does_not_know() -> None:
    report = outdated.check(RecordedIndex())
    # ai-edge-litert 2.4.0 is newer than the newest the matrix knows (2.3.0)
    (new,) = findings(report, "ai-edge-litert")
    assert (new.kind, new.version) == ("new version", "2.4.0")
    assert "cp313, cp314" in new.detail and "aarch64 (glibc 2.27)" in new.detail
    assert "win" not in new.detail and "macos" not in new.detail  # Linux wheels only
    # numpy: the matrix knows 2.5.5, so the recorded 2.3.1 and 2.4.1 are not new
    assert findings(report, "numpy") == []
    # what the matrix already records gives no line (2.7.0 is older than it knows)
    assert findings(report, "tflite-runtime") == []
    assert findings(report, "opencv-python-headless") == []
    assert report.newest["tflite-runtime"] == "2.14.0"
    # pillow could not be asked: not checked, with why; and the GitHub sources
    not_checked = {n.what: n for n in report.not_checked}
    assert "not recorded" in not_checked["PyPI pillow"].note
    community = not_checked["runtime source community-deb"]
    assert "16.0tf2.19.1-1" in community.note
    wheels = not_checked["community tflite_runtime wheels (feranick/TFlite-builds)"]
    assert "tflite-runtime 2.17.1 (aarch64, cp311-cp313)" in wheels.note
    assert "tflite-runtime 2.17.1 (x86_64, cp311-cp312)" in wheels.note
    assert "gasket" in " ".join(not_checked)


def _standin(files: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    return {v: [{"filename": n, "yanked": False} for n in names] for v, names in files.items()}


def test_new_python_platform_and_glibc_of_a_known_version() -> None:
    known = outdated.known_packages()["tflite-runtime"]
    # a stand-in release 2.14.0 that differs from what the matrix records of it
    standin = _standin(
        {
            "2.14.0": [
                "tflite_runtime-2.14.0-cp312-cp312-manylinux_2_34_aarch64.whl",
                "tflite_runtime-2.14.0-cp311-cp311-manylinux_2_38_x86_64.whl",
                "tflite_runtime-2.14.0-cp311-cp311-musllinux_1_2_riscv64.whl",
                "tflite_runtime-2.14.0-cp311-cp311-linux_armv7l.whl",
            ],
            "2.15.0rc1": ["tflite_runtime-2.15.0rc1-cp311-cp311-manylinux_2_34_aarch64.whl"],
        }
    )
    got = {(f.kind, f.version): f.detail for f in outdated.compare(known, standin)}
    assert set(got) == {("new python", "2.14.0"), ("newer glibc", "2.14.0")}
    assert got[("new python", "2.14.0")].startswith("cp312")
    assert "glibc 2.38" in got[("newer glibc", "2.14.0")]
    # a platform the matrix has no wheel of
    numpy = outdated.known_packages()["numpy"]
    armv7l = _standin({"1.26.4": ["numpy-1.26.4-cp311-cp311-manylinux_2_17_armv7l.whl"]})
    (finding,) = outdated.compare(numpy, armv7l)
    assert (finding.kind, finding.version) == ("new platform", "1.26.4")
    assert finding.detail.startswith("armv7l")


def test_versions_newer_than_the_newest_known_each_get_a_line_by_their_lowest_glibc() -> None:
    # numpy as the matrix recorded it before 2026-12-03 (newest 2.2.6), on the recorded page
    known = outdated.known_packages()["numpy"]
    before = outdated.Known(
        "numpy",
        {v: r for v, r in known.versions.items() if Version(v) <= Version("2.2.6")},
        known.archs,
        known.where,
    )
    numpy = {f.version: f for f in outdated.compare(before, RecordedIndex().releases("numpy"))}
    assert sorted(numpy) == ["2.3.1", "2.4.1"]
    assert {f.kind for f in numpy.values()} == {"new version"}
    # a compound tag counts by its lowest glibc
    assert "x86_64 (glibc 2.28)" in numpy["2.3.1"].detail
    assert "x86_64 (glibc 2.27)" in numpy["2.4.1"].detail


def test_a_reviewed_release_and_those_before_it_are_not_new() -> None:
    opencv = outdated.known_packages()["opencv-python-headless"]
    assert opencv.reviewed == "5.1.0.95" and "4.11.0.86" in opencv.versions
    name = "opencv_python_headless-{}-cp37-abi3-manylinux_2_28_aarch64.whl"
    standin = _standin({v: [name.format(v)] for v in ("4.12.0.88", "5.1.0.95", "5.2.0.96")})
    (finding,) = outdated.compare(opencv, standin)
    assert (finding.kind, finding.version) == ("new version", "5.2.0.96")
    # Pillow records no versions but a reviewed one: only a newer release is new
    pillow = outdated.known_packages()["pillow"]
    assert pillow.versions == {} and pillow.reviewed == "13.0.0"
    wheel = "pillow-{}-cp313-cp313-manylinux_2_27_x86_64.whl"
    later = _standin({v: [wheel.format(v)] for v in ("12.1.0", "13.0.0", "13.1.0")})
    assert [f.version for f in outdated.compare(pillow, later)] == ["13.1.0"]


def test_a_package_without_recorded_versions_gets_its_newest_only() -> None:
    pillow = outdated.Known("pillow", {}, ("x86_64", "aarch64"), "pillow_pypi")
    standin = _standin(
        {
            "10.0.0": ["pillow-10.0.0-cp311-cp311-manylinux_2_28_aarch64.whl"],
            "11.0.0": ["pillow-11.0.0-cp311-cp311-manylinux_2_28_aarch64.whl"],
        }
    )
    (finding,) = outdated.compare(pillow, standin)
    assert finding.version == "11.0.0" and "records no versions" in finding.detail


def test_known_packages_are_the_matrix_rows() -> None:
    known = outdated.known_packages()
    assert set(known) == set(outdated.PACKAGES)
    for wheel in load_matrix().wheels:
        if wheel.origin == "pypi":
            assert wheel.version in known[wheel.package].versions
    # the community 2.17.1 is not a PyPI release: PyPI's tflite-runtime is judged on its own
    assert "2.17.1" not in known["tflite-runtime"].versions
    assert known["ai-edge-litert"].versions["2.3.0"].glibc == {
        "x86_64": "2.27",
        "aarch64": "2.27",
    }


def test_the_command_prints_the_findings_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(matrix_cmd.outdated, "PypiClient", lambda url: RecordedIndex())
    assert cli.main(["matrix", "outdated"]) == 0
    text = capsys.readouterr().out
    assert "ai-edge-litert (newest on PyPI: 2.4.0):\n  new version 2.4.0:" in text
    assert "tflite-runtime (newest on PyPI: 2.14.0): nothing the matrix does not know" in text
    assert "not checked (read them by hand):" in text
    assert cli.main(["matrix", "outdated", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"findings", "newest_on_pypi", "not_checked"} == set(data)


class _RecordedPypi(BaseHTTPRequestHandler):
    """Serves the recorded answers at /pypi/NAME/json on loopback (404 for the others)."""

    def do_GET(self) -> None:
        name = self.path.removeprefix("/pypi/").removesuffix("/json")
        path = RECORDED / f"{name}.json"
        if "/" in name or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_client_reads_the_json_api_and_a_failure_is_not_checked() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordedPypi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/pypi/{{name}}/json"
        report = outdated.check(outdated.PypiClient(url))
    finally:
        server.shutdown()
        server.server_close()
    assert report.newest["ai-edge-litert"] == "2.4.0"
    (pillow,) = [n for n in report.not_checked if n.what == "PyPI pillow"]
    assert pillow.where.endswith("/pypi/pillow/json") and "404" in pillow.note


@pytest.mark.pypi
def test_against_pypi() -> None:
    """Real PyPI: every package answers, and its newest release is at least the newest
    the matrix knows."""
    report = outdated.check(outdated.PypiClient())
    assert not [n for n in report.not_checked if n.what.startswith("PyPI ")]
    known = outdated.known_packages()
    for package in outdated.PACKAGES:
        newest = known[package].newest
        if newest is not None:
            assert Version(report.newest[package]) >= newest, package
