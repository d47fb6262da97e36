"""Raspberry Pi architectures and an older release, for real: `coralpi lock` + `coralpi apply`
over SSH on a bookworm armhf host (armv7l, under qemu-user emulation) and a bullseye host
(Python 3.9, glibc 2.31). The bullseye host is amd64 by default to keep the suite's time
down: what bullseye changes (the older runtime pairing and the official Coral apt source)
does not depend on the architecture; `CORALPI_ARM_BULLSEYE_ARCH=arm64` makes it an emulated
arm64 host too. aarch64 is proven once, by the arm64 golden image build under qemu
(`tests/image/test_build_arm64.py`: the same roles, the community runtime .deb and the
manylinux_2_34_aarch64 tflite wheel); `CORALPI_ARM_AARCH64_HOST=1` adds a bookworm arm64
host here as well (about ten more minutes under emulation).

STAND-INS (named so where they are used): Coral's apt repository and the community runtime
.debs cannot be reached from here; the test fleet serves local stand-ins for them
(`testfleet.standin_coral`). piwheels cannot be reached either: before the converge, the
armv7l host builds an extension module with 64-bit atomics, which is packed as a STAND-IN
`opencv-python-headless` wheel (no OpenCV inside; its METADATA and cv2.__doc__ say
STAND-IN) and served from a local piwheels-style index on loopback; pa32 converges with
`coralpi_opencv: pip` from it, so the libatomic preload is proven on the ARM host it is for
(Debian's OpenCV, a long unpack under emulation, is proven on amd64 and by the arm64
image). Debian packages are real (through the fleet's apt proxy); tflite-runtime wheels are
real, downloaded from PyPI by the controller only.

Run alone with `pytest -m arm`. Emulated hosts are several times slower: the hosts converge
in one `coralpi apply` (in parallel); per-host converge times are added to the fleet's
timings, shown at the end of the run.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fleet_cli import CORALPI, PARROT, REPO, VENV_PY, coralpi, host_text, rows

from testfleet import Fleet, HostSpec

# Converging emulated hosts from scratch (python3-opencv and its libraries unpacked and
# configured under qemu) can take longer than the suite's default per-test limit.
pytestmark = [pytest.mark.arm, pytest.mark.fleet, pytest.mark.timeout(3600)]

LIBATOMIC = "/usr/lib/arm-linux-gnueabihf/libatomic.so.1"

MACHINE = {"amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l"}
# The bullseye host's architecture: amd64 by default, for speed (see the module docstring);
# CORALPI_ARM_BULLSEYE_ARCH=arm64 (or armhf) runs it emulated too.
BULLSEYE_ARCH = os.environ.get("CORALPI_ARM_BULLSEYE_ARCH", "amd64")
# name: (suite, Debian arch, uname -m)
HOSTS = {
    "pa32": ("bookworm", "armhf", "armv7l"),
    "pbull": ("bullseye", BULLSEYE_ARCH, MACHINE.get(BULLSEYE_ARCH, BULLSEYE_ARCH)),
}
# An emulated aarch64 host as well, on request (the image build proves aarch64 by default).
if os.environ.get("CORALPI_ARM_AARCH64_HOST") == "1":
    HOSTS["pa64"] = ("bookworm", "arm64", "aarch64")
#: The emulated bookworm hosts, whose tflite wheel is the manylinux_2_34 build.
ARM_BOOKWORM = [h for h, (suite, arch, _) in HOSTS.items() if suite == "bookworm"]
# What Debian ships per release: the planner's expectation is computed from these, not
# from the hosts' probed facts (so a wrong probe shows up as a different plan).
RELEASES = {"bookworm": ("3.11", "2.36"), "bullseye": ("3.9", "2.31")}


def expected_plan(host: str, *extra: str) -> dict[str, Any]:
    """`coralpi plan --os ... --json` for what Debian ships on that host's release/arch."""
    suite, _, machine = HOSTS[host]
    python, glibc = RELEASES[suite]
    proc = subprocess.run(
        [
            CORALPI,
            "plan",
            "--os",
            suite,
            "--arch",
            machine,
            "--python",
            python,
            "--glibc",
            glibc,
            *extra,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    plan: dict[str, Any] = json.loads(proc.stdout)
    return plan


def verify_report(report: dict[str, Any], host: str) -> dict[str, Any]:
    """The JSON `python -m verify` printed on the host, as the apply run fetched it."""
    path = Path(report["run_dir"]) / "verify" / f"{host}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def checks(verify: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in verify["checks"]}


def _event_time(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(str(event["created"])).timestamp()


def host_seconds(run_dir: Path) -> dict[str, tuple[float, float]]:
    """Per host, from ansible-runner's event stream kept in the run directory: seconds its
    own tasks took (sum of task durations: the host's converge time had it run alone) and
    seconds from the start of the run to its last event (hosts move task by task together,
    so this is the slowest host's pace)."""
    events = [json.loads(p.read_text()) for p in run_dir.glob("**/apply/job_events/*.json")]
    events = [e for e in events if "created" in e]
    if not events:
        return {}
    start = min(_event_time(e) for e in events)
    busy: dict[str, float] = {}
    last: dict[str, float] = {}
    for event in events:
        data = event.get("event_data") or {}
        host = data.get("host")
        if not host:
            continue
        last[host] = max(last.get(host, start), _event_time(event))
        if str(event.get("event", "")).startswith("runner_on_"):
            busy[host] = busy.get(host, 0.0) + float(data.get("duration") or 0.0)
    return {h: (round(busy.get(h, 0.0), 1), round(t - start, 1)) for h, t in last.items()}


@dataclass
class Converge:
    rc: int
    report: dict[str, Any]
    output: str
    seconds: float


@pytest.fixture(scope="module")
def arm_fleet(make_fleet: Any) -> Fleet:
    specs = [HostSpec(name, suite, arch=arch) for name, (suite, arch, _) in HOSTS.items()]
    fleet: Fleet = make_fleet("arm", hosts=specs)
    return fleet


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("arm-runs")


@pytest.fixture(scope="module")
def community_pins(arm_fleet: Fleet) -> list[str]:
    """--pin arguments for the STAND-IN community .debs (plain http on the test bridge),
    by the sha256 of the files the test fleet built."""
    assert arm_fleet.standin is not None
    pins = arm_fleet.pin_args()
    return pins


@pytest.fixture(scope="module")
def converged(
    arm_fleet: Fleet, runs: Path, community_pins: list[str], piwheels_standin: Index
) -> Converge:
    """`coralpi lock` then `coralpi apply` on all the hosts at once. pa32 takes OpenCV from
    pip, from the STAND-IN piwheels-style index (its host variables `coralpi_opencv: pip`
    and `coralpi_pip_index_url`): the plan then asks for the libatomic preload, which the
    role coralpi_opencv puts in place. (Debian's OpenCV is converged on amd64 and, under
    emulation, by the arm64 image build; what is ARM-specific here is the preload.)"""
    arm_fleet.set_host_vars(
        "pa32", PA32_OPENCV_PIP | {"coralpi_pip_index_url": piwheels_standin.url}
    )
    plan = expected_plan("pa32", "--opencv", "pip", "--pip-index-url", piwheels_standin.url)
    assert plan["ld_preload"] == LIBATOMIC, plan["ld_preload_reason"]
    assert plan["opencv"]["source"] == "pip"
    inventory = str(arm_fleet.inventory_path)
    proc = subprocess.run(
        [
            CORALPI,
            "lock",
            "-i",
            inventory,
            "--lock",
            str(runs / "coralpi.lock"),
            *community_pins,
            "--pin",
            f"{piwheels_standin.wheel.name}={piwheels_standin.sha256}",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    start = time.monotonic()
    rc, report, output = coralpi("apply", "-i", inventory, runs=runs)
    seconds = round(time.monotonic() - start, 1)
    arm_fleet.timings[f"apply ({len(HOSTS)} hosts in parallel)"] = seconds
    if report.get("run_dir"):
        for host, (busy, finished) in host_seconds(Path(report["run_dir"])).items():
            suite, arch, _ = HOSTS.get(host, ("?", "?", "?"))
            arm_fleet.timings[f"{host} {suite}/{arch} own tasks"] = busy
            arm_fleet.timings[f"{host} {suite}/{arch} done at"] = finished
    return Converge(rc, report, output, seconds)


def test_every_host_converges_and_classifies_the_parrot_on_its_cpu(
    converged: Converge,
) -> None:
    assert converged.rc == 0, converged.output
    table = rows(converged.report)
    assert sorted(table) == sorted(HOSTS), converged.output
    for name, row in table.items():
        assert row["status"] == "ok", (name, row)
        assert row["arch"] == HOSTS[name][2], (name, row)
        # The real smoke test, real model, on the (emulated) CPU: no Edge TPU here.
        assert row["smoke"].startswith(PARROT), (name, row)
        assert row["smoke_device"] == "cpu", (name, row)


def test_each_host_runs_the_python_runtime_the_matrix_chose(
    arm_fleet: Fleet, converged: Converge
) -> None:
    table = rows(converged.report)
    for host in HOSTS:
        plan = expected_plan(host)
        want = plan["python_runtime"]
        assert table[host]["python_runtime"] == f"{want['package']} {want['version']}"
        assert (
            table[host]["runtime"] == f"{plan['runtime']['package']} {plan['runtime']['version']}"
        )
        # What is really installed in the venv, asked on the host.
        got = host_text(
            arm_fleet,
            host,
            f"{VENV_PY} -c 'import importlib.metadata as m; "
            f'print(m.version("{want["package"]}"))\'',
        )
        assert got.strip() == want["version"], host
        facts = verify_report(converged.report, host)["facts"]
        assert facts["python_runtime"]["version"] == want["version"], host
        assert facts["python"].startswith(RELEASES[HOSTS[host][0]][0]), host
    # The matrix's decisions this test is about, stated once so a matrix change is noticed.
    assert expected_plan("pbull")["python_runtime"]["version"] == "2.11.0"
    assert expected_plan("pbull")["runtime"]["source"] == "coral-apt"
    assert expected_plan("pa32")["runtime"]["source"] == "community-deb"


def test_arm_hosts_got_the_manylinux_2_34_tflite_wheel(
    arm_fleet: Fleet, converged: Converge
) -> None:
    for host in ARM_BOOKWORM:
        plan = expected_plan(host)
        package = plan["python_runtime"]["package"].replace("-", "_")
        version = plan["python_runtime"]["version"]
        wheel_file = host_text(
            arm_fleet,
            host,
            f"{VENV_PY} -c 'import importlib.metadata as m; "
            f'd = m.distribution("{plan["python_runtime"]["package"]}"); '
            'print(d.read_text("WHEEL"))\'',
        )
        tags = [
            line.split(":", 1)[1].strip()
            for line in wheel_file.splitlines()
            if line.startswith("Tag:")
        ]
        machine = HOSTS[host][2]
        assert tags == [
            f"{plan['python_runtime']['python_tag']}-"
            f"{plan['python_runtime']['python_tag']}-manylinux_2_34_{machine}"
        ], (host, wheel_file)
        # The wheel's file name the controller pushed says the same.
        pushed = host_text(arm_fleet, host, "ls /var/cache/coralpi/wheels")
        assert f"{package}-{version}-" in pushed and f"manylinux_2_34_{machine}.whl" in pushed


def test_armv7l_numpy_and_pillow_come_from_debian_and_opencv_from_the_index(
    arm_fleet: Fleet, converged: Converge
) -> None:
    plan = expected_plan("pa32", "--opencv", "pip", "--pip-index-url", "http://index.invalid/")
    assert plan["numpy"]["source"] == "apt" and plan["opencv"]["source"] == "pip"
    status = host_text(
        arm_fleet,
        "pa32",
        "dpkg-query -W -f='${Package} ${Status}\\n' python3-numpy python3-pil python3-opencv"
        " 2>/dev/null; true",
    )
    for package in ("python3-numpy", "python3-pil"):
        assert f"{package} install ok installed" in status
    assert "python3-opencv install ok installed" not in status, status
    where = host_text(
        arm_fleet,
        "pa32",
        f"{VENV_PY} -c 'import numpy, PIL, cv2; "
        "print(numpy.__file__); print(PIL.__file__); print(cv2.__file__)'",
    )
    paths = where.split()
    assert len(paths) == 3, where
    assert all(p.startswith("/usr/lib/python3/dist-packages/") for p in paths[:2]), where
    assert paths[2].startswith("/opt/coralpi/venv/lib/"), where
    pip_list = host_text(arm_fleet, "pa32", f"{VENV_PY} -m pip list --local --format=json")
    local = {p["name"].lower() for p in json.loads(pip_list)}
    assert local & {"numpy", "pillow", "opencv-python"} == set(), local
    assert "opencv-python-headless" in local, local


def installed_version_sources(policy: str, version: str) -> list[str]:
    """The source lines `apt-cache policy` lists under the installed (***) version."""
    lines = policy.splitlines()
    mark = next(i for i, line in enumerate(lines) if line.strip().startswith("***"))
    assert lines[mark].split()[1] == version, policy
    sources = []
    for line in lines[mark + 1 :]:
        if not line.startswith("        "):
            break
        sources.append(line.strip())
    return sources


def test_bullseye_runtime_comes_from_the_signed_standin_coral_repository(
    arm_fleet: Fleet, converged: Converge
) -> None:
    """STAND-IN Coral apt repository (signed by a key the test fleet made)."""
    plan = expected_plan("pbull")
    package, version = plan["runtime"]["package"], plan["runtime"]["version"]
    assert (package, version) == ("libedgetpu1-std", "16.0")
    got = host_text(arm_fleet, "pbull", f"dpkg-query -W -f='${{Version}}' {package}")
    assert got == version
    policy = host_text(arm_fleet, "pbull", f"apt-cache policy {package}")
    # The installed version (***) is the one the Coral source serves.
    assert any(
        f"{arm_fleet.urls['coral_apt']} coral-edgetpu-stable/main" in line
        for line in installed_version_sources(policy, version)
    ), policy
    source = host_text(arm_fleet, "pbull", "cat /etc/apt/sources.list.d/coral-edgetpu.sources")
    assert f"URIs: {arm_fleet.urls['coral_apt']}" in source
    assert "Signed-By: /etc/apt/keyrings/coral-edgetpu.gpg" in source
    keyring = host_text(
        arm_fleet,
        "pbull",
        "stat -c '%U:%G %a' /etc/apt/keyrings/coral-edgetpu.gpg; "
        "gpg --show-keys --with-colons /etc/apt/keyrings/coral-edgetpu.gpg",
    )
    assert keyring.startswith("root:root 644")
    assert f"fpr:::::::::{arm_fleet.standin_key_fingerprint}:" in keyring
    # verify sees the source and its keyring and judges it by the fingerprints the lock
    # accepted (the stand-in's, kept in the local fact), not by a list of its own.
    check = checks(verify_report(converged.report, "pbull"))["coral_apt_source"]
    assert check["status"] == "pass", check
    assert "/etc/apt/keyrings/coral-edgetpu.gpg" in check["detail"], check
    assert arm_fleet.standin_key_fingerprint in check["detail"], check


# ---------------------------------------------------------------- LD_PRELOAD on armv7l

ATOMIC64_C = r"""
/* Like piwheels' armv7l OpenCV: 64-bit atomics, built for ARMv6 (Raspberry Pi OS armhf's
   baseline), where gcc turns them into calls to libatomic's __atomic_fetch_add_8. Not
   linked with -latomic, so it loads only where libatomic is already loaded (preloaded). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static uint64_t counter;

static PyObject *bump(PyObject *self, PyObject *arg) {
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_fetch_add(&counter, n, __ATOMIC_SEQ_CST) + n);
}

static PyMethodDef methods[] = {
    {"bump", bump, METH_O, "add n to a 64-bit atomic counter and return it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_atomic64", NULL, -1, methods};

PyMODINIT_FUNC PyInit__atomic64(void) { return PyModule_Create(&module); }
"""

STANDIN_CV2_INIT = '''\
"""STAND-IN for piwheels' opencv-python-headless on armv7l (piwheels cannot be reached
from the test machine). Not OpenCV: an extension module that, like piwheels' armv7l cv2,
calls libatomic's __atomic_fetch_add_8 without linking libatomic."""
from cv2._atomic64 import bump

__version__ = "4.11.0.86"
bump(1)
'''

BUILD_DIR = "/home/pi/atomic64"
#: pa32's choice (plus the stand-in index's URL, known once it serves).
PA32_OPENCV_PIP = {"coralpi_opencv": "pip"}
# The version the plan pins (a local label such as +standin would be clearer, but pip
# reports it URL-quoted (%2B) and the controller keeps that quoting in the file name).
STANDIN_VERSION = "4.11.0.86"


@dataclass
class Extension:
    filename: str  # _atomic64.<EXT_SUFFIX>
    data: bytes


@pytest.fixture(scope="module")
def atomic64(arm_fleet: Fleet) -> Extension:
    """Build the extension on the armv7l host with Debian's gcc (through the apt proxy),
    before the converge, which installs it as pa32's OpenCV."""
    start = time.monotonic()
    install = (
        "apt-get install -y -q --no-install-recommends gcc libc6-dev libpython3.11-dev"
        " || { apt-get update -q && apt-get install -y -q --no-install-recommends "
        "gcc libc6-dev libpython3.11-dev; }"
    )
    proc = arm_fleet.ssh("pa32", install, become=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    suffix = host_text(
        arm_fleet,
        "pa32",
        "python3 -c 'import sysconfig; print(sysconfig.get_config_var(\"EXT_SUFFIX\"))'",
    ).strip()
    filename = f"_atomic64{suffix}"
    build = (
        f"mkdir -p {BUILD_DIR} && cd {BUILD_DIR} && cat > atomic64.c && "
        "gcc -O2 -march=armv6 -mfpu=vfp -mfloat-abi=hard -marm -fPIC -shared "
        "-I/usr/include/python3.11 -I/usr/include/arm-linux-gnueabihf/python3.11 "
        f"atomic64.c -o {filename}"
    )
    proc = arm_fleet.ssh("pa32", build, input=ATOMIC64_C, timeout=600)
    assert proc.returncode == 0, proc.stderr
    arm_fleet.timings["pa32: gcc install + extension build"] = round(time.monotonic() - start, 1)
    data = base64.b64decode(host_text(arm_fleet, "pa32", f"base64 -w0 {BUILD_DIR}/{filename}"))
    return Extension(filename, data)


def test_atomic64_extension_needs_libatomic_and_does_not_link_it(
    arm_fleet: Fleet, atomic64: Extension
) -> None:
    symbols = host_text(
        arm_fleet, "pa32", f"nm -D --undefined-only {BUILD_DIR}/{atomic64.filename}"
    )
    assert "__atomic_fetch_add_8" in symbols
    needed = host_text(arm_fleet, "pa32", f"readelf -d {BUILD_DIR}/{atomic64.filename}")
    assert "Dynamic section" in needed and "libatomic" not in needed


def test_atomic64_import_fails_without_the_preload_and_passes_with_it(
    arm_fleet: Fleet, atomic64: Extension, converged: Converge
) -> None:
    imp = "python3 -c 'import _atomic64; print(_atomic64.bump(5))'"
    bare = arm_fleet.ssh("pa32", f"cd {BUILD_DIR} && {imp}")
    assert bare.returncode != 0
    assert "undefined symbol: __atomic_fetch_add_8" in bare.stderr, bare.stderr
    preloaded = arm_fleet.ssh("pa32", f"cd {BUILD_DIR} && LD_PRELOAD={LIBATOMIC} {imp}")
    assert preloaded.returncode == 0, preloaded.stderr
    assert preloaded.stdout.strip() == "5"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def standin_opencv_wheel(directory: Path, ext: Extension, python_tag: str) -> Path:
    """STAND-IN opencv-python-headless wheel for armv7l holding the atomic64 extension."""
    dist_info = f"opencv_python_headless-{STANDIN_VERSION}.dist-info"
    files = {
        "cv2/__init__.py": STANDIN_CV2_INIT.encode(),
        f"cv2/{ext.filename}": ext.data,
        f"{dist_info}/METADATA": (
            "Metadata-Version: 2.1\nName: opencv-python-headless\n"
            f"Version: {STANDIN_VERSION}\n"
            "Summary: STAND-IN for piwheels' armv7l OpenCV (test fleet only; not OpenCV)\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: coralpi-tests\nRoot-Is-Purelib: false\n"
            f"Tag: {python_tag}-{python_tag}-linux_armv7l\n"
        ).encode(),
    }
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    name = f"opencv_python_headless-{STANDIN_VERSION}-{python_tag}-{python_tag}-linux_armv7l.whl"
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for member, data in files.items():
            whl.writestr(member, data)
    return path


@dataclass
class Index:
    url: str
    wheel: Path
    sha256: str


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def piwheels_standin(
    atomic64: Extension, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Index]:
    """A piwheels-style (PEP 503) index on loopback serving the STAND-IN OpenCV wheel, for
    the controller only (hosts never see an index)."""
    root = tmp_path_factory.mktemp("piwheels-standin")
    (root / "files").mkdir()
    python_tag = expected_plan("pa32")["python_runtime"]["python_tag"]
    wheel = standin_opencv_wheel(root / "files", atomic64, python_tag)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    project = root / "simple" / "opencv-python-headless"
    project.mkdir(parents=True)
    href = f"../../files/{wheel.name}#sha256={sha}"
    (project / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{href}">{wheel.name}</a></body></html>\n'
    )
    (root / "simple" / "index.html").write_text(
        '<!DOCTYPE html><html><body><a href="opencv-python-headless/">'
        "opencv-python-headless</a></body></html>\n"
    )

    def handler(*args: Any, **kwargs: Any) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Index(f"http://127.0.0.1:{server.server_address[1]}/simple", wheel, sha)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_opencv_wheel_from_the_standin_index_imports_with_the_roles_preload(
    arm_fleet: Fleet, converged: Converge
) -> None:
    assert converged.rc == 0, converged.output
    row = rows(converged.report)["pa32"]
    assert row["status"] == "ok", row
    assert row["smoke"].startswith(PARROT), row
    fact = json.loads(host_text(arm_fleet, "pa32", "cat /etc/ansible/facts.d/coralpi.fact"))
    assert fact["ld_preload"] == LIBATOMIC and fact["opencv_source"] == "pip"
    # The venv's own python: its .pth loads libatomic before cv2 (the stand-in) is imported.
    version = host_text(
        arm_fleet,
        "pa32",
        f"{VENV_PY} -c 'import cv2; print(cv2.__version__, cv2.__file__, cv2.__doc__.split()[0])'",
    )
    assert version.split() == [STANDIN_VERSION, version.split()[1], "STAND-IN"], version
    assert version.split()[1].startswith("/opt/coralpi/venv/lib/"), version
    # verify, run by the apply with the venv's python, sees cv2 import and the preload.
    found = checks(verify_report(converged.report, "pa32"))
    assert found["opencv"]["status"] == "pass", found["opencv"]
    assert STANDIN_VERSION in found["opencv"]["detail"]
    assert found["ld_preload"]["status"] == "pass", found["ld_preload"]
    assert LIBATOMIC in found["ld_preload"]["detail"]


def _parse_environment_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blanks skipped;
    the role writes no quoting or continuation lines, which this test would then reject)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep and key.isidentifier() and not value.startswith(("'", '"')), line
        env[key] = value
    return env


def test_the_preload_is_what_makes_cv2_import_venv_and_service_environments(
    arm_fleet: Fleet, converged: Converge
) -> None:
    assert converged.rc == 0, converged.output
    site = host_text(
        arm_fleet,
        "pa32",
        f"{VENV_PY} -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))'",
    ).strip()
    # -S skips site (and so the venv's preload .pth): the same cv2 then fails as on a Pi.
    no_site = (
        f'{VENV_PY} -S -c \'import sys; sys.path.insert(0, "{site}"); '
        "import cv2; print(cv2.__version__)'"
    )
    bare = arm_fleet.ssh("pa32", f"env -i {no_site}")
    assert bare.returncode != 0
    assert "undefined symbol: __atomic_fetch_add_8" in bare.stderr, bare.stderr
    # A service: environment only from EnvironmentFile=/etc/coralpi/ld-preload.env.
    env = _parse_environment_file(host_text(arm_fleet, "pa32", "cat /etc/coralpi/ld-preload.env"))
    assert env == {"LD_PRELOAD": LIBATOMIC}
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    service = arm_fleet.ssh("pa32", f"env -i {assignments} {no_site}")
    assert service.returncode == 0, service.stderr
    assert service.stdout.strip() == STANDIN_VERSION
    # The system python, as a service's ExecStart might use it, with the same file.
    system = arm_fleet.ssh(
        "pa32",
        f"env -i {assignments} /usr/bin/python3 -S -c "
        f"'import sys; sys.path.insert(0, \"{site}\"); import cv2'",
    )
    assert system.returncode == 0, system.stderr


# ---------------------------------------------------------------- qemu registration

HOLD_BINFMT = """
import sys
from testfleet.binfmt import BinfmtUse, entry_name, BINFMT
use = BinfmtUse({"arm64"})
print("registered" if (BINFMT / entry_name("arm64")).exists() else "missing", flush=True)
sys.stdin.read()
use.close()
"""


def test_an_arm_fleet_starts_while_another_holds_the_qemu_registration(
    fleet_support: None,
) -> None:
    """binfmt registration is machine-wide and shared: a second fleet (another test run)
    must get its share at once, not wait for the first fleet to end."""
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_BINFMT],
        cwd=REPO,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "registered"
        second = subprocess.run(
            [sys.executable, "-c", HOLD_BINFMT],
            cwd=REPO,
            text=True,
            input="",
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == "registered"
    finally:
        if first.stdin is not None:
            first.stdin.close()
        first.wait(timeout=60)
    assert first.returncode == 0
