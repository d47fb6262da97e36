"""The roles on real Debian hosts of the test fleet: what the CLI cannot reach.

Converging, idempotence, check mode, verify and std/max switching are proven through the
CLI in test_apply_fleet.py; here the roles alone (as an Ansible user runs them): the probe,
the role-level refusal of max without the license, the signed Coral source, a rotated key
and an unreachable repository left as they were, the OpenCV wheel and its preload, the
camera, and a failed switch undone.

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
        "python": "3.11",
        "glibc": "2.36",
        "numpy": ">=1.23.2,<2",
        "python_runtime": ("tflite-runtime", "2.14.0", "tflite_runtime.interpreter"),
        "download": ["--python-version", "3.11", "--platform", "manylinux2014_x86_64"],
    },
    "trixie": {
        "python": "3.13",
        "glibc": "2.41",
        "numpy": ">=1.23.2",
        "python_runtime": ("ai-edge-litert", "2.3.0", "ai_edge_litert.interpreter"),
        "download": [
            "--python-version",
            "3.13",
            "--platform",
            "manylinux_2_27_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux2014_x86_64",
        ],
    },
}
COMMUNITY_VERSION = "16.0tf2.17.1-1"
CORAL_SOURCES = "/etc/apt/sources.list.d/coral-edgetpu.sources"


# -- artifacts the controller would provide -------------------------------------------------


def _download(name: str, args: list[str], requirement: str) -> Path:
    """Wheels for one requirement (and its dependencies), cached across runs."""
    target = WHEEL_CACHE / name
    done = target / ".complete"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(VENV_BIN / "pip"),
                "download",
                "-q",
                "--only-binary=:all:",
                "-d",
                str(target),
                *args,
                requirement,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        done.write_text("")
    return target


def download_wheels(codename: str) -> Path:
    """Wheels for a release's Python runtime (and its dependencies)."""
    release = RELEASES[codename]
    package, version, _ = release["python_runtime"]
    return _download(
        f"{codename}-{package}-{version}", release["download"], f"{package}=={version}"
    )


def wheels_with_opencv(codename: str, workdir: Path) -> tuple[Path, str]:
    """A wheel directory holding the runtime's wheels plus opencv-python-headless."""
    release = RELEASES[codename]
    opencv = _download(
        f"{codename}-opencv-python-headless",
        [*release["download"], "--platform", "manylinux_2_28_x86_64", "--no-deps"],
        "opencv-python-headless",
    )
    wheel = next(opencv.glob("opencv_python_headless-*.whl"))
    combined = workdir / f"wheels-{codename}-opencv"
    combined.mkdir(exist_ok=True)
    for source in [*download_wheels(codename).glob("*.whl"), wheel]:
        link = combined / source.name
        if not link.exists():
            link.symlink_to(source)
    return combined, wheel.name.split("-")[1]


def dearmor(armored: Path, out: Path) -> Path:
    """Binary keyring from an ASCII-armoured key file (what the controller hands to apt)."""
    subprocess.run(
        ["gpg", "--batch", "--yes", "--dearmor", "-o", str(out), str(armored)],
        check=True,
        capture_output=True,
    )
    return out


def other_keyring(workdir: Path) -> Path:
    """A keyring holding a freshly generated key that did not sign the repository."""
    home = workdir / "gnupg-other"
    home.mkdir(mode=0o700, exist_ok=True)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty"]
    try:
        subprocess.run(
            [
                *gpg,
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                "rotated key <rotated@testfleet.invalid>",
                "ed25519",
                "sign",
                "never",
            ],
            check=True,
            capture_output=True,
        )
        key = subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )
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
    opencv_version: str | None = None,
    ld_preload: str | None = None,
    camera: tuple[str, str | None] = ("none", None),
) -> dict[str, Any]:
    release = RELEASES[codename]
    package, version, module = release["python_runtime"]
    other = "max" if variant == "std" else "std"
    runtime_version = COMMUNITY_VERSION if source == "community-deb" else "16.0"
    apt_packages = ["python3-venv", "python3-numpy", "python3-pil"]
    if opencv == "apt":
        apt_packages.append("python3-opencv")
    return {
        "target": {
            "os_id": "debian",
            "codename": codename,
            "arch": "x86_64",
            "python": release["python"],
            "glibc": release["glibc"],
            "board": None,
        },
        "choices": {"runtime": variant, "accelerator": "usb", "opencv": opencv, "camera": True},
        "runtime": {
            "source": source,
            "package": f"libedgetpu1-{variant}",
            "conflicts": f"libedgetpu1-{other}",
            "version": runtime_version,
            "deb_filename": (
                f"libedgetpu1-{variant}_{COMMUNITY_VERSION}.bookworm_amd64.deb"
                if source == "community-deb"
                else None
            ),
            "reason": "hand-written test plan",
        },
        "python_runtime": {
            "package": package,
            "version": version,
            "module": module,
            "python_tag": "cp" + release["python"].replace(".", ""),
            "platform_tags": [],
            "reason": "hand-written test plan",
        },
        "numpy": {"constraint": release["numpy"], "source": "apt", "reason": "test"},
        "opencv": {
            "source": opencv,
            "package": "python3-opencv" if opencv == "apt" else "opencv-python-headless",
            "version": opencv_version,
            "reason": "test",
        },
        "ld_preload": ld_preload,
        "ld_preload_reason": "test",
        "camera": {
            "method": camera[0],
            "config_path": camera[1],
            "reason": "not a Raspberry Pi (test host)" if camera[0] == "none" else "test",
        },
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
    fleet: Fleet,
    workdir: Path,
    playbook: str,
    plans: Mapping[str, Any],
    *extra: str,
    limit: str | None = None,
) -> Run:
    vars_file = workdir / "plans.json"
    vars_file.write_text(json.dumps({"coralpi_plans": plans}, indent=1))
    cmd = [
        str(VENV_BIN / "ansible-playbook"),
        "-i",
        str(fleet.inventory_path),
        str(PLAYBOOKS / playbook),
        "-e",
        f"@{vars_file}",
        *extra,
    ]
    if limit:
        cmd += ["--limit", limit]
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
    }
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1500, check=False, cwd=REPO_ROOT, env=env
    )
    return Run(proc)


def host_text(fleet: Fleet, host: str, command: str) -> str:
    proc = fleet.ssh(host, command, become=True, timeout=120)
    assert proc.returncode == 0, f"{host}: {command}: {proc.stderr}"
    return proc.stdout


def installed(fleet: Fleet, host: str) -> dict[str, str]:
    out = fleet.ssh(
        host,
        "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' "
        "libedgetpu1-std libedgetpu1-max",
        timeout=60,
    ).stdout
    return {
        f[0]: f[1]
        for f in (line.split() for line in out.splitlines())
        if len(f) >= 3 and f[2].startswith("ii")
    }


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
    return {name: artifacts_for(roles_fleet, workdir, codename) for name, codename in HOSTS.items()}


@pytest.fixture(scope="module")
def converged(
    roles_fleet: Fleet, workdir: Path, artifacts: dict[str, dict[str, Any]]
) -> Iterator[dict[str, Run]]:
    plans = {n: make_plan(c, artifacts[n]) for n, c in HOSTS.items()}
    first = run_playbook(roles_fleet, workdir, "provision.yml", plans)
    assert first.rc == 0, first.output[-6000:]
    yield {"first": first}


# -- tests ------------------------------------------------------------------------------------


def test_probe_writes_what_the_planner_reads(roles_fleet: Fleet, workdir: Path) -> None:
    from provision.planning.targets import target_from_facts

    probe_dir = workdir / "probe"
    probe_dir.mkdir(exist_ok=True)
    run = run_playbook(
        roles_fleet, workdir, "probe.yml", {}, "-e", f"coralpi_probe_dir={probe_dir}"
    )
    assert run.rc == 0, run.output[-6000:]
    for host, codename in HOSTS.items():
        facts = json.loads((probe_dir / f"{host}.json").read_text())
        assert facts["coralpi_glibc"] == RELEASES[codename]["glibc"]
        assert facts["coralpi_dpkg_arch"] == "amd64" and facts["coralpi_board"] is None
        target = target_from_facts(facts)
        assert (target.codename, target.arch, target.python, target.glibc) == (
            codename,
            "x86_64",
            RELEASES[codename]["python"],
            RELEASES[codename]["glibc"],
        )
        assert run.changed(host) == 0  # read-only


def test_first_converge_installs_everything(roles_fleet: Fleet, converged: dict[str, Run]) -> None:
    for host, codename in HOSTS.items():
        assert converged["first"].changed(host) > 0
        assert installed(roles_fleet, host) == {"libedgetpu1-std": f"{COMMUNITY_VERSION}.bookworm"}
        _, version, module = RELEASES[codename]["python_runtime"]
        probe = host_text(
            roles_fleet,
            host,
            f"/opt/coralpi/venv/bin/python -c 'import {module} as m, cv2, numpy; "
            "print(cv2.__version__, numpy.__version__)'",
        )
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


def test_max_without_the_license_is_refused_before_anything_changes(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    plans = {"pi1": make_plan("bookworm", artifacts["pi1"], variant="max")}
    run = run_playbook(roles_fleet, workdir, "provision.yml", plans, limit="pi1")
    assert run.rc != 0
    assert "coralpi_accept_max_eula: true" in run.output
    assert run.changed("pi1") == 0
    assert installed(roles_fleet, "pi1") == {"libedgetpu1-std": f"{COMMUNITY_VERSION}.bookworm"}


def test_coral_apt_source_installs_from_the_signed_repository(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    plans = {"pi1": make_plan("bookworm", artifacts["pi1"], source="coral-apt")}
    run = run_playbook(roles_fleet, workdir, "provision.yml", plans, limit="pi1")
    assert run.rc == 0, run.output[-6000:]
    # coral-apt pins the official version: the community build is replaced (a downgrade).
    assert installed(roles_fleet, "pi1") == {"libedgetpu1-std": "16.0"}
    source = host_text(roles_fleet, "pi1", "cat /etc/apt/sources.list.d/coral-edgetpu.sources")
    assert "Signed-By: /etc/apt/keyrings/coral-edgetpu.gpg" in source
    assert f"URIs: {roles_fleet.urls['coral_apt']}" in source
    assert (
        host_text(
            roles_fleet, "pi1", "stat -c '%U:%G %a' /etc/apt/keyrings/coral-edgetpu.gpg"
        ).strip()
        == "root:root 644"
    )
    again = run_playbook(roles_fleet, workdir, "provision.yml", plans, limit="pi1")
    assert again.rc == 0 and again.changed("pi1") == 0, again.output[-6000:]


def _apt_update_is_clean(fleet: Fleet, host: str) -> None:
    proc = fleet.ssh(host, "apt-get update", become=True, timeout=300)
    assert proc.returncode == 0 and "W:" not in proc.stderr, proc.stderr


def test_a_rotated_key_is_explained_and_the_host_left_as_it_was(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    # pi1 has a working Coral source (previous test); pi3 has none.
    keyring_before = host_text(roles_fleet, "pi1", "sha256sum /etc/apt/keyrings/coral-edgetpu.gpg")
    rotated = str(other_keyring(workdir))
    plans = {
        n: make_plan(c, {**artifacts[n], "coral_keyring": rotated}, source="coral-apt")
        for n, c in HOSTS.items()
    }
    run = run_playbook(roles_fleet, workdir, "provision.yml", plans)
    assert run.rc != 0
    for host in HOSTS:
        assert run.recap[host]["failed"] == 1
    assert run.output.count("the key has probably rotated") >= 2, run.output[-6000:]
    assert "coralpi_coral_key_fingerprints" in run.output
    assert (
        host_text(roles_fleet, "pi1", "sha256sum /etc/apt/keyrings/coral-edgetpu.gpg")
        == keyring_before
    )
    assert fleet_path_absent(roles_fleet, "pi3", CORAL_SOURCES)
    assert fleet_path_absent(roles_fleet, "pi3", "/etc/apt/keyrings/coral-edgetpu.gpg")
    for host in HOSTS:
        assert (
            host_text(roles_fleet, host, "ls /etc/apt/sources.list.d /etc/apt/keyrings").count("~")
            == 0
        )  # no backup files left behind
        _apt_update_is_clean(roles_fleet, host)


def fleet_path_absent(fleet: Fleet, host: str, path: str) -> bool:
    return fleet.ssh(host, f"test ! -e {path}", timeout=60).returncode == 0


def test_an_unreachable_repository_is_explained_and_the_host_left_as_it_was(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    source_before = host_text(roles_fleet, "pi1", f"cat {CORAL_SOURCES}")
    plans = {n: make_plan(c, artifacts[n], source="coral-apt") for n, c in HOSTS.items()}
    closed_port = f"http://{roles_fleet.bridge_address}:9/coral-apt"
    run = run_playbook(
        roles_fleet, workdir, "provision.yml", plans, "-e", f"coralpi_coral_repo_url={closed_port}"
    )
    assert run.rc != 0
    assert run.output.count("could not be reached") >= 2, run.output[-6000:]
    assert "coralpi_coral_repo_url" in run.output
    assert host_text(roles_fleet, "pi1", f"cat {CORAL_SOURCES}") == source_before
    assert fleet_path_absent(roles_fleet, "pi3", CORAL_SOURCES)
    for host in HOSTS:
        _apt_update_is_clean(roles_fleet, host)


def test_back_to_the_community_runtime_removes_the_coral_source(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    plans = {"pi1": make_plan("bookworm", artifacts["pi1"])}
    run = run_playbook(roles_fleet, workdir, "provision.yml", plans, limit="pi1")
    assert run.rc == 0, run.output[-6000:]
    assert installed(roles_fleet, "pi1") == {"libedgetpu1-std": f"{COMMUNITY_VERSION}.bookworm"}
    assert fleet_path_absent(roles_fleet, "pi1", CORAL_SOURCES)
    assert fleet_path_absent(roles_fleet, "pi1", "/etc/apt/keyrings/coral-edgetpu.gpg")


PRELOAD = "/usr/lib/x86_64-linux-gnu/libatomic.so.1"
MAPS_HAVE_LIBATOMIC = (
    "/opt/coralpi/venv/bin/python -c "
    '\'print(any("libatomic" in line for line in open("/proc/self/maps")))\''
)


def test_opencv_from_a_wheel_with_a_preload_and_back_to_debian(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    # x86_64 needs no libatomic preload; the plan asks for one here to exercise the mechanism.
    wheels, version = wheels_with_opencv("trixie", workdir)
    plan = make_plan(
        "trixie",
        {**artifacts["pi3"], "wheels_dir": str(wheels)},
        opencv="pip",
        opencv_version=version,
        ld_preload=PRELOAD,
    )
    run = run_playbook(roles_fleet, workdir, "provision.yml", {"pi3": plan}, limit="pi3")
    assert run.rc == 0, run.output[-6000:]
    cv2 = host_text(
        roles_fleet,
        "pi3",
        "/opt/coralpi/venv/bin/python -c 'import cv2; print(cv2.__file__, cv2.__version__)'",
    ).split()
    assert cv2[0].startswith("/opt/coralpi/venv/") and version.startswith(cv2[1])
    # The preload reaches every venv Python without a shell profile (before cv2 loads).
    assert host_text(roles_fleet, "pi3", MAPS_HAVE_LIBATOMIC).strip() == "True"
    env_file = host_text(roles_fleet, "pi3", "cat /etc/coralpi/ld-preload.env")
    assert f"LD_PRELOAD={PRELOAD}" in env_file
    assert local_fact(roles_fleet, "pi3")["ld_preload"] == PRELOAD
    again = run_playbook(roles_fleet, workdir, "provision.yml", {"pi3": plan}, limit="pi3")
    assert again.rc == 0 and again.changed("pi3") == 0, again.output[-6000:]

    back = run_playbook(
        roles_fleet,
        workdir,
        "provision.yml",
        {"pi3": make_plan("trixie", artifacts["pi3"])},
        limit="pi3",
    )
    assert back.rc == 0, back.output[-6000:]
    cv2_path = host_text(
        roles_fleet, "pi3", "/opt/coralpi/venv/bin/python -c 'import cv2; print(cv2.__file__)'"
    ).strip()
    assert cv2_path.startswith("/usr/lib/python3/dist-packages/")
    assert host_text(roles_fleet, "pi3", MAPS_HAVE_LIBATOMIC).strip() == "False"
    assert fleet_path_absent(roles_fleet, "pi3", "/etc/coralpi/ld-preload.env")
    assert local_fact(roles_fleet, "pi3")["ld_preload"] is None


CONFIG_TXT = """\
# Raspberry Pi OS Bookworm's config.txt, shortened
dtparam=audio=on
[cm4]
otg_mode=1
[all]
arm_boost=1
"""


def test_camera_auto_detect_is_set_under_all_and_a_reboot_is_reported_pending(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    config = "/boot/firmware/config.txt"
    proc = roles_fleet.ssh(
        "pi1",
        f"mkdir -p /boot/firmware && cat > {config}",
        become=True,
        input=CONFIG_TXT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    plan = make_plan("bookworm", artifacts["pi1"], camera=("camera-auto-detect", config))
    run = run_playbook(roles_fleet, workdir, "provision.yml", {"pi1": plan}, limit="pi1")
    assert run.rc == 0, run.output[-6000:]
    lines = host_text(roles_fleet, "pi1", f"cat {config}").splitlines()
    assert lines.index("camera_auto_detect=1") == lines.index("[all]") + 1
    assert "reboot, which coralpi did not do" in run.output
    assert local_fact(roles_fleet, "pi1")["camera_method"] == "camera-auto-detect"
    again = run_playbook(roles_fleet, workdir, "provision.yml", {"pi1": plan}, limit="pi1")
    assert again.rc == 0 and again.changed("pi1") == 0, again.output[-6000:]
    assert "reboot, which coralpi did not do" not in again.output


#: Stand-in for Raspberry Pi OS's raspi-config (absent on Debian): what `nonint do_camera 0`
#: does to config.txt on Buster, plus a log of its calls.
FAKE_RASPI_CONFIG = """\
#!/bin/sh
echo "$*" >> /var/log/fake-raspi-config.log
[ "$1 $2 $3" = "nonint do_camera 0" ] || exit 2
sed -i '/^start_x=/d' /boot/config.txt
echo start_x=1 >> /boot/config.txt
grep -q '^gpu_mem=' /boot/config.txt || echo gpu_mem=128 >> /boot/config.txt
"""


def test_legacy_camera_calls_raspi_config_once_and_raises_gpu_mem(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    setup = (
        "cat > /usr/local/bin/raspi-config && chmod 755 /usr/local/bin/raspi-config && "
        "printf 'gpu_mem=64\\n' > /boot/config.txt && rm -f /var/log/fake-raspi-config.log"
    )
    proc = roles_fleet.ssh("pi1", setup, become=True, input=FAKE_RASPI_CONFIG, timeout=60)
    assert proc.returncode == 0, proc.stderr
    plan = make_plan(
        "bookworm", artifacts["pi1"], camera=("raspi-config-legacy", "/boot/config.txt")
    )
    try:
        run = run_playbook(roles_fleet, workdir, "provision.yml", {"pi1": plan}, limit="pi1")
        assert run.rc == 0, run.output[-6000:]
        config = host_text(roles_fleet, "pi1", "cat /boot/config.txt").splitlines()
        assert "start_x=1" in config and "gpu_mem=128" in config and "gpu_mem=64" not in config
        again = run_playbook(roles_fleet, workdir, "provision.yml", {"pi1": plan}, limit="pi1")
        assert again.rc == 0 and again.changed("pi1") == 0, again.output[-6000:]
        calls = host_text(roles_fleet, "pi1", "cat /var/log/fake-raspi-config.log").splitlines()
        assert calls == ["nonint do_camera 0"]
    finally:
        roles_fleet.ssh("pi1", "rm -f /usr/local/bin/raspi-config", become=True, timeout=60)


def broken_max_deb(workdir: Path) -> Path:
    """A libedgetpu1-max .deb whose preinst fails: the switch to it must be undone."""
    root = workdir / "broken-max"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: libedgetpu1-max\nVersion: 99.0-broken\nArchitecture: amd64\n"
        "Maintainer: coralpi tests <tests@testfleet.invalid>\nProvides: libedgetpu1\n"
        "Conflicts: libedgetpu1\nReplaces: libedgetpu1\n"
        "Description: fails to install (test package)\n a preinst that exits 1\n"
    )
    preinst = root / "DEBIAN" / "preinst"
    preinst.write_text("#!/bin/sh\necho 'broken on purpose' >&2\nexit 1\n")
    preinst.chmod(0o755)
    out = workdir / "libedgetpu1-max_99.0-broken_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_a_failed_switch_puts_the_previous_runtime_back(
    roles_fleet: Fleet,
    workdir: Path,
    artifacts: dict[str, dict[str, Any]],
    converged: dict[str, Run],
) -> None:
    before = installed(roles_fleet, "pi3")
    assert before == {"libedgetpu1-std": f"{COMMUNITY_VERSION}.bookworm"}
    debs = {**artifacts["pi3"]["runtime_debs"], "max": str(broken_max_deb(workdir))}
    plan = make_plan("trixie", {**artifacts["pi3"], "runtime_debs": debs}, variant="max")
    run = run_playbook(
        roles_fleet,
        workdir,
        "provision.yml",
        {"pi3": plan},
        "-e",
        "coralpi_accept_max_eula=true",
        limit="pi3",
    )
    assert run.rc != 0
    assert "Installing libedgetpu1-max (community-deb) failed" in run.output, run.output[-6000:]
    assert "was put back" in run.output
    assert installed(roles_fleet, "pi3") == before
    assert local_fact(roles_fleet, "pi3")["runtime_variant"] == "std"
