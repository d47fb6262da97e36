"""Artifacts end to end: lock, fetch and per-host artifacts against local HTTP servers.

Stand-ins (the real sources cannot be reached from the test machine):
- the smoke-test assets are the real files from ../shared/testdata/coral, served from
  127.0.0.1 in Coral's test_data layout (`<commit>/<file>`);
- the community runtime .debs are STAND-IN packages named like the real files
  (testfleet/standin_deb.py: their control fields and debconf templates are those of the
  community packages, read by the real code; the payload is empty, not a runtime);
- the Coral apt key is a key this test generates (the fingerprint check is real), and it
  signs a STAND-IN of Coral's repository index (`standin_coral_index`: InRelease, Packages,
  stand-in .debs in its pool) whose chain of sha256s the real code checks;
- the Pi's ansible-core wheel (locked for first-boot bundles) is a STAND-IN file named like
  the real one, found by a stand-in of the index look-up (`standin_pi_ansible`); the
  lock, reuse and fetch code around it is the real one.
Tests marked `pypi` download real wheels from PyPI (the real ansible-core wheel included).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from provision.artifacts import lockfile, pi_ansible
from provision.artifacts import service as artifacts
from provision.artifacts.cache import ArtifactCache, ArtifactError, HashMismatch
from provision.artifacts.downloads import Source
from provision.artifacts.elf_needs import WheelNeedsError
from provision.artifacts.service import (
    ArtifactSettings,
    HostArtifacts,
    build_lock,
    ensure_host_artifacts,
    fetch_lock,
    playbook_plan,
)
from provision.planning.matrix import resolve
from provision.planning.plan import Plan
from provision.planning.targets import Choices, Target
from testfleet import standin_deb, standin_elf
from verify import checks, expected
from verify.assets import PINNED, SMOKE_FILES
from verify.facts import AptSource, Keyring, SystemFacts, openpgp_fingerprints

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / ".." / "shared" / "testdata" / "coral"
DEB_STD = "libedgetpu1-std_16.0tf2.17.1-1.bookworm_amd64.deb"
DEB_MAX = "libedgetpu1-max_16.0tf2.17.1-1.bookworm_amd64.deb"
#: trixie gets the community release's own trixie build (a second platform of the lock).
DEBS_TRIXIE = (
    "libedgetpu1-std_16.0tf2.19.1-1.trixie_amd64.deb",
    "libedgetpu1-max_16.0tf2.19.1-1.trixie_amd64.deb",
)
#: The PCIe driver's file name; what the loopback server serves under it is a stand-in.
DRIVER_DEB = "gasket-dkms_1.0-18.4_all.deb"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up early (a refused download) is expected here


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bytes, str, Path]]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    gpg = ["gpg", "--batch", "--quiet", "--passphrase", "", "--pinentry-mode", "loopback"]
    try:
        subprocess.run(
            [
                *gpg,
                "--quick-generate-key",
                "Stand-in Coral <coral@example.invalid>",
                "ed25519",
                "sign",
                "never",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            [*gpg, "--list-keys", "--with-colons"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))
        armored = subprocess.run(
            [*gpg, "--armor", "--export", fpr], env=env, check=True, capture_output=True
        ).stdout
        yield armored, fpr, home
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


@pytest.fixture()
def upstream(tmp_path: Path, gpg_key: tuple[bytes, str, Path]) -> Iterator[dict[str, Any]]:
    """A loopback HTTP server with the assets, stand-in runtime .debs, the key file and a
    signed stand-in of Coral's repository index (arm64: std in the pool, max listed but
    missing from it, as reported for the real one)."""
    if not TESTDATA.is_dir():
        pytest.skip(f"{TESTDATA} is missing")
    docroot = tmp_path / "www"
    for name in SMOKE_FILES:
        pin = PINNED[name]
        dest = docroot / "test_data" / pin.commit / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(TESTDATA.resolve() / name)
    debs = docroot / "runtime"
    debs.mkdir()
    for name in (DEB_STD, DEB_MAX, *DEBS_TRIXIE):
        variant, version = name.split("_")[0].rsplit("-")[-1], name.split("_")[1]
        standin_deb.build(debs / name, variant, version=version, pad=1000)
    (docroot / "gasket").mkdir()
    (docroot / "gasket" / DRIVER_DEB).write_bytes(b"stand-in gasket-dkms payload\n" * 100)
    (docroot / "apt" / "doc").mkdir(parents=True)
    (docroot / "apt" / "doc" / "apt-key.gpg").write_bytes(gpg_key[0])
    standin_coral_index(docroot / "apt", gpg_key[2], gpg_key[1])
    server = _QuietServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(docroot))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    sha = {
        n: hashlib.sha256((debs / n).read_bytes()).hexdigest()
        for n in (DEB_STD, DEB_MAX, *DEBS_TRIXIE)
    }
    driver_sha = hashlib.sha256((docroot / "gasket" / DRIVER_DEB).read_bytes()).hexdigest()
    try:
        yield {
            "base": base,
            "docroot": docroot,
            "fingerprint": gpg_key[1],
            "vars": {
                "coralpi_assets_url": f"{base}/test_data",
                "coralpi_community_runtime_url": f"{base}/runtime",
                "coralpi_coral_repo_url": f"{base}/apt",
                "coralpi_coral_key_fingerprints": [gpg_key[1]],
                "coralpi_gasket_dkms_url": f"{base}/gasket",
            },
            "pins": {
                **{f"{base}/runtime/{n}": s for n, s in sha.items()},
                f"{base}/gasket/{DRIVER_DEB}": driver_sha,
            },
            "driver_sha": driver_sha,
            "gnupg_home": gpg_key[2],
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


#: Coral's repository layout (pool path of its .debs).
CORAL_POOL = "pool/main/libe/libedgetpu"


def standin_coral_index(repo: Path, home: Path, fingerprint: str) -> None:
    """A STAND-IN of Coral's signed index under ``repo``: stand-in .debs in its pool
    (libedgetpu1-std 16.0 arm64; max arm64 listed, its pool file missing), a Packages index
    naming their sha256, a Release naming the index's, clear-signed as InRelease."""
    pool = repo / CORAL_POOL
    pool.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for variant in ("std", "max"):
        name = f"libedgetpu1-{variant}_16.0_arm64.deb"
        deb = standin_deb.build(pool / name, variant, version="16.0", arch="arm64", pad=500)
        data = deb.read_bytes()
        stanzas.append(
            standin_deb.control_text(variant, "16.0", "arm64")
            + f"Filename: {CORAL_POOL}/{name}\nSize: {len(data)}\n"
            + f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
        if variant == "max":
            deb.unlink()  # listed in the index, missing from the pool
    write_signed_index(repo, "\n".join(stanzas), home, fingerprint)


def write_signed_index(repo: Path, packages: str, home: Path, fingerprint: str) -> None:
    dist = repo / "dists" / "coral-edgetpu-stable"
    (dist / "main" / "binary-arm64").mkdir(parents=True, exist_ok=True)
    (dist / "main" / "binary-arm64" / "Packages").write_text(packages)
    data = packages.encode()
    release = (
        "Origin: coral-edgetpu-stable (STAND-IN)\nSuite: coral-edgetpu-stable\n"
        "Components: main\nArchitectures: arm64\nSHA256:\n"
        f" {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-arm64/Packages\n"
    )
    (dist / "InRelease").unlink(missing_ok=True)
    subprocess.run(
        [
            *("gpg", "--batch", "--quiet", "--local-user", fingerprint, "--clearsign"),
            *("--output", str(dist / "InRelease")),
        ],
        input=release.encode(),
        env=dict(os.environ, GNUPGHOME=str(home)),
        check=True,
        capture_output=True,
    )


standin_lookups: list[str] = []


@pytest.fixture(autouse=True)
def standin_pi_ansible(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside `pypi` tests the index look-up for the Pi's ansible-core wheel is a STAND-IN:
    a file named like the real wheel, served by the test's `upstream` (else a file:// URL),
    with its sha256 as an index publishes it; the real code downloads, checks and caches it."""
    if request.node.get_closest_marker("pypi"):
        return
    standin_lookups.clear()
    served = request.getfixturevalue("upstream") if "upstream" in request.fixturenames else None

    def resolve_standin(
        choice: pi_ansible.PiAnsible, plan: Plan, cache: ArtifactCache, pins: Any
    ) -> lockfile.Artifact:
        standin_lookups.append(choice.version)
        name = f"ansible_core-{choice.version}-py3-none-any.whl"
        docroot = served["docroot"] if served else tmp_path
        path = docroot / "standin-index" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"STAND-IN ansible-core wheel " + choice.version.encode())
        url = f"{served['base']}/standin-index/{name}" if served else path.as_uri()
        published = hashlib.sha256(path.read_bytes()).hexdigest()
        got = artifacts.downloads.fetch(
            cache, Source("wheel", name, url, pins.get(url) or published, "coralpi_pip_index_url")
        )
        return lockfile.Artifact(
            "wheel", name, choice.version, url, got.sha256, got.size, pi_ansible.lock_reason(choice)
        )

    monkeypatch.setattr(pi_ansible, "resolve_artifact", resolve_standin)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def plan_for(
    codename: str, arch: str, python: str, glibc: str, *, wheels: bool = False, **choices: Any
) -> Plan:
    plan = resolve(Target("debian", codename, arch, python, glibc), Choices(**choices))
    if not wheels:  # keep PyPI out of tests not marked `pypi`
        plan = dataclasses.replace(plan, pip_requirements=())
    return plan


def bookworm_amd64(**kw: Any) -> Plan:
    return plan_for("bookworm", "x86_64", "3.11", "2.36", **kw)


def settings(upstream: dict[str, Any], **extra: Any) -> ArtifactSettings:
    return ArtifactSettings.from_vars({**upstream["vars"], **extra})


def _pinned_lock(
    upstream: dict[str, Any], cache: ArtifactCache, plans: list[Plan], **extra: Any
) -> lockfile.Lock:
    s = settings(upstream, **extra)
    return build_lock([(p, s) for p in plans], cache, extra_pins=upstream["pins"])


# ------------------------------------------------------------------------ lock


def test_lock_pins_debs_assets_and_is_byte_stable(upstream: dict[str, Any], tmp_path: Path) -> None:
    cache = ArtifactCache.open(tmp_path / "cache")
    lock = _pinned_lock(upstream, cache, [bookworm_amd64()])
    path = tmp_path / "coralpi.lock"
    assert lockfile.write_if_changed(path, lock)
    text = path.read_text()
    (plat,) = lock.platforms.values()
    assert plat.id == "bookworm/x86_64/python3.11/opencv-apt"
    debs = {a.name: a for a in plat.artifacts if a.kind == "deb"}
    assert set(debs) == {DEB_STD, DEB_MAX}
    for name, art in debs.items():
        assert art.sha256 == upstream["pins"][art.url]
        assert art.size == (upstream["docroot"] / "runtime" / name).stat().st_size
        assert art.reason.startswith("runtime: ")
    assets = {a.name: a for a in lock.shared if a.kind == "asset"}
    assert set(assets) == set(SMOKE_FILES)
    assert assets["parrot.jpg"].sha256 == PINNED["parrot.jpg"].sha256
    assert assets["parrot.jpg"].url.endswith(f"/{PINNED['parrot.jpg'].commit}/parrot.jpg")
    assert not any(a.kind == "apt-key" for a in lock.shared)  # community runtime: no Coral key

    # Same inputs again: nothing is downloaded, the file is not rewritten.
    stat = path.stat()
    downloaded = cache.stats.files_downloaded
    again = build_lock(
        [(bookworm_amd64(), settings(upstream))], cache, previous=lockfile.read(path)
    )
    assert cache.stats.files_downloaded == downloaded
    assert lockfile.write_if_changed(path, again) is False
    assert path.read_text() == text
    assert path.stat().st_mtime_ns == stat.st_mtime_ns


def test_lock_records_the_pis_ansible_once_and_fetch_gets_it(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    """The ansible-core wheel a first-boot bundle or golden image installs is a lock entry
    (STAND-IN wheel, see standin_pi_ansible): recorded once, kept, fetched like the rest."""
    cache = ArtifactCache.open(tmp_path / "cache")
    version = pi_ansible.controller_version()
    lock = _pinned_lock(upstream, cache, [bookworm_amd64(), bookworm_amd64(opencv="pip")])
    entries = [a for a in lock.shared if pi_ansible.is_pi_ansible(a)]
    assert [a.name for a in entries] == [f"ansible_core-{version}-py3-none-any.whl"]
    art = entries[0]
    assert art.version == version and "image prepare/build" in art.reason
    assert "Debian's python3-yaml" in art.reason
    assert cache.path("wheel", art.sha256, art.name).is_file()
    assert standin_lookups == [version], "one look-up for the whole fleet"
    assert f'name = "{art.name}"' in lockfile.render(lock)

    again = build_lock([(bookworm_amd64(), settings(upstream))], cache, previous=lock)
    assert [a for a in again.shared if pi_ansible.is_pi_ansible(a)] == [art]
    assert standin_lookups == [version], "an unchanged lock entry needs no look-up"

    fresh = ArtifactCache.open(tmp_path / "fresh")
    got = fetch_lock(lock, fresh)
    assert got.shared_wheels == [fresh.path("wheel", art.sha256, art.name)]
    assert got.shared_wheels[0].read_bytes().startswith(b"STAND-IN ansible-core")


def test_no_ansible_entry_for_a_platform_no_bundle_serves(tmp_path: Path) -> None:
    """Bullseye's Python 3.9 cannot run the controller's ansible-core as its own controller,
    so no first-boot bundle serves it and its lock needs no Ansible wheel."""
    cache = ArtifactCache.open(tmp_path / "cache")
    bullseye = plan_for("bullseye", "x86_64", "3.9", "2.31")
    assert pi_ansible.lock_entry(bullseye, cache, {}, None) is None
    assert standin_lookups == []
    assert pi_ansible.lock_entry(bookworm_amd64(), cache, {}, None) is not None


def test_plain_http_deb_without_pin_is_refused(upstream: dict[str, Any], tmp_path: Path) -> None:
    cache = ArtifactCache.open(tmp_path / "cache")
    with pytest.raises(ArtifactError, match="plain http") as err:
        build_lock([(bookworm_amd64(), settings(upstream))], cache)
    assert "sha256 pin" in str(err.value)
    assert not list((tmp_path / "cache").glob("deb/*/*"))


def test_changed_upstream_bytes_are_refused(upstream: dict[str, Any], tmp_path: Path) -> None:
    cache = ArtifactCache.open(tmp_path / "cache")
    lock = _pinned_lock(upstream, cache, [bookworm_amd64()])
    (upstream["docroot"] / "runtime" / DEB_STD).write_bytes(b"something else")
    fresh = ArtifactCache.open(tmp_path / "other-cache")
    with pytest.raises(HashMismatch) as err:
        fetch_lock(lock, fresh)
    text = str(err.value)
    assert DEB_STD in text and upstream["pins"][f"{upstream['base']}/runtime/{DEB_STD}"] in text
    assert hashlib.sha256(b"something else").hexdigest() in text
    assert not list((tmp_path / "other-cache").glob(f"deb/*/{DEB_STD}"))


def test_a_source_sending_more_than_the_pinned_size_is_cut_off(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    cache = ArtifactCache.open(tmp_path / "cache")
    lock = _pinned_lock(upstream, cache, [bookworm_amd64()])
    (upstream["docroot"] / "runtime" / DEB_MAX).write_bytes(b"x" * 10_000_000)
    fresh = ArtifactCache.open(tmp_path / "fresh")
    with pytest.raises(HashMismatch, match="longer than the pinned"):
        fetch_lock(lock, fresh)
    assert fresh.stats.bytes_downloaded == 0
    assert not list((tmp_path / "fresh" / "tmp").iterdir())  # the partial file is gone


# ------------------------------------------------------------------------ fetch / cache


def test_fetch_downloads_once_then_reuses_and_refuses_tampering(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    lock = _pinned_lock(upstream, ArtifactCache.open(tmp_path / "lock-cache"), [bookworm_amd64()])
    cache = ArtifactCache.open(tmp_path / "cache")
    first = fetch_lock(lock, cache)
    expected = sum(a.size for a in lock.all_artifacts())
    assert first.bytes_downloaded == expected
    assert first.assets is not None
    for name in SMOKE_FILES:
        data = (first.assets / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == PINNED[name].sha256

    second = fetch_lock(lock, cache)
    assert second.bytes_downloaded == 0 and second.files_downloaded == 0

    victim = cache.path("asset", PINNED["parrot.jpg"].sha256, "parrot.jpg")
    victim.chmod(0o644)
    with victim.open("r+b") as fh:
        fh.write(b"XX")
    tampered = hashlib.sha256(victim.read_bytes()).hexdigest()
    with pytest.raises(HashMismatch) as err:
        fetch_lock(lock, cache)
    text = str(err.value)
    assert str(victim) in text and PINNED["parrot.jpg"].sha256 in text and tampered in text
    assert not victim.exists()  # deleted, never used
    third = fetch_lock(lock, cache)  # a new fetch gets the right bytes again
    assert third.files_downloaded == 1
    assert victim.exists()


def test_unreachable_mirrors_name_their_setting(tmp_path: Path) -> None:
    port = closed_port()
    cache = ArtifactCache.open(tmp_path / "cache")
    cases = [
        (
            "coralpi_community_runtime_url",
            bookworm_amd64(),
            {"coralpi_community_runtime_url": f"https://127.0.0.1:{port}/rt"},
        ),
        (
            "coralpi_coral_repo_url",
            plan_for("bullseye", "aarch64", "3.9", "2.31"),
            {"coralpi_coral_repo_url": f"http://127.0.0.1:{port}/apt"},
        ),
    ]
    for setting, plan, variables in cases:
        with pytest.raises(ArtifactError) as err:
            build_lock([(plan, ArtifactSettings.from_vars(variables))], cache)
        text = str(err.value)
        assert setting in text and "cannot reach" in text and f"127.0.0.1:{port}" in text
    lock = lockfile.Lock(
        shared=tuple(
            artifacts.asset_artifacts(ArtifactSettings(assets_url=f"http://127.0.0.1:{port}/td"))
        )
    )
    with pytest.raises(ArtifactError, match="coralpi_assets_url") as err:
        fetch_lock(lock, cache)
    assert "connection refused" in str(err.value)


# ------------------------------------------------------------------------ per host


def test_fleet_of_one_platform_costs_one_download(upstream: dict[str, Any], tmp_path: Path) -> None:
    def run(hosts: int, root: Path) -> tuple[int, list[HostArtifacts]]:
        cache = ArtifactCache.open(root)
        lock_path = tmp_path / f"{root.name}.lock"
        lockfile.write_if_changed(
            lock_path,
            _pinned_lock(upstream, ArtifactCache.open(tmp_path / "lock-cache"), [bookworm_amd64()]),
        )
        out = [
            ensure_host_artifacts(bookworm_amd64(), upstream["vars"], cache, lock_path=lock_path)
            for _ in range(hosts)
        ]
        return cache.stats.bytes_downloaded, out

    one, _ = run(1, tmp_path / "c1")
    three, results = run(3, tmp_path / "c3")
    assert one == three > 0
    art = results[0]
    assert results[1] == results[2] == art
    assert set(art.to_dict()) == {
        "wheels_dir",
        "runtime_debs",
        "runtime_debconf",
        "coral_keyring",
        "verify_assets",
        "verify_package",
        "driver_deb",
        "coral_key_fingerprints",
    }
    # the questions the role answers come from the max .deb's own templates
    assert art.to_dict()["runtime_debconf"] == {"max": ["libedgetpu/accepted-eula"], "std": []}
    assert art.runtime_debs["std"].name == DEB_STD
    assert art.runtime_debs["max"].name == DEB_MAX
    assert art.coral_keyring is None and art.to_dict()["coral_keyring"] == ""
    assert art.to_dict()["coral_key_fingerprints"] == []
    assert sorted(os.listdir(art.verify_assets)) == sorted(SMOKE_FILES)
    assert os.listdir(art.wheels_dir) == []


def test_a_mirror_chosen_after_locking_serves_the_pinned_files(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    lock_path = tmp_path / "coralpi.lock"
    lockfile.write_if_changed(
        lock_path,
        _pinned_lock(upstream, ArtifactCache.open(tmp_path / "lock-cache"), [bookworm_amd64()]),
    )
    before = lock_path.read_bytes()
    (upstream["docroot"] / "mirror").symlink_to(upstream["docroot"] / "runtime")
    moved = {**upstream["vars"], "coralpi_community_runtime_url": f"{upstream['base']}/mirror"}
    art = ensure_host_artifacts(bookworm_amd64(), moved, tmp_path / "cache", lock_path=lock_path)
    assert art.runtime_debs["std"].name == DEB_STD
    assert lock_path.read_bytes() == before
    # The mirror serving other bytes under the pinned name is refused.
    (upstream["docroot"] / "mirror").unlink()
    (upstream["docroot"] / "mirror").mkdir()
    for name in (DEB_STD, DEB_MAX):
        (upstream["docroot"] / "mirror" / name).write_bytes(b"not the pinned file")
    with pytest.raises(HashMismatch):
        ensure_host_artifacts(bookworm_amd64(), moved, tmp_path / "cache-2", lock_path=lock_path)


def test_coral_apt_plan_gets_a_fingerprint_checked_keyring(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    plan = plan_for("bullseye", "aarch64", "3.9", "2.31")
    assert plan.runtime.source == "coral-apt"
    lock_path = tmp_path / "coralpi.lock"
    art = ensure_host_artifacts(plan, upstream["vars"], tmp_path / "cache", lock_path=lock_path)
    # Coral's own .deb is pinned from the signed index (max is missing from the pool: left out)
    assert list(art.runtime_debs) == ["std"]
    assert art.coral_keyring is not None
    ring = art.coral_keyring.read_bytes()
    assert ring and not ring.startswith(b"-----BEGIN")
    lock = lockfile.read(lock_path)
    (key,) = [a for a in lock.shared if a.kind == "apt-key"]
    assert key.version == upstream["fingerprint"]
    assert key.url == f"{upstream['base']}/apt/doc/apt-key.gpg"
    # verify on the host judges its keyring by what the lock accepted (through the plan, as
    # through the local fact), not by a list of its own: the stand-in key passes there.
    assert art.to_dict()["coral_key_fingerprints"] == [upstream["fingerprint"]]
    exp = expected.from_plan(playbook_plan(plan, art), "plan")
    ring_file = "/etc/apt/keyrings/coral-edgetpu.gpg"
    host = SystemFacts(
        apt_sources=[AptSource("coral.sources", [key.url], ["coral-edgetpu-stable"], ring_file)],
        keyrings={ring_file: Keyring(ring_file, openpgp_fingerprints(ring))},
    )
    judged = checks.check_apt_source(host, exp)
    assert judged.status == "pass" and upstream["fingerprint"] in judged.detail, judged
    # `coralpi fetch` elsewhere trusts the fingerprint the lock recorded.
    fetched = fetch_lock(lock, ArtifactCache.open(tmp_path / "elsewhere"))
    (ring_path,) = fetched.keyrings
    assert ring_path.read_bytes() == ring

    # The default accepted list does not hold the stand-in key: refused, found key listed.
    with pytest.raises(ArtifactError) as err:
        ensure_host_artifacts(
            plan,
            {k: v for k, v in upstream["vars"].items() if k != "coralpi_coral_key_fingerprints"},
            tmp_path / "cache2",
        )
    assert upstream["fingerprint"] in str(err.value)
    assert "Found:" in str(err.value)


def test_coral_debs_are_pinned_by_the_signed_index_and_survive_the_repository(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    plan = plan_for("bullseye", "aarch64", "3.9", "2.31")
    lock_path = tmp_path / "coralpi.lock"
    art = ensure_host_artifacts(plan, upstream["vars"], tmp_path / "cache", lock_path=lock_path)
    pool = upstream["docroot"] / "apt" / CORAL_POOL
    served = (pool / "libedgetpu1-std_16.0_arm64.deb").read_bytes()
    assert art.runtime_debs["std"].read_bytes() == served
    (plat,) = lockfile.read(lock_path).platforms.values()
    (deb,) = [a for a in plat.artifacts if a.kind == "deb"]
    assert deb.sha256 == hashlib.sha256(served).hexdigest() and deb.version == "16.0"
    assert deb.url == f"{upstream['base']}/apt/{CORAL_POOL}/libedgetpu1-std_16.0_arm64.deb"
    assert "signed index" in deb.reason and upstream["fingerprint"] in deb.reason
    assert deb.deb is not None and deb.deb.package == "libedgetpu1-std"  # read from the .deb
    # The repository's index is gone; a mirror of its pool serves the pinned file.
    shutil.rmtree(upstream["docroot"] / "apt" / "dists")
    mirror = upstream["docroot"] / "coral-mirror"
    shutil.copytree(upstream["docroot"] / "apt", mirror)
    moved = {**upstream["vars"], "coralpi_coral_repo_url": f"{upstream['base']}/coral-mirror"}
    again = ensure_host_artifacts(plan, moved, tmp_path / "cache-2", lock_path=lock_path)
    assert again.runtime_debs["std"].read_bytes() == served
    # ... and a mirror serving other bytes under that name is refused.
    (mirror / CORAL_POOL / "libedgetpu1-std_16.0_arm64.deb").write_bytes(b"not the pinned .deb")
    with pytest.raises(HashMismatch, match=r"libedgetpu1-std_16\.0_arm64\.deb"):
        ensure_host_artifacts(plan, moved, tmp_path / "cache-3", lock_path=lock_path)


def test_a_tampered_coral_deb_or_index_is_refused(upstream: dict[str, Any], tmp_path: Path) -> None:
    plan = plan_for("bullseye", "aarch64", "3.9", "2.31")
    repo = upstream["docroot"] / "apt"
    deb = repo / CORAL_POOL / "libedgetpu1-std_16.0_arm64.deb"
    # a .deb whose bytes are not what the signed index says
    original = deb.read_bytes()
    standin_deb.build(deb, "std", version="16.0", arch="arm64", pad=501)
    with pytest.raises(HashMismatch, match=r"libedgetpu1-std_16\.0_arm64\.deb"):
        ensure_host_artifacts(plan, upstream["vars"], tmp_path / "c1")
    deb.write_bytes(original)
    # an index changed after signing: its sha256 no longer matches the signed Release
    packages = repo / "dists" / "coral-edgetpu-stable" / "main" / "binary-arm64" / "Packages"
    packages.write_text(packages.read_text().replace("Version: 16.0", "Version: 16.0 ", 1))
    with pytest.raises(HashMismatch, match="Packages"):
        ensure_host_artifacts(plan, upstream["vars"], tmp_path / "c2")
    # an index signed by another key than the accepted one
    other = tmp_path / "other-gnupg"
    other.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(other))
    subprocess.run(
        [
            *("gpg", "--batch", "--quiet", "--passphrase", "", "--pinentry-mode", "loopback"),
            *("--quick-generate-key", "Not Coral <x@example.invalid>", "ed25519", "sign", "never"),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        write_signed_index(repo, packages.read_text(), other, "Not Coral")
        with pytest.raises(artifacts.coral_repo.CoralIndexError, match="not signed by"):
            ensure_host_artifacts(plan, upstream["vars"], tmp_path / "c3")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(other), "--kill", "all"], check=False)


def test_pins_by_file_name_trust_a_plain_http_mirror_without_a_lock(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    by_name = {url.rsplit("/", 1)[1]: sha for url, sha in upstream["pins"].items()}
    s = ArtifactSettings.from_vars(upstream["vars"], cache_dir=tmp_path / "cache", pins=by_name)
    art = ensure_host_artifacts(bookworm_amd64(), s)
    for variant, name in (("std", DEB_STD), ("max", DEB_MAX)):
        path = art.runtime_debs[variant]
        assert path.is_relative_to(tmp_path / "cache")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == by_name[name]


def test_max_runtime_plan_keeps_both_debs(upstream: dict[str, Any], tmp_path: Path) -> None:
    plan = bookworm_amd64(runtime="max", accept_max_eula=True)
    assert plan.runtime.package == "libedgetpu1-max"
    lock = _pinned_lock(upstream, ArtifactCache.open(tmp_path / "c"), [plan])
    (plat,) = lock.platforms.values()
    debs = {a.name for a in plat.artifacts if a.kind == "deb"}
    assert debs == {DEB_STD, DEB_MAX}


def pcie_plan(codename: str = "bookworm") -> Plan:
    """A Pi 5 with the M.2 Coral (an x86_64 userland stands in for arm64: no wheels)."""
    python, glibc = {"bookworm": ("3.11", "2.36"), "trixie": ("3.13", "2.41")}[codename]
    plan = resolve(
        Target("debian", codename, "x86_64", python, glibc, PI5), Choices(accelerator="pcie")
    )
    return dataclasses.replace(plan, pip_requirements=())


def test_the_pcie_driver_deb_is_pinned_once_for_every_platform(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    cache = ArtifactCache.open(tmp_path / "c")
    lock = _pinned_lock(upstream, cache, [pcie_plan(), pcie_plan("trixie"), bookworm_amd64()])
    (driver,) = [a for a in lock.shared if a.kind == "deb"]
    assert (driver.name, driver.version, driver.sha256) == (
        DRIVER_DEB,
        "1.0-18.4",
        upstream["driver_sha"],
    )
    assert driver.url == f"{upstream['base']}/gasket/{DRIVER_DEB}"
    assert "pcie driver: gasket-dkms 1.0-18.4" in driver.reason
    assert lockfile.parse(lockfile.render(lock)) == lock
    lock_path = tmp_path / "coralpi.lock"
    lockfile.write_if_changed(lock_path, lock)
    fresh = ArtifactCache.open(tmp_path / "host-cache")
    arts = ensure_host_artifacts(pcie_plan(), upstream["vars"], fresh, lock_path=lock_path)
    assert arts.driver_deb is not None
    assert hashlib.sha256(arts.driver_deb.read_bytes()).hexdigest() == upstream["driver_sha"]
    assert arts.to_dict()["driver_deb"] == str(arts.driver_deb)
    usb = ensure_host_artifacts(bookworm_amd64(), upstream["vars"], fresh, lock_path=lock_path)
    assert usb.driver_deb is None and usb.to_dict()["driver_deb"] == ""
    # tampered bytes behind the same URL are refused against the lock's pin
    (upstream["docroot"] / "gasket" / DRIVER_DEB).write_bytes(b"something else")
    with pytest.raises(HashMismatch):
        ensure_host_artifacts(
            pcie_plan(), upstream["vars"], ArtifactCache.open(tmp_path / "c3"), lock_path=lock_path
        )


def test_an_unpinned_driver_deb_over_plain_http_is_refused_naming_its_setting(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    runtime_pins = {u: h for u, h in upstream["pins"].items() if DRIVER_DEB not in u}
    only_runtime = ArtifactSettings.from_vars(upstream["vars"], pins=runtime_pins)
    with pytest.raises(ArtifactError, match="coralpi_gasket_dkms_url") as err:
        ensure_host_artifacts(pcie_plan(), only_runtime, ArtifactCache.open(tmp_path / "c"))
    assert DRIVER_DEB in str(err.value)


def test_cli_lock_unreachable_mirror_exits_1_without_traceback(tmp_path: Path) -> None:
    if not (ROOT / "provision" / "cli.py").exists():
        pytest.skip("provision/cli.py is not there yet")
    port = closed_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provision",
            "lock",
            "--platform",
            "bookworm/x86_64/3.11",
            "-e",
            f"coralpi_community_runtime_url=https://127.0.0.1:{port}/rt",
            "--lock",
            str(tmp_path / "coralpi.lock"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "coralpi_community_runtime_url" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "coralpi.lock").exists()


# ------------------------------------------------------------------------ real PyPI


def _local_platform_id() -> str:
    """What the probe of inventory/localhost.yml should find on this machine."""
    import platform

    release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    py = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    codename = release.get("VERSION_CODENAME", "").strip('"')
    return f"{codename}/{platform.machine()}/python{py}/opencv-apt"


@pytest.mark.pypi
def test_cli_lock_from_the_local_inventory(upstream: dict[str, Any], tmp_path: Path) -> None:
    """`coralpi lock -i inventory/localhost.yml`: this machine probed (read-only), locked."""
    if shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("ansible-playbook is not installed in this environment")
    expected = _local_platform_id()
    arch = expected.split("/")[1]
    deb_arch = {"aarch64": "arm64", "armv7l": "armhf", "x86_64": "amd64"}.get(arch, arch)
    codename = expected.split("/")[0]
    pins = []
    for variant in ("std", "max"):
        for dist in (codename, "bookworm", "bullseye"):
            name = f"libedgetpu1-{variant}_16.0tf2.17.1-1.{dist}_{deb_arch}.deb"
            path = upstream["docroot"] / "runtime" / name
            if not path.exists():
                path.write_bytes(b"stand-in " + name.encode())
            pins += ["--pin", f"{name}={hashlib.sha256(path.read_bytes()).hexdigest()}"]
    lock = tmp_path / "coralpi.lock"
    cmd = [
        sys.executable,
        "-m",
        "provision",
        "lock",
        "-i",
        str(ROOT / "inventory/localhost.yml"),
        "--lock",
        str(lock),
        "--cache-dir",
        str(tmp_path / "cache"),
        *pins,
    ]
    for name in ("coralpi_assets_url", "coralpi_community_runtime_url", "coralpi_coral_repo_url"):
        cmd += ["-e", f"{name}={upstream['vars'][name]}"]
    cmd += ["-e", f"coralpi_coral_key_fingerprints={upstream['fingerprint']}"]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=dict(os.environ, CORALPI_NO_PROGRESS="1"),
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    locked = lockfile.read(lock)
    assert list(locked.platforms) == [expected]


@pytest.mark.pypi
def test_cli_lock_twice_then_fetch(upstream: dict[str, Any], tmp_path: Path) -> None:
    if not (ROOT / "provision" / "cli.py").exists():
        pytest.skip("provision/cli.py is not there yet")
    lock = tmp_path / "coralpi.lock"
    cmd = [
        sys.executable,
        "-m",
        "provision",
        "lock",
        "--platform",
        "bookworm/x86_64/3.11",
        "--lock",
        str(lock),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    for name, value in upstream["vars"].items():
        if name != "coralpi_coral_key_fingerprints":
            cmd += ["-e", f"{name}={value}"]
    for url, sha in upstream["pins"].items():
        cmd += ["--pin", f"{url.rsplit('/', 1)[1]}={sha}"]
    env = dict(os.environ, CORALPI_NO_PROGRESS="1")
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "written" in first.stdout
    text, mtime = lock.read_bytes(), lock.stat().st_mtime_ns
    assert b"tflite_runtime-2.14.0-cp311-cp311-" in text and DEB_MAX.encode() in text
    second = subprocess.run(
        cmd[: -2 * len(upstream["pins"])],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )  # pins now come from the lock
    assert second.returncode == 0, second.stderr
    assert "unchanged" in second.stdout
    assert lock.read_bytes() == text and lock.stat().st_mtime_ns == mtime
    fetch = [
        sys.executable,
        "-m",
        "provision",
        "fetch",
        "--lock",
        str(lock),
        "--cache-dir",
        str(tmp_path / "fresh"),
    ]
    got = subprocess.run(fetch, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert got.returncode == 0, got.stderr
    assert "0 downloaded" not in got.stdout
    again = subprocess.run(
        fetch, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert "(0 downloaded, 0.0 MB" in again.stdout


def _wheels(lock: lockfile.Lock) -> dict[str, lockfile.Artifact]:
    (plat,) = lock.platforms.values()
    return {a.name: a for a in plat.artifacts if a.kind == "wheel"}


@pytest.fixture(scope="module")
def pypi_cache(tmp_path_factory: pytest.TempPathFactory) -> ArtifactCache:
    return ArtifactCache.open(tmp_path_factory.mktemp("pypi-cache"))


@pytest.mark.pypi
@pytest.mark.parametrize(
    ("arch", "tag"),
    [
        ("aarch64", "manylinux_2_34_aarch64"),
        ("armv7l", "manylinux_2_34_armv7l"),
        ("x86_64", "x86_64"),
    ],
)
def test_tflite_runtime_wheels_for_bookworm(
    upstream: dict[str, Any], pypi_cache: ArtifactCache, arch: str, tag: str
) -> None:
    plan = plan_for("bookworm", arch, "3.11", "2.36", wheels=True)
    assert plan.pip_requirements == ("tflite-runtime==2.14.0",)
    deb_arch = {"aarch64": "arm64", "armv7l": "armhf", "x86_64": "amd64"}[arch]
    docroot: Path = upstream["docroot"]
    pins = dict(upstream["pins"])
    for variant in ("std", "max"):  # stand-in .debs named for this arch
        name = f"libedgetpu1-{variant}_16.0tf2.17.1-1.bookworm_{deb_arch}.deb"
        path = docroot / "runtime" / name
        if name not in (DEB_STD, DEB_MAX):
            standin_deb.build(path, variant, arch=deb_arch)
        pins.setdefault(
            f"{upstream['base']}/runtime/{name}", hashlib.sha256(path.read_bytes()).hexdigest()
        )
    lock = build_lock([(plan, settings(upstream))], pypi_cache, extra_pins=pins)
    wheels = _wheels(lock)
    assert len(wheels) == 1, wheels  # numpy comes from apt: not downloaded
    ((name, art),) = wheels.items()
    assert name.startswith("tflite_runtime-2.14.0-cp311-cp311-") and tag in name
    assert art.url.startswith("https://files.pythonhosted.org/")
    path = pypi_cache.path("wheel", art.sha256, name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == art.sha256
    assert art.size == path.stat().st_size
    assert "numpy>=1.23.2" in art.reason and "python3-numpy" in art.reason
    if arch == "x86_64":  # the real ansible-core wheel, pure Python: one for every platform
        (ansible,) = [a for a in lock.shared if pi_ansible.is_pi_ansible(a)]
        assert ansible.name == f"ansible_core-{pi_ansible.controller_version()}-py3-none-any.whl"
        assert ansible.url.startswith("https://files.pythonhosted.org/")
        cached = pypi_cache.path("wheel", ansible.sha256, ansible.name)
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == ansible.sha256


@pytest.mark.pypi
def test_ai_edge_litert_with_dependencies_for_trixie_aarch64(
    upstream: dict[str, Any], pypi_cache: ArtifactCache
) -> None:
    plan = plan_for("trixie", "aarch64", "3.13", "2.41", wheels=True)
    # no runtime .debs needed for this wheel test
    plan = dataclasses.replace(plan, runtime=dataclasses.replace(plan.runtime, source="coral-apt"))
    assert plan.python_runtime.package == "ai-edge-litert"
    s = settings(upstream, coralpi_coral_source_enabled=False)
    art = ensure_host_artifacts(plan, s, pypi_cache)
    files = sorted(os.listdir(art.wheels_dir))
    assert any(f.startswith("ai_edge_litert-") and "cp313" in f and "aarch64" in f for f in files)
    assert any(f.startswith("flatbuffers-") for f in files)  # a dependency came along
    assert not any(f.startswith("numpy-") for f in files)  # numpy comes from apt
    for f in files:
        assert f.endswith(".whl")
        assert "x86_64" not in f and "armv7l" not in f


# ------------------------------------------------------------------ wheels' ELF needs


def _standin_wheel_resolution(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, obj: Path, name: str
) -> Path:
    """The index look-up is a STAND-IN: it "finds" one wheel, built here around a STAND-IN
    shared object (testfleet/standin_elf.py), at a file:// URL with its sha256 as an index
    publishes it; the real code downloads, pins, reads and judges it."""
    path = standin_elf.wheel(
        tmp_path / name, {"standin/__init__.py": b"", "standin/_lib.so": obj.read_bytes()}
    )
    wheel = artifacts.wheels.ResolvedWheel(
        "standin",
        "1.0",
        name,
        path.as_uri(),
        hashlib.sha256(path.read_bytes()).hexdigest(),
    )

    def resolve_standin(*_: Any, **__: Any) -> artifacts.wheels.Resolution:
        return artifacts.wheels.Resolution(wheels=[wheel], required_by={"standin": {""}})

    monkeypatch.setattr(artifacts.wheels, "resolve", resolve_standin)
    return path


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_lock_refuses_a_wheel_whose_shared_object_needs_a_newer_glibc(
    upstream: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "standin-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    _standin_wheel_resolution(monkeypatch, tmp_path, standin_elf.needy_object(tmp_path / "o"), name)
    cache = ArtifactCache.open(tmp_path / "cache")
    with pytest.raises(WheelNeedsError) as err:
        _pinned_lock(upstream, cache, [bookworm_amd64()])
    msg = str(err.value)
    assert msg.startswith(f"{name} cannot load on bookworm/x86_64/python3.11/opencv-apt: ")
    assert "standin/_lib.so needs GLIBC_2.99, but bookworm x86_64" in msg
    assert "glibc up to GLIBC_2.36" in msg
    assert "GLIBCXX_3.4.99" in msg and "GLIBCXX_3.4.30" in msg  # bookworm's, from matrix.toml
    # the CLI turns it into exit 1 with that message (an ArtifactError), before any host


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_lock_records_wheel_needs_and_reads_an_old_lock_without_them(
    upstream: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "standin-1.0-cp311-cp311-linux_x86_64.whl"
    _standin_wheel_resolution(monkeypatch, tmp_path, standin_elf.clean_object(tmp_path / "o"), name)
    cache = ArtifactCache.open(tmp_path / "cache")
    lock = _pinned_lock(upstream, cache, [bookworm_amd64()])
    (plat,) = lock.platforms.values()
    (art,) = [a for a in plat.artifacts if a.kind == "wheel"]
    assert art.needs is not None and len(art.needs) == 1
    assert art.needs[0].startswith("GLIBC_2.") and art.needs[0].endswith(" by standin/_lib.so")
    text = lockfile.render(lock)
    assert f'needs = [\n    "{art.needs[0]}",\n]' in text

    # A lock written before coralpi read ELF needs: parsed as it is, and `coralpi lock`
    # (build_lock with it as previous) fills them in from the pinned file, offline.
    old_text = text.replace(f'needs = [\n    "{art.needs[0]}",\n]\n', "")
    old = lockfile.parse(old_text)
    (old_art,) = [a for p in old.platforms.values() for a in p.artifacts if a.kind == "wheel"]
    assert old_art.needs is None
    monkeypatch.setattr(artifacts.wheels, "resolve", None)  # no index work for a kept platform
    again = build_lock([(bookworm_amd64(), settings(upstream))], cache, previous=old)
    assert lockfile.render(again) == text

    # A lock whose recorded needs the host cannot meet is refused when a host is applied.
    lock_path = tmp_path / "coralpi.lock"
    lock_path.write_text(text.replace(art.needs[0], "GLIBC_2.99 by standin/_lib.so"))
    with pytest.raises(WheelNeedsError, match=r"standin/_lib\.so needs GLIBC_2\.99"):
        ensure_host_artifacts(
            bookworm_amd64(), settings(upstream), ArtifactCache.open(tmp_path / "c2"),
            lock_path=lock_path,
        )  # fmt: skip


# ------------------------------------------------------- community tflite_runtime wheels

COMMUNITY_WHEEL = "tflite_runtime-2.17.1-cp311-cp311-linux_x86_64.whl"


def _serve_standin_community_wheel(
    upstream: dict[str, Any], tmp_path: Path, version: str = "2.17.1"
) -> str:
    """A STAND-IN of feranick/TFlite-builds' release v2.17.1 (GitHub cannot be reached from
    here): a wheel named like the real cp311 x86_64 file, its METADATA requiring numpy<2 (as
    a build against numpy 1.x) and a package only Python 2 wanted, around a stand-in shared
    object (not TensorFlow Lite). Served in the release layout (<tag>/<file>); returns its
    sha256."""
    release = upstream["docroot"] / "tflite" / "v2.17.1"
    release.mkdir(parents=True)
    metadata = (
        f"Metadata-Version: 2.1\nName: tflite_runtime\nVersion: {version}\n"
        "Summary: STAND-IN (test only; not TensorFlow Lite)\n"
        "Requires-Dist: numpy<2,>=1.23.5\n"
        'Requires-Dist: futures; python_version < "3"\n'
    )
    path = standin_elf.wheel(
        release / COMMUNITY_WHEEL,
        {
            "tflite_runtime/__init__.py": b"",
            "tflite_runtime/_pywrap.so": standin_elf.clean_object(tmp_path / "o").read_bytes(),
            f"tflite_runtime-{version}.dist-info/METADATA": metadata.encode(),
        },
    )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def community_plan() -> Plan:
    plan = bookworm_amd64(community_wheels=True)
    assert plan.python_runtime.wheel_file == COMMUNITY_WHEEL
    return dataclasses.replace(plan, pip_requirements=("tflite-runtime==2.17.1",))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_community_wheel_is_downloaded_from_its_release_and_pinned(
    upstream: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = _serve_standin_community_wheel(upstream, tmp_path)
    asked: list[list[str]] = []

    def no_index(spec: Any, requirements: list[str], exclude: Any = ()) -> Any:
        asked.append(list(requirements))
        return artifacts.wheels.Resolution()

    monkeypatch.setattr(artifacts.wheels, "resolve", no_index)
    url = f"{upstream['base']}/tflite/v2.17.1/{COMMUNITY_WHEEL}"
    template = {"coralpi_community_wheel_url": f"{upstream['base']}/tflite/{{release}}"}
    cache = ArtifactCache.open(tmp_path / "cache")
    # plain http and no pin: refused, naming the setting the URL came from
    with pytest.raises(ArtifactError, match="coralpi_community_wheel_url") as err:
        build_lock([(community_plan(), settings(upstream, **template))], cache,
                   extra_pins=upstream["pins"])  # fmt: skip
    assert "plain http" in str(err.value)
    lock = build_lock(
        [(community_plan(), settings(upstream, **template))],
        cache,
        extra_pins={**upstream["pins"], url: sha},
    )
    (plat,) = lock.platforms.values()
    # a platform of its own: hosts that do not opt in share the lock without a clash
    assert plat.id == "bookworm/x86_64/python3.11/opencv-apt/community-wheels"
    assert lockfile.parse(lockfile.render(lock)) == lock
    (wheel,) = [a for a in plat.artifacts if a.kind == "wheel"]
    assert (wheel.name, wheel.version, wheel.url, wheel.sha256) == (
        COMMUNITY_WHEEL,
        "2.17.1",
        url,
        sha,
    )
    assert wheel.reason.startswith("python_runtime (community wheel): tflite-runtime 2.17.1")
    assert wheel.needs is not None  # its shared objects were read, as for any wheel
    # pip was asked for what the wheel requires on the target, not for the wheel itself:
    # numpy<2 (left out: Debian's numpy, by exclude) and nothing for Python 2
    assert asked == [["numpy<2,>=1.23.5"]]
    # the lock pins it by URL and by file name, so a mirror of the same file is trusted
    pins = artifacts.lock_pins(lock)
    assert pins[url] == sha and pins[COMMUNITY_WHEEL] == sha
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(upstream["docroot"] / "tflite" / "v2.17.1" / COMMUNITY_WHEEL, mirror)
    flat = {"coralpi_community_wheel_url": mirror.as_uri()}
    again = build_lock(
        [(community_plan(), settings(upstream, **flat))],
        ArtifactCache.open(tmp_path / "c2"),
        extra_pins={**upstream["pins"], **pins},
    )
    (moved,) = [a for p in again.platforms.values() for a in p.artifacts if a.kind == "wheel"]
    assert (moved.url, moved.sha256) == (f"{mirror.as_uri()}/{COMMUNITY_WHEEL}", sha)
    # apply with a lock written before the mirror was chosen: the host's file comes from
    # the mirror now set (a fresh cache, so it is fetched), checked against the lock's pin
    lock_path = tmp_path / "coralpi.lock"
    lockfile.write_if_changed(lock_path, lock)
    host = ensure_host_artifacts(
        community_plan(), {**upstream["vars"], **flat}, tmp_path / "c-apply", lock_path=lock_path
    )
    assert [f.name for f in host.wheels_dir.iterdir()] == [COMMUNITY_WHEEL]
    # other bytes under the pinned name are refused
    (mirror / COMMUNITY_WHEEL).write_bytes(b"not the pinned wheel")
    with pytest.raises(HashMismatch):
        build_lock(
            [(community_plan(), settings(upstream, **flat))],
            ArtifactCache.open(tmp_path / "c3"),
            extra_pins={**upstream["pins"], **pins},
        )
    with pytest.raises(HashMismatch):
        ensure_host_artifacts(
            community_plan(), {**upstream["vars"], **flat}, tmp_path / "c4", lock_path=lock_path
        )


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_community_wheel_holding_another_version_is_refused(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    _serve_standin_community_wheel(upstream, tmp_path, version="2.16.1")
    flat = {"coralpi_community_wheel_url": (upstream["docroot"] / "tflite" / "v2.17.1").as_uri()}
    with pytest.raises(ArtifactError, match=r"holds tflite_runtime 2\.16\.1, not tflite-runtime"):
        build_lock(
            [(community_plan(), settings(upstream, **flat))],
            ArtifactCache.open(tmp_path / "cache"),
            extra_pins=upstream["pins"],
        )


@pytest.mark.pypi
def test_real_ai_edge_litert_aarch64_wheel_needs_more_than_its_tag_says(
    pypi_cache: ArtifactCache,
) -> None:
    """ai-edge-litert 2.1.6 aarch64 is tagged manylinux_2_27, but its shared objects need
    GLIBC_2.34 and GLIBCXX_3.4.30 (read here from the real wheel): bookworm (2.36 / 3.4.30)
    takes it, bullseye (2.31 / 3.4.28) is refused with the object named."""
    from provision.artifacts import elf_needs
    from provision.planning.matrix import load_matrix, platform_tags

    spec = artifacts.wheels.WheelSpec("3.11", "cp311", platform_tags("aarch64", "2.36"), "aarch64")
    found = artifacts.wheels.resolve(spec, ["ai-edge-litert==2.1.6"], exclude=["numpy"]).wheels
    (wheel,) = [w for w in found if w.name == "ai-edge-litert"]
    assert wheel.filename.endswith("-manylinux_2_27_aarch64.whl"), wheel.filename
    got = artifacts.wheels.fetch(pypi_cache, wheel, {})
    needs = elf_needs.wheel_needs(got.path)
    assert needs["GLIBC"].label == "GLIBC_2.34"
    assert needs["GLIBCXX"].label == "GLIBCXX_3.4.30"
    assert needs["GLIBC"].path.startswith("ai_edge_litert/")
    releases = load_matrix().releases
    for name, ok in (("bookworm", True), ("bullseye", False)):
        rel = releases[name]
        libs = elf_needs.TargetLibs(rel.glibc, rel.glibcxx, rel.cxxabi, name)
        assert (elf_needs.shortfalls(needs, libs) == []) is ok, name
    with pytest.raises(WheelNeedsError, match=r"ai_edge_litert/\S+ needs GLIBC_2\.34"):
        elf_needs.check_wheel(
            wheel.filename,
            needs,
            elf_needs.TargetLibs("2.31", "3.4.28", "1.3.12", "bullseye aarch64"),
            "bullseye/aarch64",
        )


# ------------------------------------------------------------------ runtime .debs' own facts


def test_lock_records_each_debs_own_control_fields(
    upstream: dict[str, Any], tmp_path: Path
) -> None:
    cache = ArtifactCache.open(tmp_path / "cache")
    lock = _pinned_lock(upstream, cache, [bookworm_amd64()])
    (plat,) = lock.platforms.values()
    debs = {a.name: a.deb for a in plat.artifacts if a.kind == "deb"}
    max_deb = debs[DEB_MAX]
    assert max_deb is not None and max_deb.package == "libedgetpu1-max"
    assert max_deb.architecture == "amd64" and max_deb.conflicts == ("libedgetpu1",)
    assert max_deb.templates == ("libedgetpu/accepted-eula boolean", "libedgetpu/error-eula error")
    text = lockfile.render(lock)
    assert 'deb_package = "libedgetpu1-max"' in text
    assert lockfile.parse(text) == lock  # the new fields round-trip

    # an older lock without them: read as it is, filled in by `coralpi lock` from the pins
    old = lockfile.parse("".join(_drop_multiline(text, "deb_")))
    assert all(a.deb is None for p in old.platforms.values() for a in p.artifacts)
    again = build_lock([(bookworm_amd64(), settings(upstream))], cache, previous=old)
    assert lockfile.render(again) == text


def _drop_multiline(text: str, prefix: str) -> list[str]:
    """``text`` without its ``<prefix>... = ...`` entries (one line or a multi-line list)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if skipping:
            skipping = line.strip() != "]"
            continue
        if line.startswith(prefix) and " = " in line:
            skipping = line.rstrip().endswith("[")
            continue
        out.append(line)
    return out


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        ({"arch": "arm64"}, "it is built for Architecture arm64, the host is amd64"),
        ({"depends": "libc6 (>= 2.38)"}, "it Depends on libc6 (>= 2.38), the host has glibc 2.36"),
        ({"variant": "max"}, "it is package libedgetpu1-max, its file name says libedgetpu1-std"),
    ],
)
def test_lock_refuses_a_deb_whose_own_fields_do_not_fit_the_host(
    upstream: dict[str, Any], tmp_path: Path, build: dict[str, str], problem: str
) -> None:
    variant = build.pop("variant", "std")
    path = standin_deb.build(upstream["docroot"] / "runtime" / DEB_STD, variant, **build)
    pins = dict(upstream["pins"])
    pins[f"{upstream['base']}/runtime/{DEB_STD}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = ArtifactCache.open(tmp_path / "cache")
    with pytest.raises(artifacts.debinfo.DebError) as err:
        build_lock([(bookworm_amd64(), settings(upstream))], cache, extra_pins=pins)
    msg = str(err.value)
    assert msg.startswith(f"{DEB_STD} (http://127.0.0.1:")
    assert "does not fit bookworm x86_64 python 3.11" in msg and problem in msg
    assert "coralpi_community_runtime_url" in msg
