"""The roles converge real Debian hosts of the test fleet, idempotently, and undo failures.

Runs `playbooks/provision.yml` (and `verify.yml`) with `ansible-playbook` over SSH against
a private fleet (pi1: bookworm, pi3: trixie; amd64). The plans are written here by hand in
the shape of docs/DESIGN.md section 1, so these tests exercise the roles alone, not the
controller's planner. What stands in for the unreachable internet (see TESTING.md):
the Coral apt repository and the community runtime .debs are the fleet's stand-in packages
(same names, relations, debconf questions and udev rules; a library that reports "no
device"); wheels are downloaded from PyPI on this machine and pushed, as the controller does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from testfleet import Fleet, HostSpec
from testfleet.paths import testdata_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PLAYBOOKS = REPO_ROOT / "playbooks"
WHEEL_CACHE = REPO_ROOT / ".cache" / "test-wheels"
SMOKE_FILES = (
    "mobilenet_v2_1.0_224_inat_bird_quant.tflite",
    "mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite",
    "inat_bird_labels.txt",
    "parrot.jpg",
)
MakeFleet = Callable[..., Fleet]
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)"
    r"\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
)

#: What each test host runs and which Python runtime the plan pairs with it.
RELEASES: dict[str, dict[str, Any]] = {
    "bookworm": {
        "python": "3.11", "glibc": "2.36", "numpy": ">=1.23.2,<2",
        "python_runtime": ("tflite-runtime", "2.14.0", "tflite_runtime.interpreter"),
        "download": ["--python-version", "3.11", "--platform", "manylinux2014_x86_64"],
    },
    "trixie": {
        "python": "3.13", "glibc": "2.41", "numpy": ">=1.23.2",
        "python_runtime": ("ai-edge-litert", "2.3.0", "ai_edge_litert.interpreter"),
        "download": ["--python-version", "3.13", "--platform", "manylinux_2_27_x86_64",
                     "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"],
    },
}
COMMUNITY_VERSION = "16.0tf2.17.1-1"


# -- artifacts the controller would provide -------------------------------------------------

def download_wheels(codename: str) -> Path:
    """Wheels for a release's Python runtime (and its dependencies), cached across runs."""
    release = RELEASES[codename]
    package, version, _ = release["python_runtime"]
    target = WHEEL_CACHE / f"{codename}-{package}-{version}"
    done = target / ".complete"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(VENV_BIN / "pip"), "download", "-q", "--only-binary=:all:", "-d", str(target),
             *release["download"], f"{package}=={version}"],
            check=True, capture_output=True, text=True, timeout=600,
        )
        done.write_text("")
    return target


def dearmor(armored: Path, out: Path) -> Path:
    """Binary keyring from an ASCII-armoured key file (what the controller hands to apt)."""
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(out), str(armored)],
                   check=True, capture_output=True)
    return out


def other_keyring(workdir: Path) -> Path:
    """A keyring holding a freshly generated key that did not sign the repository."""
    home = workdir / "gnupg-other"
    home.mkdir(mode=0o700, exist_ok=True)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty"]
    try:
        subprocess.run([*gpg, "--pinentry-mode", "loopback", "--passphrase", "",
                        "--quick-gen-key", "rotated key <rotated@testfleet.invalid>",
                        "ed25519", "sign", "never"], check=True, capture_output=True)
        key = subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)
    out = workdir / "rotated.gpg"
    out.write_bytes(key)
    return out


def smoke_assets(workdir: Path) -> Path:
    """The smoke-test files the verify role pushes, linked from the shared test data."""
    assets = workdir / "assets"
    assets.mkdir(exist_ok=True)
    for name in SMOKE_FILES:
        link = assets / name
        if not link.exists():
            link.symlink_to(testdata_dir() / name)
    return assets


# -- plans, as the controller writes them (docs/DESIGN.md section 1) ------------------------

def make_plan(
    codename: str,
    artifacts: Mapping[str, Any],
    *,
    variant: str = "std",
    source: str = "community-deb",
    opencv: str = "apt",
    ld_preload: str | None = None,
) -> dict[str, Any]:
    release = RELEASES[codename]
    package, version, module = release["python_runtime"]
    other = "max" if variant == "std" else "std"
    runtime_version = COMMUNITY_VERSION if source == "community-deb" else "16.0"
    apt_packages = ["python3-venv", "python3-numpy", "python3-pil"]
    if opencv == "apt":
        apt_packages.append("python3-opencv")
    return {
        "target": {"os_id": "debian", "codename": codename, "arch": "x86_64",
                   "python": release["python"], "glibc": release["glibc"], "board": None},
        "choices": {"runtime": variant, "accelerator": "usb", "opencv": opencv, "camera": True},
        "runtime": {
            "source": source, "package": f"libedgetpu1-{variant}",
            "conflicts": f"libedgetpu1-{other}", "version": runtime_version,
            "deb_filename": (f"libedgetpu1-{variant}_{COMMUNITY_VERSION}.bookworm_amd64.deb"
                             if source == "community-deb" else None),
            "reason": "hand-written test plan",
        },
        "python_runtime": {"package": package, "version": version, "module": module,
                           "python_tag": "cp" + release["python"].replace(".", ""),
                           "platform_tags": [], "reason": "hand-written test plan"},
        "numpy": {"constraint": release["numpy"], "source": "apt", "reason": "test"},
        "opencv": {"source": opencv,
                   "package": "python3-opencv" if opencv == "apt" else "opencv-python-headless",
                   "version": None, "reason": "test"},
        "ld_preload": ld_preload,
        "ld_preload_reason": "test",
        "camera": {"method": "none", "config_path": None,
                   "reason": "not a Raspberry Pi (test host)"},
        "venv": {"path": "/opt/coralpi/venv", "system_site_packages": True, "reason": "test"},
        "apt_packages": apt_packages,
        "pip_requirements": [f"{package}=={version}"],
        "controller": {"ansible_core": ">=2.17", "reason": "test"},
        "reasons": ["hand-written test plan"],
        "artifacts": dict(artifacts),
    }


def artifacts_for(fleet: Fleet, workdir: Path, codename: str) -> dict[str, Any]:
    assert fleet.standin is not None
    return {
        "wheels_dir": str(download_wheels(codename)),
        "runtime_debs": {v: str(fleet.standin.community_deb(v)) for v in ("std", "max")},
        "coral_keyring": str(dearmor(fleet.standin.public_key, workdir / "coral.gpg")),
        "verify_assets": str(smoke_assets(workdir)),
    }


# -- running playbooks ------------------------------------------------------------------------

class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.recap: dict[str, dict[str, int]] = {}
        for line in proc.stdout.splitlines():
            found = RECAP.match(line)
            if found:
                fields = found.groupdict()
                host = fields.pop("host")
                self.recap[host] = {k: int(v) for k, v in fields.items()}

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]


def run_playbook(
    fleet: Fleet, workdir: Path, playbook: str, plans: Mapping[str, Any], *extra: str,
    limit: str | None = None,
) -> Run:
    vars_file = workdir / "plans.json"
    vars_file.write_text(json.dumps({"coralpi_plans": plans}, indent=1))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory_path),
           str(PLAYBOOKS / playbook), "-e", f"@{vars_file}", *extra]
    if limit:
        cmd += ["--limit", limit]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, check=False,
                          cwd=REPO_ROOT, env=env)
    return Run(proc)


def host_text(fleet: Fleet, host: str, command: str) -> str:
    proc = fleet.ssh(host, command, become=True, timeout=120)
    assert proc.returncode == 0, f"{host}: {command}: {proc.stderr}"
    return proc.stdout


def installed(fleet: Fleet, host: str) -> dict[str, str]:
    out = fleet.ssh(host, "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' "
                    "libedgetpu1-std libedgetpu1-max", timeout=60).stdout
    return {f[0]: f[1] for f in (line.split() for line in out.splitlines())
            if len(f) >= 3 and f[2].startswith("ii")}


def local_fact(fleet: Fleet, host: str) -> dict[str, Any]:
    return json.loads(host_text(fleet, host, "cat /etc/ansible/facts.d/coralpi.fact"))


# -- fixtures ---------------------------------------------------------------------------------

HOSTS = {"pi1": "bookworm", "pi3": "trixie"}


@pytest.fixture(scope="module")
def roles_fleet(make_fleet: MakeFleet) -> Fleet:
    return make_fleet("roles", hosts=[HostSpec(n, c) for n, c in HOSTS.items()])


@pytest.fixture(scope="module")
def workdir(roles_fleet: Fleet) -> Path:
    path = roles_fleet.workdir / "roles-test"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def artifacts(roles_fleet: Fleet, workdir: Path) -> dict[str, dict[str, Any]]:
    return {name: artifacts_for(roles_fleet, workdir, codename)
            for name, codename in HOSTS.items()}


@pytest.fixture(scope="module")
def converged(
    roles_fleet: Fleet, workdir: Path, artifacts: dict[str, dict[str, Any]]
) -> Iterator[dict[str, Run]]:
    plans = {n: make_plan(c, artifacts[n]) for n, c in HOSTS.items()}
    first = run_playbook(roles_fleet, workdir, "provision.yml", plans)
    assert first.rc == 0, first.output[-6000:]
    second = run_playbook(roles_fleet, workdir, "provision.yml", plans)
    assert second.rc == 0, second.output[-6000:]
    yield {"first": first, "second": second}


# -- tests ------------------------------------------------------------------------------------

def test_first_converge_installs_everything(
    roles_fleet: Fleet, converged: dict[str, Run]
) -> None:
    for host, codename in HOSTS.items():
        assert converged["first"].changed(host) > 0
        assert installed(roles_fleet, host) == {
            "libedgetpu1-std": f"{COMMUNITY_VERSION}.bookworm"}
        _, version, module = RELEASES[codename]["python_runtime"]
        probe = host_text(
            roles_fleet, host,
            f"/opt/coralpi/venv/bin/python -c 'import {module} as m, cv2, numpy; "
            "print(cv2.__version__, numpy.__version__)'")
        assert probe.split()[0][0] == "4"
        groups = host_text(roles_fleet, host, "id -nG pi").split()
        assert "plugdev" in groups
        fact = local_fact(roles_fleet, host)
        assert fact["runtime_package"] == "libedgetpu1-std"
        assert fact["runtime_version"] == f"{COMMUNITY_VERSION}.bookworm"
        assert fact["runtime_variant"] == "std"
        assert fact["python_runtime_version"] == version
        assert fact["ld_preload"] is None
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", fact["provisioned_at"])


def test_second_converge_changes_nothing(converged: dict[str, Run]) -> None:
    for host in HOSTS:
        assert converged["second"].changed(host) == 0, converged["second"].output[-6000:]


def test_check_mode_reports_no_change(
    roles_fleet: Fleet, workdir: Path, artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    plans = {n: make_plan(c, artifacts[n]) for n, c in HOSTS.items()}
    run = run_playbook(roles_fleet, workdir, "provision.yml", plans, "--check")
    assert run.rc == 0, run.output[-6000:]
    for host in HOSTS:
        assert run.changed(host) == 0, run.output[-6000:]
