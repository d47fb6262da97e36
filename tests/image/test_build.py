"""``coralpi image build``: a golden image from a STAND-IN Raspberry Pi OS image.

The base is a STAND-IN (standin_images): a real MBR table, a FAT boot partition laid out as
Bookworm's, and an ext4 root made from the test fleet's cached bookworm tree plus systemd.
The build runs the real roles in a chroot of the image's root with the real Debian
packages (through the fleet's apt proxy) and the locked artifacts (real PyPI wheels,
STAND-IN community runtime .debs). It runs inside the network namespace of fleet host pi1:
no route anywhere but the test bridge, so the build cannot fetch anything else.

Limits, stated plainly:
- the machine is x86_64, so the images here are amd64; the arm64 build runs the same
  code under qemu-user in ``test_build_arm64.py`` (the suite's one aarch64 converge);
- the first boot runs in ``systemd-nspawn --boot --private-network`` (no network at all) on
  the image's own root, with the boot partition's files bound on /boot/firmware (no vfat
  here: copied out and written back with mtools); no kernel, firmware or udev hardware.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from booting import booted, extract_boot, fat_of, mounted_root, tree_mib, wait_for, write_back_boot
from image_cli import CORALPI, REPO, coralpi, sha256
from standin_images import StandinSpec, build

from provision.image import manifest
from provision.image.identity import SSH_UNIT
from testfleet import Fleet, HostSpec

PARROT = "Ara macao (Scarlet Macaw)"
UNIT = "coralpi-firstboot-verify.service"
BOOT_TIMEOUT = 600


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-build")


@pytest.fixture(scope="module")
def base_image(systemd_tree: Path, workdir: Path) -> Path:
    spec = StandinSpec("bookworm", root_tree=systemd_tree, root_mib=tree_mib(systemd_tree) + 128)
    return build(workdir / "bookworm-standin-base.img", spec, workdir)


@pytest.fixture(scope="module")
def lock(fleet_lock: Path, workdir: Path) -> Path:
    path = workdir / "coralpi.lock"
    shutil.copyfile(fleet_lock, path)
    return path


Build = Callable[[str], tuple[subprocess.CompletedProcess[str], float]]


@pytest.fixture(scope="module")
def build_image(image_fleet: Fleet, base_image: Path, lock: Path, workdir: Path) -> Build:
    def run(name: str) -> tuple[subprocess.CompletedProcess[str], float]:
        start = time.monotonic()
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                image_fleet.host("pi1").netns,
                CORALPI,
                "image",
                "build",
                "--base",
                str(base_image),
                "--out",
                str(workdir / name),
                "-i",
                str(image_fleet.inventory_path),
                "--limit",
                "pi1",
                "--lock",
                str(lock),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        )
        return proc, time.monotonic() - start

    return run


@pytest.fixture(scope="module")
def golden(build_image: Build, base_image: Path, workdir: Path) -> dict[str, Any]:
    base_digest = sha256(base_image)
    proc, seconds = build_image("golden-a.img")
    log = workdir / "golden-a.img.build.log"
    assert proc.returncode == 0, proc.stderr[-3000:] + (
        log.read_text()[-4000:] if log.exists() else ""
    )
    print(f"image build (bookworm amd64, warm apt proxy): {seconds:.0f}s")
    summary: dict[str, Any] = json.loads(proc.stdout)
    summary["base_digest_before"] = base_digest
    summary["stderr"] = proc.stderr
    return summary


def test_build_writes_image_manifest_and_log(
    golden: dict[str, Any], base_image: Path, lock: Path, workdir: Path
) -> None:
    out = Path(golden["out"])
    assert out == workdir / "golden-a.img" and out.is_file()
    assert not (workdir / "golden-a.img.part").exists()
    assert sha256(base_image) == golden["base_digest_before"], "the base image changed"
    data = manifest.load(Path(golden["manifest"]))
    assert data["base"]["sha256"] == golden["base_digest_before"]
    assert data["output"]["sha256"] == sha256(out)
    assert data["lock"]["sha256"] == sha256(lock)
    assert data["lock"]["text"] == lock.read_text()
    assert data["target"]["codename"] == "bookworm"
    runtime = data["runtime"]["package"]
    assert runtime in data["packages"], f"{runtime} not installed in the image"
    assert "python3-venv" in data["packages"]
    venv_files = data["venv_files"]
    assert any(p.startswith("lib/python3.11/site-packages/tflite_runtime/") for p in venv_files)
    # OpenCV: Debian's python3-opencv on bookworm amd64 (the plan), else a wheel in the venv.
    assert "python3-opencv" in data["packages"] or any(
        p.startswith("lib/python3.11/site-packages/cv2/") for p in venv_files
    )
    assert "TASK [coralpi_python" in golden["stderr"], "no live progress on stderr"
    assert Path(golden["log"]).read_text().count("failed=0") == 1


def test_image_root_has_the_stack_and_the_first_boot_unit(
    golden: dict[str, Any], workdir: Path
) -> None:
    with mounted_root(Path(golden["out"]), workdir / "check-root", readonly=True) as root:
        assert (root / f"etc/systemd/system/multi-user.target.wants/{UNIT}").is_symlink()
        assert (root / "var/cache/coralpi/assets").is_dir()
        assert (root / "opt/coralpi/verify/__main__.py").is_file()
        fact = json.loads((root / "etc/ansible/facts.d/coralpi.fact").read_text())
        assert fact["runtime_package"]
        # The build's own scaffolding is gone from the image (the test fleet's tree has a
        # policy-rc.d of its own, which stays).
        policy = root / "usr/sbin/policy-rc.d"
        assert not policy.exists() or "coralpi image build" not in policy.read_text()
        firmware = root / "boot/firmware"  # a mount point only: the build bound the bundle
        assert not firmware.exists() or not any(firmware.iterdir())
        assert not list((root / "var/cache/apt/archives").glob("*.deb"))


def test_image_carries_no_identity_and_two_booted_copies_differ(
    golden: dict[str, Any], workdir: Path
) -> None:
    """No cloned identity: the built image has an empty machine-id and no SSH host keys,
    and two cards copied from it come up with their own (booted with no network)."""
    image = Path(golden["out"])
    cleared = {
        e["path"]: e["action"] for e in manifest.load(Path(golden["manifest"]))["identity_cleared"]
    }
    assert cleared.get("/var/log/dpkg.log") == "truncated", cleared
    with mounted_root(image, workdir / "identity-root", readonly=True) as root:
        assert (root / "etc/machine-id").read_text() == ""
        assert not list((root / "etc/ssh").glob("ssh_host_*"))
        assert (root / "etc/systemd/system/multi-user.target.wants" / SSH_UNIT).is_symlink()
        assert not list((root / "var/lib/apt/lists").glob("*_*"))
        assert not list((root / "var/lib/dhcp").glob("*.leases"))
        assert not (root / "root/.bash_history").exists()
        assert (root / "var/log/dpkg.log").read_text() == ""
    seen = []
    with ExitStack() as stack:
        procs, roots = [], []
        for card in ("card1", "card2"):
            copy = workdir / f"{card}.img"
            subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
            stack.callback(copy.unlink)
            boot = workdir / f"{card}.bootfs"
            extract_boot(copy, boot)
            root = stack.enter_context(mounted_root(copy, workdir / f"{card}-root"))
            procs.append(
                stack.enter_context(booted(root, boot, workdir / f"{card}.log", f"coralpi-{card}"))
            )
            roots.append(root)

        def up() -> bool:
            return all(
                (r / "etc/ssh/ssh_host_ed25519_key.pub").is_file()
                and (r / "etc/machine-id").read_text().strip()
                for r in roots
            )

        seconds = wait_for(up, procs, BOOT_TIMEOUT)
        assert up(), (workdir / "card1.log").read_text(errors="replace")[-3000:]
        print(f"two copies booted to their own machine id and host keys: {seconds:.0f}s")
        for root in roots:
            seen.append(
                (
                    (root / "etc/machine-id").read_text().strip(),
                    (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1],
                )
            )
    (id1, key1), (id2, key2) = seen
    assert len(id1) == 32 and len(id2) == 32
    assert id1 != id2, "two cards from one image share a machine id"
    assert key1 != key2, "two cards from one image share an SSH host key"


def test_first_boot_unit_writes_verify_report_to_boot_partition_with_no_network(
    golden: dict[str, Any], workdir: Path
) -> None:
    image = Path(golden["out"])
    boot = workdir / "golden-a.bootfs"
    extract_boot(image, boot)
    with mounted_root(image, workdir / "boot-root") as root:
        status = boot / "coralpi-report" / "firstboot-verify.status"
        log = workdir / "golden-boot.log"
        with booted(root, boot, log, "coralpi-golden") as proc:
            seconds = wait_for(status.exists, [proc], BOOT_TIMEOUT)
        assert status.exists(), log.read_text(errors="replace")[-3000:]
        print(f"first boot to verify report: {seconds:.0f}s")
        assert (root / "var/lib/coralpi/firstboot-verify.done").is_file()
    write_back_boot(image, boot)

    fat = fat_of(image)  # as any PC reads the card
    report = json.loads(fat.read_text("/coralpi-report/verify.json") or "{}")
    assert report["result"] in ("pass", "warn"), report
    assert report["smoke"]["top"][0]["label"] == PARROT
    assert report["smoke"]["device"] == "cpu", "no Edge TPU here: the CPU run is labelled"
    assert "verify exit 0" in (fat.read_text("/coralpi-report/firstboot-verify.status") or "")


def test_built_image_as_a_host_passes_coralpi_verify_without_apply(
    golden: dict[str, Any],
    lock: Path,
    workdir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    image = Path(golden["out"])
    fleet_dir = tmp_path_factory.mktemp("golden-fleet")
    with (
        mounted_root(image, workdir / "host-root", readonly=True) as tree,
        Fleet(fleet_dir, [HostSpec("golden", "bookworm", tree=tree)]) as fleet,
    ):
        runs = workdir / "runs"
        proc = coralpi(
            "verify", "-i", fleet.inventory_path, "--json", "--runs-dir", runs, "--lock", lock
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout)["hosts"][0]
    assert row["host"] == "golden" and row["status"] == "ok", row
    assert row["smoke"].startswith(PARROT)
    assert not list(runs.glob("*-apply")), "apply must never have run"


def test_two_builds_from_same_base_and_lock_install_the_same(
    golden: dict[str, Any], build_image: Build, workdir: Path
) -> None:
    proc, seconds = build_image("golden-b.img")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = json.loads(proc.stdout)
    print(f"second image build: {seconds:.0f}s")
    first_m = manifest.load(Path(golden["manifest"]))
    second_m = manifest.load(Path(second["manifest"]))
    diff = manifest.compare(first_m, second_m)
    assert diff == {"packages": [], "venv_files": []}, diff
    assert len(first_m["venv_files"]) > 1000
    # What still differs is stated in the manifest (the image bytes, among others).
    assert first_m["still_differs"]
    print("output sha256 equal:", first_m["output"]["sha256"] == second_m["output"]["sha256"])
    Path(second["out"]).unlink()


def build_leftovers(out: Path) -> list[str]:
    """What a failed or interrupted build must not leave: partial files, loop devices on
    them, mounts of its scratch directories."""
    found = [
        p.name
        for p in out.parent.glob(out.name + "*")
        if not p.name.endswith((".build.log", ".lock"))
    ]
    for name in (out, out.with_name(out.name + ".part")):
        loops = subprocess.run(
            ["losetup", "--associated", str(name)], capture_output=True, text=True, check=False
        ).stdout.strip()
        if loops:
            found.append(loops)
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [ln for ln in mounts.splitlines() if "coralpi-build-" in ln]
    return found


def test_failed_build_leaves_no_image_no_mounts_and_keeps_the_log(
    image_fleet: Fleet, base_image: Path, lock: Path, tmp_path: Path
) -> None:
    """Debian's packages cannot be fetched (the apt proxy refuses): the build fails
    inside the chroot, after the copy, the loop device and the mounts were made."""
    digest = sha256(base_image)
    out = tmp_path / "failed.img"
    proc = coralpi(
        "image",
        "build",
        "--base",
        base_image,
        "--out",
        out,
        "-i",
        image_fleet.inventory_path,
        "--limit",
        "pi1",
        "--lock",
        lock,
        "-e",
        "coralpi_apt_proxy=http://127.0.0.1:9",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "image build failed at apt-get install" in proc.stderr, proc.stderr[-2000:]
    assert "no image was written" in proc.stderr
    assert build_leftovers(out) == []
    log = (tmp_path / "failed.img.build.log").read_text()
    assert "127.0.0.1:9" in log or "Could not connect" in log, log[-2000:]
    assert sha256(base_image) == digest


def test_interrupted_build_stops_the_chroot_and_cleans_up(
    image_fleet: Fleet, base_image: Path, lock: Path, tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while the roles run."""
    out = tmp_path / "interrupted.img"
    proc = subprocess.Popen(
        [
            CORALPI,
            "image",
            "build",
            "--base",
            str(base_image),
            "--out",
            str(out),
            "-i",
            str(image_fleet.inventory_path),
            "--limit",
            "pi1",
            "--lock",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("TASK [coralpi_python"):
                break
        start = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=180)
        seconds = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, "".join(seen)[-2000:] + stderr[-2000:]
    assert "image build interrupted (SIGINT)" in stderr and "no image was written" in stderr
    print(f"Ctrl-C to a clean exit of image build: {seconds:.1f}s")
    assert build_leftovers(out) == []
    assert "TASK [coralpi_python" in (tmp_path / "interrupted.img.build.log").read_text()


def _cases() -> Iterator[tuple[str, Callable[[Path], list[str]], str]]:
    def args(base: Path, out: Path, *extra: str) -> list[str]:
        return ["--base", str(base), "--out", str(out), *extra]

    def not_image(tmp: Path) -> list[str]:
        (tmp / "notes.img").write_text("hello\n" * 1000)
        return args(tmp / "notes.img", tmp / "out.img", "--platform", "bookworm/x86_64/3.11")

    def bad_xz(tmp: Path) -> list[str]:
        (tmp / "base.img.xz").write_bytes(b"\xfd7zXZ\x00garbage")
        return args(tmp / "base.img.xz", tmp / "out.img", "--platform", "bookworm/x86_64/3.11")

    def out_exists(tmp: Path) -> list[str]:
        base = build(tmp / "base.img", StandinSpec("bookworm"), tmp)
        (tmp / "out.img").write_text("keep me\n")
        return args(base, tmp / "out.img", "--platform", "bookworm/x86_64/3.11")

    def out_is_base(tmp: Path) -> list[str]:
        base = build(tmp / "base.img", StandinSpec("bookworm"), tmp)
        return args(base, base, "--platform", "bookworm/x86_64/3.11", "--force")

    def unsupported(tmp: Path) -> list[str]:
        base = build(tmp / "base.img", StandinSpec("bullseye"), tmp)
        return args(base, tmp / "out.img", "--platform", "bullseye/x86_64/3.9")

    def mismatch(tmp: Path) -> list[str]:
        base = build(tmp / "base.img", StandinSpec("bookworm"), tmp)
        return args(base, tmp / "out.img", "--platform", "trixie/x86_64/3.13")

    def other_arch(tmp: Path) -> list[str]:
        base = build(tmp / "base.img", StandinSpec("bookworm"), tmp)
        return args(base, tmp / "out.img", "--platform", "bookworm/aarch64/3.11")

    def side_file_is_base(tmp: Path) -> list[str]:
        base = build(tmp / "golden.img.part", StandinSpec("bookworm"), tmp)
        return args(base, tmp / "golden.img", "--platform", "bookworm/x86_64/3.11")

    def no_fat(tmp: Path) -> list[str]:
        base = build(tmp / "base.img", StandinSpec("bookworm", boot_fat=""), tmp)
        return args(base, tmp / "out.img", "--platform", "bookworm/x86_64/3.11")

    yield "not a disk image", not_image, "partition table"
    yield "corrupt .xz", bad_xz, "not a readable .xz"
    yield "output exists", out_exists, "--force"
    yield "output is the base", out_is_base, "base image itself"
    yield "unsupported release", unsupported, "unsupported release"
    yield "plan for another release", mismatch, "holds bookworm"
    yield "no FAT boot partition", no_fat, "FAT"
    yield "plan for another architecture", other_arch, "is a x86_64 system"
    yield "output's partial file is the base", side_file_is_base, "which is the base image"


CASES = list(_cases())


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_writing(
    image_tools: None, tmp_path: Path, make: Callable[[Path], list[str]], message: str
) -> None:
    argv = make(tmp_path)
    before = {p.name: sha256(p) for p in tmp_path.iterdir() if p.is_file()}
    proc = coralpi("image", "build", *argv)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    after = {p.name: sha256(p) for p in tmp_path.iterdir() if p.is_file()}
    assert after == before, "a refused build wrote something"
