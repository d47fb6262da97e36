"""The roles on real Debian hosts of the test fleet: what the CLI cannot reach.

Converging, idempotence, check mode, verify and std/max switching are proven through the
CLI in test_apply_fleet.py; here the roles alone (as an Ansible user runs them): the probe,
the role-level refusal of max without the license, the signed Coral source, a rotated key
and an unreachable repository left as they were, the OpenCV wheel and its preload, the
camera, and a failed switch undone.

Runs `playbooks/provision.yml` (and `probe.yml`) with `ansible-playbook` over SSH against
a private fleet (pi1: bookworm, pi3: trixie; amd64). The plans are the controller's own
(`resolve()` for what Debian ships on each release) and their files come from the
controller's artifact code (`ensure_host_artifacts`, the same cache as the CLI tests); a test
that needs what the planner would not choose on these hosts (the Coral apt runtime, a
preload, the legacy camera) replaces that one decision with the one the matrix makes for a
release that has it, and says so. What stands in for the unreachable internet (see
TESTING.md): the Coral apt repository and the community runtime .debs are the fleet's
stand-in packages (same names, relations, debconf questions and udev rules; a library that
reports "no device"); wheels are real, from PyPI, downloaded by the controller's code.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import fleet_cli
import pytest
from fleet_cli import Run, run_playbook
from fleet_cli import installed_runtimes as installed

from provision.artifacts.service import (
    ArtifactSettings,
    HostArtifacts,
    ensure_host_artifacts,
    open_cache,
)
from provision.planning.inventory import load_inventory
from provision.planning.matrix import load_matrix, resolve
from provision.planning.plan import Plan
from provision.planning.targets import Choices, Target
from testfleet import Fleet, HostSpec
from testfleet.pi_files import BOOKWORM_CONFIG_TXT

VENV_BIN = Path(sys.executable).parent
MakeFleet = Callable[..., Fleet]

#: What Debian ships per release (python, glibc): the plans are made from these, and the
#: probe test checks the hosts' facts give the same.
RELEASES = {"bookworm": ("3.11", "2.36"), "trixie": ("3.13", "2.41")}
PI_BOARD = "Raspberry Pi 4 Model B Rev 1.4"
CORAL_SOURCES = "/etc/apt/sources.list.d/coral-edgetpu.sources"


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


# -- plans and files, as the controller makes them ----------------------------------------


def plan_for(codename: str, *, board: str | None = None, **choices: Any) -> Plan:
    """The controller's plan for an amd64 Debian host of this release."""
    python, glibc = RELEASES[codename]
    return resolve(Target("debian", codename, "x86_64", python, glibc, board), Choices(**choices))


def with_coral_apt(plan: Plan) -> Plan:
    """``plan`` with the runtime the matrix takes from the Coral apt repository (its decision
    for bullseye, of the same variant): on these releases the planner chooses the community
    build, so the signed-source path is reached only like this."""
    bullseye = resolve(
        Target("debian", "bullseye", "x86_64", "3.9", "2.31"),
        Choices(runtime=plan.choices.runtime, accept_max_eula=plan.choices.accept_max_eula),
    )
    assert bullseye.runtime.source == "coral-apt"
    return dataclasses.replace(plan, runtime=bullseye.runtime)


def fleet_settings(fleet: Fleet, **variables: Any) -> ArtifactSettings:
    """Where the controller takes files from for this fleet: its inventory's ``coralpi_*``
    variables, and the STAND-IN community .debs pinned by the sha256 of what the fleet built
    (served over plain http on the test bridge)."""
    assert fleet.standin is not None
    host = load_inventory(fleet.inventory_path, None)[0]
    pins = {
        deb.name: hashlib.sha256(deb.read_bytes()).hexdigest()
        for deb in fleet.standin.community_dir.glob("*.deb")
    }
    return ArtifactSettings.from_vars({**host.variables, **variables}, pins=pins)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifacts_for(fleet: Fleet, plan: Plan) -> HostArtifacts:
    """The host's files as `coralpi apply` gets them (into the default artifact cache)."""
    return ensure_host_artifacts(plan, fleet_settings(fleet), open_cache())


def deb_version(plan: Plan) -> str:
    """The dpkg version the plan's runtime installs."""
    rt = plan.runtime
    return rt.deb_filename.split("_")[1] if rt.deb_filename else rt.version


# -- running playbooks ------------------------------------------------------------------------


def local_fact(fleet: Fleet, host: str) -> dict[str, Any]:
    fact: dict[str, Any] = json.loads(
        host_text(fleet, host, "cat /etc/ansible/facts.d/coralpi.fact")
    )
    return fact


def host_text(fleet: Fleet, host: str, command: str) -> str:
    return fleet_cli.host_text(fleet, host, command, become=True, timeout=120)


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
def plans(roles_fleet: Fleet) -> dict[str, tuple[Plan, HostArtifacts]]:
    """Each host's default plan (std runtime, Debian's OpenCV) and its files."""
    out = {}
    for name, codename in HOSTS.items():
        plan = plan_for(codename)
        out[name] = (plan, artifacts_for(roles_fleet, plan))
    return out


@pytest.fixture(scope="module")
def converged(
    roles_fleet: Fleet, workdir: Path, plans: dict[str, tuple[Plan, HostArtifacts]]
) -> Iterator[dict[str, Run]]:
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
        assert facts["coralpi_glibc"] == RELEASES[codename][1]
        assert facts["coralpi_dpkg_arch"] == "amd64" and facts["coralpi_board"] is None
        target = target_from_facts(facts)
        # The probe reads the libstdc++ levels off the host's own library; a planned target
        # without a probe takes them from the matrix: both must agree for the release.
        rel = load_matrix().releases[codename]
        assert (target.glibcxx, target.cxxabi) == (rel.glibcxx, rel.cxxabi), codename
        unprobed = dataclasses.replace(target, glibcxx=None, cxxabi=None)
        assert unprobed == plan_for(codename).target
        assert run.changed(host) == 0  # read-only


def test_first_converge_installs_everything(
    roles_fleet: Fleet, plans: dict[str, tuple[Plan, HostArtifacts]], converged: dict[str, Run]
) -> None:
    for host, (plan, _) in plans.items():
        assert converged["first"].changed(host) > 0
        assert installed(roles_fleet, host) == {"libedgetpu1-std": deb_version(plan)}
        module, version = plan.python_runtime.module, plan.python_runtime.version
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
        assert fact["runtime_version"] == deb_version(plan)
        assert fact["runtime_variant"] == "std"
        assert fact["python_runtime_version"] == version
        assert fact["ld_preload"] is None
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", fact["provisioned_at"])


def _changed_tasks(output: str) -> list[str]:
    """The TASK headers under which ansible-playbook printed a change."""
    task, changed = "", []
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]", 1)[0]
        elif line.startswith("changed: ["):
            changed.append(task)
    return changed


def test_the_collections_site_plans_and_converges_without_the_cli(
    roles_fleet: Fleet,
    workdir: Path,
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
    tmp_path: Path,
) -> None:
    """`ansible-playbook coralpi.coral.site` from the built and installed collection, with no
    checkout configuration and no coralpi command: the plugins plan pi1 from its facts and
    take its files from a lock (`coralpi_lock`; the STAND-IN community .debs pinned in it as
    `coralpi lock --pin` would), and the runtime role finds pi1 converged: the plan and the
    files are the ones the controller's code made. One role (`--tags`) keeps it cheap; the
    CLI tests run every role and verify through the same playbooks."""
    from provision.collection.build import build

    lock = workdir / "coralpi.lock"
    plan, arts = plans["pi1"]
    settings = dataclasses.replace(fleet_settings(roles_fleet), lock_file=lock)
    assert ensure_host_artifacts(plan, settings, open_cache()) == arts  # written to the lock
    collections = tmp_path / "collections"
    collections.mkdir()
    tarball = build(tmp_path / "dist")
    subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", "."],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=collections,
    )
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(roles_fleet.inventory_path)]
    cmd += ["coralpi.coral.site", "--limit", "pi1", "--tags", "coralpi_edgetpu"]
    cmd += ["-e", f"coralpi_lock={lock}"]
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),  # nothing of the checkout's
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
    }
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path, env=env
    )
    run = Run(proc)
    assert run.rc == 0, run.output[-6000:]
    for task in (
        "Plan this host (coralpi's matrix, on the controller)",
        "Get the plan's files into the controller's cache",
        "coralpi.coral.coralpi_edgetpu : Validating arguments against arg spec 'main'",
    ):
        assert f"TASK [{task}" in run.output, task
    assert _changed_tasks(proc.stdout) == [], run.output[-6000:]
    assert installed(roles_fleet, "pi1") == {"libedgetpu1-std": deb_version(plan)}


def test_max_without_the_license_is_refused_before_anything_changes(
    roles_fleet: Fleet,
    workdir: Path,
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    # The controller refuses max without the license before any host is touched (the CLI
    # tests); an Ansible user running the roles with such a plan is refused by the role.
    plan = plan_for("bookworm", runtime="max", accept_max_eula=True)
    before = installed(roles_fleet, "pi1")
    run = run_playbook(
        roles_fleet,
        workdir,
        "provision.yml",
        {"pi1": (plan, artifacts_for(roles_fleet, plan))},
        limit="pi1",
    )
    assert run.rc != 0
    assert "coralpi_accept_max_eula: true" in run.output
    assert run.changed("pi1") == 0
    assert (
        installed(roles_fleet, "pi1") == before == {"libedgetpu1-std": deb_version(plans["pi1"][0])}
    )


def test_coral_apt_source_installs_from_the_signed_repository(
    roles_fleet: Fleet,
    workdir: Path,
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    plan = with_coral_apt(plans["pi1"][0])
    coral = {"pi1": (plan, artifacts_for(roles_fleet, plan))}
    assert coral["pi1"][1].coral_keyring is not None  # checked against the fleet's fingerprint
    # Coral's own .deb, pinned from the signed index, is what the role installs
    pinned = coral["pi1"][1].runtime_debs["std"]
    assert pinned.name == f"libedgetpu1-std_{plan.runtime.version}_amd64.deb"
    run = run_playbook(roles_fleet, workdir, "provision.yml", coral, limit="pi1")
    assert run.rc == 0, run.output[-6000:]
    pushed = host_text(roles_fleet, "pi1", f"sha256sum /var/cache/coralpi/debs/{pinned.name}")
    assert pushed.split()[0] == hashlib.sha256(pinned.read_bytes()).hexdigest()
    # the fact keeps the fingerprints the lock accepted: verify judges the keyring by them
    fingerprint = roles_fleet.standin_key_fingerprint
    assert local_fact(roles_fleet, "pi1")["coral_key_fingerprints"] == [fingerprint]
    # coral-apt pins the official version: the community build is replaced (a downgrade).
    assert installed(roles_fleet, "pi1") == {"libedgetpu1-std": plan.runtime.version}
    source = host_text(roles_fleet, "pi1", "cat /etc/apt/sources.list.d/coral-edgetpu.sources")
    assert "Signed-By: /etc/apt/keyrings/coral-edgetpu.gpg" in source
    assert f"URIs: {roles_fleet.urls['coral_apt']}" in source
    assert (
        host_text(
            roles_fleet, "pi1", "stat -c '%U:%G %a' /etc/apt/keyrings/coral-edgetpu.gpg"
        ).strip()
        == "root:root 644"
    )
    again = run_playbook(roles_fleet, workdir, "provision.yml", coral, limit="pi1")
    assert again.rc == 0 and again.changed("pi1") == 0, again.output[-6000:]


def _apt_update_is_clean(fleet: Fleet, host: str) -> None:
    proc = fleet.ssh(host, "apt-get update", become=True, timeout=300)
    assert proc.returncode == 0 and "W:" not in proc.stderr, proc.stderr


def test_a_rotated_key_is_explained_and_the_host_left_as_it_was(
    roles_fleet: Fleet,
    workdir: Path,
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    # pi1 has a working Coral source (previous test); pi3 has none.
    keyring_before = host_text(roles_fleet, "pi1", "sha256sum /etc/apt/keyrings/coral-edgetpu.gpg")
    rotated = other_keyring(workdir)
    coral = {}
    for name, (plan, _) in plans.items():
        plan = with_coral_apt(plan)
        arts = dataclasses.replace(artifacts_for(roles_fleet, plan), coral_keyring=rotated)
        coral[name] = (plan, arts)
    run = run_playbook(roles_fleet, workdir, "provision.yml", coral)
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
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    source_before = host_text(roles_fleet, "pi1", f"cat {CORAL_SOURCES}")
    coral = {}
    for name, (plan, _) in plans.items():
        plan = with_coral_apt(plan)
        coral[name] = (plan, artifacts_for(roles_fleet, plan))
    closed_port = f"http://{roles_fleet.bridge_address}:9/coral-apt"
    run = run_playbook(
        roles_fleet, workdir, "provision.yml", coral, "-e", f"coralpi_coral_repo_url={closed_port}"
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
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    run = run_playbook(roles_fleet, workdir, "provision.yml", plans, limit="pi1")
    assert run.rc == 0, run.output[-6000:]
    assert installed(roles_fleet, "pi1") == {"libedgetpu1-std": deb_version(plans["pi1"][0])}
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
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    # x86_64 needs no libatomic preload (the planner gives one to 32-bit ARM, with that
    # release's path); the plan asks for this machine's libatomic to exercise the mechanism.
    plan = dataclasses.replace(
        plan_for("trixie", opencv="pip"),
        ld_preload=PRELOAD,
        ld_preload_reason="test: the armv7l preload mechanism, with the amd64 library",
    )
    assert plan.opencv.source == "pip" and plan.opencv.version
    version = plan.opencv.version
    wheel = {"pi3": (plan, artifacts_for(roles_fleet, plan))}
    run = run_playbook(roles_fleet, workdir, "provision.yml", wheel, limit="pi3")
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
    again = run_playbook(roles_fleet, workdir, "provision.yml", wheel, limit="pi3")
    assert again.rc == 0 and again.changed("pi3") == 0, again.output[-6000:]

    back = run_playbook(roles_fleet, workdir, "provision.yml", plans, limit="pi3")
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
    plans: dict[str, tuple[Plan, HostArtifacts]],
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
    # The plan the controller makes for a Pi on bookworm (the board is the probe's).
    plan = plan_for("bookworm", board=PI_BOARD)
    assert (plan.camera.method, plan.camera.config_path) == ("camera-auto-detect", config)
    pi = {"pi1": (plan, plans["pi1"][1])}
    run = run_playbook(roles_fleet, workdir, "provision.yml", pi, limit="pi1")
    assert run.rc == 0, run.output[-6000:]
    lines = host_text(roles_fleet, "pi1", f"cat {config}").splitlines()
    assert lines.index("camera_auto_detect=1") == lines.index("[all]") + 1
    assert "reboot, which coralpi did not do" in run.output
    assert local_fact(roles_fleet, "pi1")["camera_method"] == "camera-auto-detect"
    again = run_playbook(roles_fleet, workdir, "provision.yml", pi, limit="pi1")
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
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    setup = (
        "cat > /usr/local/bin/raspi-config && chmod 755 /usr/local/bin/raspi-config && "
        "printf 'gpu_mem=64\\n' > /boot/config.txt && rm -f /var/log/fake-raspi-config.log"
    )
    proc = roles_fleet.ssh("pi1", setup, become=True, input=FAKE_RASPI_CONFIG, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Buster's camera decision (the legacy stack) on a bookworm host: the role's raspi-config
    # path, which only Buster reaches.
    buster = resolve(Target("debian", "buster", "x86_64", "3.7", "2.28", PI_BOARD), Choices())
    assert buster.camera.method == "raspi-config-legacy"
    plan = dataclasses.replace(plans["pi1"][0], camera=buster.camera)
    legacy = {"pi1": (plan, plans["pi1"][1])}
    try:
        run = run_playbook(roles_fleet, workdir, "provision.yml", legacy, limit="pi1")
        assert run.rc == 0, run.output[-6000:]
        config = host_text(roles_fleet, "pi1", "cat /boot/config.txt").splitlines()
        assert "start_x=1" in config and "gpu_mem=128" in config and "gpu_mem=64" not in config
        again = run_playbook(roles_fleet, workdir, "provision.yml", legacy, limit="pi1")
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
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    before = installed(roles_fleet, "pi3")
    assert before == {"libedgetpu1-std": deb_version(plans["pi3"][0])}
    plan = plan_for("trixie", runtime="max", accept_max_eula=True)
    arts = artifacts_for(roles_fleet, plan)
    broken = {**arts.runtime_debs, "max": broken_max_deb(workdir)}
    run = run_playbook(
        roles_fleet,
        workdir,
        "provision.yml",
        {"pi3": (plan, dataclasses.replace(arts, runtime_debs=broken))},
        "-e",
        "coralpi_accept_max_eula=true",
        limit="pi3",
    )
    assert run.rc != 0
    assert "Installing libedgetpu1-max (community-deb) failed" in run.output, run.output[-6000:]
    assert "was put back" in run.output
    assert installed(roles_fleet, "pi3") == before
    assert local_fact(roles_fleet, "pi3")["runtime_variant"] == "std"


# -- the M.2 / PCIe Coral on a Pi 5 ---------------------------------------------------------

PI5_BOARD = "Raspberry Pi 5 Model B Rev 1.0"
#: Raspberry Pi OS Bookworm's /boot/firmware/config.txt as the image ships it, with a user's
#: own line at the end.
PI5_CONFIG_TXT = BOOKWORM_CONFIG_TXT + "dtparam=fan_temp0=45000\n"
PI5_LINES = [
    "dtparam=pciex1",
    "dtoverlay=pciex1-compat-pi5,no-mip",
    "dtoverlay=pcie-32bit-dma-pi5",
    "kernel=kernel8.img",
]


def standin_deb(workdir: Path, package: str, version: str, files: Mapping[str, str]) -> Path:
    """A STAND-IN .deb named like the real package (Architecture all, no maintainer
    scripts): ``files`` are its payload. Not the real package's code."""
    root = workdir / f"standin-{package}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: coralpi tests <tests@testfleet.invalid>\n"
        f"Description: STAND-IN for {package} (coralpi's test fleet)\n"
        " Named like the real package; its payload is a placeholder.\n"
    )
    for path, text in files.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    out = workdir / "debs" / f"{package}_{version.split(':')[-1]}_all.deb"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.mark.pcie
def test_pi5_pcie_standin_boot_lines_written_once_driver_installed_reboot_pending(
    roles_fleet: Fleet,
    workdir: Path,
    plans: dict[str, tuple[Plan, HostArtifacts]],
    converged: dict[str, Run],
) -> None:
    """A Pi 5 stand-in (its model string, Bookworm's config.txt and kernel8.img on a Debian
    test host) with coralpi_accelerator: pcie. STAND-INs: gasket-dkms (the community
    1.0-18.4 .deb's name, a placeholder payload: no DKMS build runs here) and Raspberry Pi's
    linux-headers-rpi-v8 (not in Debian), installed with dpkg before the run."""
    config, boot = "/boot/firmware/config.txt", "/boot/firmware"
    headers = standin_deb(
        workdir,
        "linux-headers-rpi-v8",
        "1:6.12.25-1+rpt1",
        {"/usr/share/doc/linux-headers-rpi-v8/STAND-IN": "test fleet\n"},
    )
    setup = (
        f"mkdir -p {boot} && cat > {config} && : > {boot}/kernel8.img && "
        f"rm -f {config}.coralpi-prev /run/coralpi/reboot-pending && "
        "base64 -d > /tmp/headers.deb <<'EOF'\n"
        + base64.b64encode(headers.read_bytes()).decode()
        + "\nEOF\n"
    )
    proc = roles_fleet.ssh("pi1", f"sh -c {shlex.quote(setup)}", become=True, input=PI5_CONFIG_TXT)
    assert proc.returncode == 0, proc.stderr
    host_text(roles_fleet, "pi1", "dpkg -i /tmp/headers.deb")

    plan = plan_for("bookworm", board=PI5_BOARD, accelerator="pcie")
    assert plan.pcie is not None and list(plan.pcie.config_lines) == PI5_LINES
    driver = standin_deb(
        workdir,
        "gasket-dkms",
        plan.pcie.driver_version,
        {"/usr/src/gasket-1.0/STAND-IN": "placeholder for the gasket/apex DKMS source\n"},
    )
    assert driver.name == plan.pcie.driver_deb
    settings = dataclasses.replace(
        fleet_settings(roles_fleet, coralpi_gasket_dkms_url=driver.parent.as_uri()),
        pins=(*fleet_settings(roles_fleet).pins, (driver.name, sha256_of(driver))),
    )
    pi = {"pi1": (plan, ensure_host_artifacts(plan, settings, open_cache()))}
    # The roles a PCIe Coral adds or changes (the others are the converge's, unchanged).
    roles = ("--tags", "coralpi_boot,coralpi_edgetpu,coralpi_pcie,coralpi_record")

    run = run_playbook(roles_fleet, workdir, "provision.yml", pi, *roles, limit="pi1")
    assert run.rc == 0, run.output[-6000:]
    text = host_text(roles_fleet, "pi1", f"cat {config}")
    assert text.startswith(PI5_CONFIG_TXT)  # every line of the user's kept, in place
    block = text[len(PI5_CONFIG_TXT) :].splitlines()
    assert block[1:-1] == ["[all]", *PI5_LINES]
    assert host_text(roles_fleet, "pi1", f"cat {config}.coralpi-prev") == PI5_CONFIG_TXT
    assert "reboot needed: dtparam=pciex1" in run.output
    assert "copy config.txt.coralpi-prev over config.txt" in run.output
    pending = host_text(roles_fleet, "pi1", "cat /run/coralpi/reboot-pending").splitlines()
    assert pending == [f"{config}: {line}" for line in PI5_LINES]
    assert fleet_cli.installed(roles_fleet, "pi1", "gasket-dkms") == (
        f"install ok installed {plan.pcie.driver_version}"
    )
    assert host_text(roles_fleet, "pi1", "cat /etc/udev/rules.d/65-apex.rules").endswith(
        'SUBSYSTEM=="apex", MODE="0660", GROUP="apex"\n'
    )
    modules = host_text(roles_fleet, "pi1", "cat /etc/modules-load.d/coralpi-apex.conf")
    assert modules.splitlines()[-1] == "apex"
    assert "apex" in host_text(roles_fleet, "pi1", "id -nG pi").split()
    assert local_fact(roles_fleet, "pi1")["accelerator"] == "pcie"

    again = run_playbook(roles_fleet, workdir, "provision.yml", pi, *roles, limit="pi1")
    assert again.rc == 0 and again.changed("pi1") == 0, again.output[-6000:]
    assert host_text(roles_fleet, "pi1", f"cat {config}") == text
    assert "reboot needed" not in again.output

    # Without kernel8.img on the boot partition (Ubuntu's layout, say), kernel=kernel8.img
    # would leave the Pi unbootable: refused, config.txt left as it was.
    reset = f"printf '%s' {shlex.quote(PI5_CONFIG_TXT)} > {config} && rm {boot}/kernel8.img"
    host_text(roles_fleet, "pi1", f"sh -c {shlex.quote(reset)}")
    refused = run_playbook(
        roles_fleet, workdir, "provision.yml", pi, "--tags", "coralpi_boot", limit="pi1"
    )
    assert refused.rc != 0
    assert "would leave the Pi unbootable, so nothing was changed" in refused.output
    assert host_text(roles_fleet, "pi1", f"cat {config}") == PI5_CONFIG_TXT


# -- the PCIe driver built by DKMS for real ---------------------------------------------------


def _pi3_kernel_modules(fleet: Fleet) -> str:
    """Every file under /lib/modules on pi3 that is the (stand-in) driver's."""
    return host_text(
        fleet, "pi3", "find /lib/modules/ -name 'apex.ko*' -o -name 'gasket.ko*' | sort"
    )


@pytest.mark.pcie
def test_dkms_builds_the_standin_driver_for_trixies_612_kernel_and_the_old_way_is_refused(
    roles_fleet: Fleet, workdir: Path
) -> None:
    """pi3 (trixie) with coralpi_accelerator: pcie: coralpi_pcie installs Debian trixie's
    real 6.12 headers (linux-headers-amd64, through the apt proxy) and a STAND-IN
    gasket-dkms (testfleet/standin_gasket.py: the package's shape, our own two modules),
    and DKMS really builds it for that kernel. The negative control first: the same module
    written the old way (`.llseek = no_llseek`, Coral's 1.0-18) fails to build on 6.12; the
    role names the compiler's error, keeps the log and leaves no driver behind. Not run
    here: loading the modules (the host is a container on this machine's kernel), a
    Raspberry Pi kernel (linux-headers-rpi-v8 is not in Debian). Cost: about 4 minutes with
    the apt proxy's cache warm; cold it first downloads about 175 MB (the headers depend on
    their 108 MB linux-image, gcc-14, dkms)."""
    from testfleet import standin_gasket
    from verify.kernel import gather_kernel
    from verify.rootfs import RootFS

    good_plan = plan_for("trixie", accelerator="pcie")
    assert good_plan.pcie is not None
    assert list(good_plan.pcie.headers_packages) == ["linux-headers-amd64"]
    debs = workdir / "gasket-debs"
    debs.mkdir(exist_ok=True)
    old_pcie = dataclasses.replace(
        good_plan.pcie, driver_version="1.0-18", driver_deb="gasket-dkms_1.0-18_all.deb"
    )
    old_plan = dataclasses.replace(good_plan, pcie=old_pcie)
    good = standin_gasket.build(debs, good_plan.pcie.driver_version, llseek="noop_llseek")
    old = standin_gasket.build(debs, old_pcie.driver_version, llseek="no_llseek")
    assert (good.name, old.name) == (good_plan.pcie.driver_deb, old_pcie.driver_deb)
    settings = dataclasses.replace(
        fleet_settings(roles_fleet, coralpi_gasket_dkms_url=debs.as_uri()),
        pins=(
            *fleet_settings(roles_fleet).pins,
            (good.name, sha256_of(good)),
            (old.name, sha256_of(old)),
        ),
    )
    pcie_only = ("--tags", "coralpi_pcie")
    # A lock of this test's own: the process's default (in-memory) lock already pins the
    # fleet's placeholder gasket-dkms .deb of the same name, and a lock's pin wins.
    dkms_lock = workdir / "dkms-test.lock"
    dkms_lock.unlink(missing_ok=True)

    def files(plan: Plan) -> dict[str, tuple[Plan, HostArtifacts]]:
        got = ensure_host_artifacts(plan, settings, open_cache(), lock_path=dkms_lock)
        assert got.driver_deb is not None and sha256_of(got.driver_deb) in (
            sha256_of(good),
            sha256_of(old),
        ), got.driver_deb
        return {"pi3": (plan, got)}

    refused = run_playbook(
        roles_fleet, workdir, "provision.yml", files(old_plan), *pcie_only, limit="pi3"
    )
    assert refused.rc != 0
    assert "gasket-dkms 1.0-18 did not install" in refused.output, refused.output[-6000:]
    message = next(line for line in refused.output.splitlines() if "did not install" in line)
    # gcc's first error, quoted as the host's locale quotes (', or a typographic quote that
    # the JSON of the message may escape)
    assert re.search(
        r"its DKMS build against linux-headers-amd64 failed: \S*/gasket\.c:\d+:\d+: "
        r"error: \S*no_llseek\S* undeclared",
        message,
    ), message
    assert "/var/log/coralpi/gasket-dkms-build.log" in message
    kept = host_text(roles_fleet, "pi3", "cat /var/log/coralpi/gasket-dkms-build.log")
    assert "no_llseek" in kept
    # The driver is gone again: no package, no DKMS entry, no source, no module.
    assert fleet_cli.installed(roles_fleet, "pi3", "gasket-dkms").startswith(
        ("", "deinstall ok config-files", "unknown ok not-installed")
    )
    assert "gasket" not in host_text(roles_fleet, "pi3", "dkms status")
    assert fleet_path_absent(roles_fleet, "pi3", "/usr/src/gasket-1.0")
    assert fleet_path_absent(roles_fleet, "pi3", "/var/lib/dkms/gasket")
    assert _pi3_kernel_modules(roles_fleet) == ""

    run = run_playbook(
        roles_fleet, workdir, "provision.yml", files(good_plan), *pcie_only, limit="pi3"
    )
    assert run.rc == 0, run.output[-6000:]
    releases = host_text(roles_fleet, "pi3", "ls /lib/modules").split()
    assert len(releases) == 1 and releases[0].startswith("6.12.")
    kernel = releases[0]
    assert f"gasket/1.0, {kernel}, x86_64: installed" in host_text(
        roles_fleet, "pi3", "dkms status"
    )
    modules = _pi3_kernel_modules(roles_fleet).split()
    assert sorted(m.rsplit("/", 1)[1].split(".")[0] for m in modules) == ["apex", "gasket"]
    apex = next(m for m in modules if "/apex.ko" in m)
    assert apex.startswith(f"/lib/modules/{kernel}/updates/dkms/")
    vermagic = host_text(roles_fleet, "pi3", f"modinfo -F vermagic {apex}").split()
    assert vermagic[0] == kernel
    assert host_text(roles_fleet, "pi3", f"modinfo -F depends {apex}").strip() == "gasket"
    again = run_playbook(
        roles_fleet, workdir, "provision.yml", files(good_plan), *pcie_only, limit="pi3"
    )
    assert again.rc == 0 and again.changed("pi3") == 0, again.output[-6000:]

    # verify's driver facts read the layout DKMS left (recorded into a tree): the module is
    # there for 6.12 only, not for the kernel that runs (this machine's).
    tree = workdir / "pi3-modules"
    for path in [*modules, f"/lib/modules/{kernel}/build/Makefile"]:
        dest = tree / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("")
    (tree / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    running = host_text(roles_fleet, "pi3", "uname -r").strip()
    (tree / "proc/sys/kernel/osrelease").write_text(running + "\n")
    facts = gather_kernel(RootFS(str(tree)))
    assert list(facts.module_files) == [kernel] and not facts.driver_for_running
