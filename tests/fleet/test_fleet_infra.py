"""The test fleet itself works: SSH + Ansible, apt through the proxy, the signed stand-in
Coral repository (stand-in packages, not Google's), network isolation, clean teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from testfleet import Fleet, HostSpec, rootfs
from testfleet.binfmt import BINFMT, BinfmtUse, can_emulate, entry_name
from testfleet.errors import FleetError
from testfleet.httpserve import read_sources
from testfleet.mirror import debian_mirror
from testfleet.network import link_names, netns_names
from testfleet.paths import testdata_dir
from testfleet.procs import ProcRecord

VENV_BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
MakeFleet = Callable[..., Fleet]


def _on_all(
    fleet: Fleet, command: str, become: bool = False
) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=len(fleet.hosts)) as pool:
        results = pool.map(lambda h: (h.name, fleet.ssh(h, command, become=become)), fleet.hosts)
        return dict(results)


def _standin_source(fleet: Fleet, keyring: str = "/etc/apt/keyrings/coral-standin.gpg") -> str:
    """Shell commands for a host: fetch the stand-in key, add a signed-by deb822 source."""
    fetch = (
        "import urllib.request,sys; "
        f"sys.stdout.buffer.write(urllib.request.urlopen('{fleet.urls['coral_apt_key']}').read())"
    )
    return textwrap.dedent(f"""\
        set -e
        install -d -m 755 /etc/apt/keyrings
        python3 -c "{fetch}" | gpg --dearmor --yes -o /etc/apt/keyrings/coral-standin.gpg
        cat > /etc/apt/sources.list.d/coral-standin.sources <<EOS
        Types: deb
        URIs: {fleet.urls["coral_apt"]}
        Suites: coral-edgetpu-stable
        Components: main
        Signed-By: {keyring}
        EOS
        """)


def test_ansible_ping_reaches_every_host(fleet: Fleet) -> None:
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible"),
            "all",
            "-i",
            str(fleet.inventory_path),
            "-m",
            "ansible.builtin.ping",
            "-o",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in fleet.hosts:
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"{host.name} "))
        assert "SUCCESS" in line and '"ping": "pong"' in line, line


def test_hosts_are_what_the_inventory_says(fleet: Fleet) -> None:
    results = _on_all(fleet, ". /etc/os-release; echo $VERSION_CODENAME; hostname; id -un")
    for host in fleet.hosts:
        proc = results[host.name]
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [host.spec.suite, host.name, "pi"]
    become = _on_all(
        fleet, "id -u; test ! -s /etc/machine-id && echo empty-machine-id", become=True
    )
    assert all(p.stdout.split() == ["0", "empty-machine-id"] for p in become.values()), become


def test_apt_works_only_through_the_proxy(fleet: Fleet) -> None:
    results = _on_all(fleet, "apt-get update -q", become=True)
    for name, proc in results.items():
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"
        assert "Err:" not in proc.stdout, proc.stdout
    log = (fleet.workdir / "apt-cacher-ng" / "log" / "apt-cacher.log").read_text()
    for host in fleet.hosts:
        assert f"|{host.address}|" in log, f"no proxied request from {host.name}"
    # Bypassing the proxy there is no route to the mirror at all.
    direct = fleet.ssh(
        fleet.hosts[0],
        "apt-get update -q -o Acquire::http::Proxy=DIRECT -o Acquire::Retries=0",
        become=True,
        timeout=120,
    )
    assert "Err:" in direct.stdout or direct.returncode != 0, direct.stdout


def test_hosts_reach_nothing_but_the_bridge(fleet: Fleet) -> None:
    probe = textwrap.dedent(f"""\
        import socket, time
        def attempt(addr, port):
            t = time.monotonic()
            try:
                socket.create_connection((addr, port), timeout=10).close()
                return "connected", time.monotonic() - t
            except OSError as exc:
                return type(exc).__name__ + ":" + str(exc.errno), time.monotonic() - t
        for addr, port in [("1.1.1.1", 443), ("192.168.1.1", 80), ("{fleet.bridge_address}", 8080)]:
            result, took = attempt(addr, port)
            print(addr, result, round(took, 2))
        """)
    for name, proc in _on_all(fleet, f"python3 -c '{probe}'").items():
        assert proc.returncode == 0, proc.stderr
        lines = {ln.split()[0]: ln.split()[1:] for ln in proc.stdout.splitlines()}
        for outside in ("1.1.1.1", "192.168.1.1"):
            result, took = lines[outside]
            assert result == "OSError:101", f"{name} -> {outside}: {result}"  # ENETUNREACH
            assert float(took) < 1.0
        assert lines[fleet.bridge_address][0] == "connected", name
    routes = fleet.ssh(fleet.hosts[0], "ip route show; ip -6 route show")
    assert "default" not in routes.stdout, routes.stdout


def test_standin_repository_is_signed_by_the_published_key(fleet: Fleet, tmp_path: Path) -> None:
    assert fleet.standin is not None
    repo = fleet.standin.repo_dir
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    imported = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(gnupg),
            "--batch",
            "--import",
            "--import-options",
            "show-only",
            "--with-colons",
            str(fleet.standin.public_key),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    fprs = [ln.split(":")[9] for ln in imported.stdout.splitlines() if ln.startswith("fpr:")]
    assert fleet.standin_key_fingerprint in fprs
    keyring = tmp_path / "standin.gpg"
    subprocess.run(
        ["gpg", "--dearmor", "-o", str(keyring), str(fleet.standin.public_key)], check=True
    )
    dist = repo / "dists" / "coral-edgetpu-stable"
    for args in (["InRelease"], ["Release.gpg", "Release"]):
        check = subprocess.run(
            ["gpgv", "--keyring", str(keyring), *[str(dist / a) for a in args]],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr
    release = (dist / "Release").read_text()
    assert "Suite: coral-edgetpu-stable" in release and "Components: main" in release


def test_signed_by_source_updates_and_wrong_key_is_refused(make_fleet: MakeFleet) -> None:
    fleet = make_fleet("signed", hosts=[HostSpec("b1", "bookworm"), HostSpec("t1", "trixie")])
    for host in fleet.hosts:
        setup = fleet.ssh(host, _standin_source(fleet), become=True)
        assert setup.returncode == 0, setup.stderr
        update = fleet.ssh(host, "apt-get update -q", become=True)
        assert update.returncode == 0 and "Err:" not in update.stdout, update.stdout + update.stderr
        policy = fleet.ssh(host, "apt-cache policy libedgetpu1-std libedgetpu1-max")
        assert policy.stdout.count("Candidate: 16.0") == 2, policy.stdout
        # The same repository with a keyring that does not hold its key is refused by apt.
        wrong = fleet.ssh(
            host,
            _standin_source(fleet, "/usr/share/keyrings/debian-archive-keyring.gpg")
            + "apt-get update -q",
            become=True,
        )
        # bookworm's gpgv says NO_PUBKEY <long id>; trixie's sqv says "Missing key <fpr>".
        refusal = wrong.stdout + wrong.stderr
        key_id = fleet.standin_key_fingerprint
        assert f"NO_PUBKEY {key_id[-16:]}" in refusal or f"Missing key {key_id}" in refusal, refusal


def test_max_runtime_needs_the_eula_preseed_and_replaces_std(make_fleet: MakeFleet) -> None:
    fleet = make_fleet("runtime", hosts=[HostSpec("r1", "bookworm")])
    host = fleet.hosts[0]
    apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
    setup = fleet.ssh(host, _standin_source(fleet) + "apt-get update -q", become=True)
    assert setup.returncode == 0, setup.stdout + setup.stderr

    std = fleet.ssh(host, apt + "libedgetpu1-std", become=True)
    assert std.returncode == 0, std.stdout + std.stderr

    refused = fleet.ssh(host, apt + "libedgetpu1-max", become=True)
    assert refused.returncode != 0
    assert "not accepted" in refused.stdout + refused.stderr
    assert _installed(fleet, host.name, "libedgetpu1-max") is False

    max_ok = fleet.ssh(
        host,
        "echo 'libedgetpu1-max libedgetpu/accepted-eula boolean true' | debconf-set-selections"
        f" && {apt} libedgetpu1-max",
        become=True,
    )
    assert max_ok.returncode == 0, max_ok.stdout + max_ok.stderr
    assert _installed(fleet, host.name, "libedgetpu1-max") is True
    assert _installed(fleet, host.name, "libedgetpu1-std") is False
    files = fleet.ssh(
        host,
        "ls /lib/udev/rules.d/ | grep edgetpu; readlink /usr/lib/x86_64-linux-gnu/libedgetpu.so.1",
    )
    assert files.stdout.split() == ["60-libedgetpu1-max.rules", "libedgetpu.so.1.0"]

    # The stand-in library behaves like the real one without a device: NULL + a reported error.
    probe = textwrap.dedent("""\
        import ctypes
        lib = ctypes.CDLL("libedgetpu.so.1")
        seen = []
        CB = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
        cb = CB(lambda msg: seen.append(msg.decode()))
        create = lib.tflite_plugin_create_delegate
        create.restype = ctypes.c_void_p
        create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, CB]
        print(create(None, None, 0, cb), seen[0])
        """)
    out = fleet.ssh(host, f"python3 -c '{probe}'")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("None Failed to open device: no Edge TPU attached")


def _installed(fleet: Fleet, host: str, package: str) -> bool:
    proc = fleet.ssh(host, f"dpkg-query -W -f='${{Status}}' {package}")
    return proc.returncode == 0 and proc.stdout.strip() == "install ok installed"


def test_set_link_makes_a_host_unreachable_and_back(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(
        "link",
        hosts=[HostSpec("l1", "bookworm"), HostSpec("l2", "bookworm")],
        host_vars={"l2": {"coralpi_runtime": "max"}},
    )
    hosts = yaml.safe_load(fleet.inventory_path.read_text())["all"]["children"]["coralpi_fleet"][
        "hosts"
    ]
    assert hosts["l2"]["coralpi_runtime"] == "max" and "coralpi_runtime" not in hosts["l1"]
    assert fleet.ssh("l1", "true").returncode == 0
    fleet.set_link("l1", False)
    start = time.monotonic()
    down = fleet.ssh("l1", "true", timeout=60)
    assert down.returncode == 255
    assert time.monotonic() - start < 15
    assert fleet.ssh("l2", "true").returncode == 0
    fleet.set_link("l1", True)
    assert fleet.ssh("l1", "true").returncode == 0


def _left_over(names: list[str], pids: list[tuple[int, int]], wait: float = 0) -> list[str]:
    """Names and PIDs still present (processes get up to `wait` seconds to be reaped)."""
    deadline = time.monotonic() + wait
    while True:
        left = sorted(set(names) & (set(netns_names()) | set(link_names())))
        left += [f"pid {pid}" for pid, started in pids if ProcRecord("", pid, started).alive()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def test_teardown_leaves_nothing_behind(fleet_support: None, tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "fleet", hosts=[HostSpec("d1", "bookworm"), HostSpec("d2", "trixie")])
    with fleet:
        assert fleet._state is not None
        names = [*fleet._state.netns, *fleet._state.veths, fleet._state.bridge]
        pids = [(p.pid, p.start_time) for p in fleet._state.procs]
        assert len(pids) == 6  # proxy, http, and unshare + namespace init per host
        assert not any(sorted(set(names) - (set(netns_names()) | set(link_names()))))
    assert _left_over(names, pids, wait=10) == []
    assert not (tmp_path / "fleet" / "state.json").exists()


def test_down_cleans_up_after_a_crashed_owner(fleet_support: None, tmp_path: Path) -> None:
    workdir = tmp_path / "crashed"
    owner = subprocess.Popen(
        [sys.executable, "-m", "testfleet", "up", str(workdir), "--host", "c1:bookworm"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (workdir / "fleet.json").exists():
            assert owner.poll() is None, owner.stderr.read() if owner.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        # A crash that takes the fleet's guardian down too (alone, the owner's death makes the
        # guardian tear the fleet down, see test_fleet_signals.py): what `down` is for.
        if (workdir / "state.json").exists():
            guardian = json.loads((workdir / "state.json").read_text())["guardian"]
            ProcRecord.from_dict(guardian).signal(signal.SIGKILL)
        owner.send_signal(signal.SIGKILL)  # the owner dies without tearing down
        owner.wait()
    state = json.loads((workdir / "state.json").read_text())
    names = [*state["netns"], *state["veths"], state["bridge"]]
    pids = [(p["pid"], p["start_time"]) for p in state["procs"]]
    assert _left_over(names, pids) != [], "the killed owner should have left its fleet running"
    status = subprocess.run(
        [sys.executable, "-m", "testfleet", "status", str(workdir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "stale" in status.stdout
    down = subprocess.run(
        [sys.executable, "-m", "testfleet", "down", str(workdir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert _left_over(names, pids, wait=10) == []


def test_inventory_points_the_toolkit_at_the_standins(fleet: Fleet) -> None:
    group = yaml.safe_load(fleet.inventory_path.read_text())["all"]["children"]["coralpi_fleet"]
    assert list(group["hosts"]) == [h.name for h in fleet.hosts]
    for host in fleet.hosts:
        entry = group["hosts"][host.name]
        assert entry["ansible_host"] == host.address
        assert entry["ansible_user"] == "pi" and entry["ansible_become"] is True
        assert Path(entry["ansible_ssh_private_key_file"]).is_file()
        assert "StrictHostKeyChecking=no" in entry["ansible_ssh_common_args"]
        assert f"ControlPath={fleet.control_dir}/" in entry["ansible_ssh_common_args"]
    assert group["vars"]["coralpi_coral_repo_url"] == fleet.urls["coral_apt"]
    assert group["vars"]["coralpi_community_runtime_url"] == fleet.urls["community"]
    assert group["vars"]["coralpi_apt_proxy"] == fleet.urls["apt_proxy"]
    assert group["vars"]["coralpi_coral_key_fingerprints"] == [fleet.standin_key_fingerprint]


def test_smoke_assets_are_served_like_upstream(fleet: Fleet) -> None:
    """/test_data/<commit>/<file> serves the bytes SOURCES.md pins, to the hosts too."""
    assets = read_sources(testdata_dir())
    assert {a.name for a in assets} >= {"parrot.jpg", "inat_bird_labels.txt"}
    for asset in assets:
        url = f"{fleet.urls['test_data']}/{asset.commit}/{asset.name}"
        fetch = (
            f"import urllib.request,hashlib; d=urllib.request.urlopen('{url}').read(); "
            "print(len(d), hashlib.sha256(d).hexdigest())"
        )
        proc = fleet.ssh(fleet.hosts[0], f'python3 -c "{fetch}"')
        assert proc.stdout.split() == [str(asset.size), asset.sha256], (asset.name, proc.stderr)


def test_community_debs_are_named_like_the_releases(fleet: Fleet) -> None:
    assert fleet.standin is not None
    for variant in ("std", "max"):
        deb = fleet.standin.community_deb(variant)
        assert deb.name == f"libedgetpu1-{variant}_16.0tf2.17.1-1.bookworm_amd64.deb"
        fields = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Package", "Version", "Provides", "Conflicts", "Replaces"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"Package: libedgetpu1-{variant}" in fields
        assert "Version: 16.0tf2.17.1-1.bookworm" in fields
        assert "Conflicts: libedgetpu1" in fields and "Replaces: libedgetpu1" in fields
        newer = subprocess.run(
            ["dpkg", "--compare-versions", "16.0tf2.17.1-1.bookworm", "gt", "16.0"], check=False
        )
        assert newer.returncode == 0


def test_mirror_is_read_from_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: x\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: x\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n"
    )
    assert debian_mirror(tmp_path) == "http://old.example/debian"


@pytest.mark.skipif(not can_emulate("arm64"), reason="needs qemu-user-static for arm64")
def test_a_foreign_rootfs_build_holds_the_qemu_registration_itself(
    fleet_support: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller with no arm64 fleet up (the image build) gets an arm64 tree built: the
    build registers qemu for its second stage, and lets go when it ends, failed or not."""
    seen: list[bool] = []
    closed: list[list[str]] = []

    class Recording(BinfmtUse):
        def close(self) -> None:
            closed.append(sorted(self.arches))
            super().close()

    def second_stage_would_run(*_: object) -> None:
        seen.append((BINFMT / entry_name("arm64")).exists())
        raise FleetError("stopped before debootstrap (this test)")

    monkeypatch.setattr(rootfs, "BinfmtUse", Recording)
    monkeypatch.setattr(rootfs, "_build_in", second_stage_would_run)
    with pytest.raises(FleetError, match="this test"):
        rootfs.ensure_rootfs(rootfs.recipe_for("bookworm", "arm64"), tmp_path)
    assert seen == [True]
    assert closed == [["arm64"]]


def test_arm64_packages_are_served_and_max_is_missing_from_the_pool(make_fleet: MakeFleet) -> None:
    """The stand-in repository's arm64 side, read by apt as an arm64 host would (apt told
    its architecture is arm64, with its own lists and cache in a scratch directory, so the
    amd64 host's own apt state is not touched). An emulated host is proven by the arm fleet
    (armhf) and the arm64 image build; what is arm64-specific here is the repository."""
    fleet = make_fleet("arm64repo", hosts=[HostSpec("a1", "bookworm")])
    host = fleet.hosts[0]
    scratch = "/tmp/arm64-apt"
    options = (
        "-o APT::Architecture=arm64 -o APT::Architectures=arm64"
        f" -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts={scratch}/sources"
        f" -o Dir::State::Lists={scratch}/lists -o Dir::Cache={scratch}/cache"
    )
    apt = f"apt-get -q {options}"
    setup = fleet.ssh(
        host,
        _standin_source(fleet)
        + f"mkdir -p {scratch}/sources {scratch}/lists/partial {scratch}/cache/archives/partial"
        f" {scratch}/debs && mv /etc/apt/sources.list.d/coral-standin.sources {scratch}/sources/"
        f" && {apt} update",
        become=True,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    listed = fleet.ssh(host, f"apt-cache {options} show libedgetpu1-max")
    assert "Architecture: arm64" in listed.stdout, listed.stdout + listed.stderr
    std = fleet.ssh(host, f"cd {scratch}/debs && {apt} download libedgetpu1-std", become=True)
    assert std.returncode == 0, std.stdout + std.stderr
    files = fleet.ssh(host, f"dpkg-deb -c {scratch}/debs/libedgetpu1-std_*_arm64.deb")
    assert files.returncode == 0, files.stderr
    assert "./usr/lib/aarch64-linux-gnu/libedgetpu.so.1.0" in files.stdout
    # As reported for the real repository: max for arm64 is in the index, not in the pool.
    max_ = fleet.ssh(host, f"cd {scratch}/debs && {apt} download libedgetpu1-max", become=True)
    assert max_.returncode != 0 and "404" in max_.stdout + max_.stderr, max_.stdout
