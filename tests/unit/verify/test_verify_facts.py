from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from verify_fakeroot import FakeRoot, standard_fact

from verify import facts
from verify.rootfs import RootFS


def test_os_release_parsing_with_and_without_codename() -> None:
    bookworm = facts.parse_os_release('ID=debian\nVERSION_CODENAME=bookworm\nVERSION_ID="12"\n')
    assert (bookworm["ID"], bookworm["VERSION_CODENAME"], bookworm["VERSION_ID"]) == (
        "debian",
        "bookworm",
        "12",
    )
    old = facts.parse_os_release('ID=raspbian\nVERSION="10 (buster)"\n# comment\n')
    assert old["VERSION_CODENAME"] == "buster"


def test_device_tree_model_is_nul_terminated() -> None:
    assert facts.parse_device_tree_model(b"Raspberry Pi 4 Model B Rev 1.4\x00") == (
        "Raspberry Pi 4 Model B Rev 1.4"
    )
    assert facts.parse_device_tree_model(b"\x00") is None


def test_dpkg_status_keeps_only_installed() -> None:
    text = (
        "Package: libedgetpu1-std\nStatus: install ok installed\nVersion: 16.0\n"
        "Description: x\n more\n\n"
        "Package: libedgetpu1-max\nStatus: deinstall ok config-files\nVersion: 16.0\n\n"
        "Package: python3-opencv\nStatus: hold ok installed\nVersion: 4.6.0\n"
    )
    assert facts.parse_dpkg_status(text) == {"libedgetpu1-std": "16.0", "python3-opencv": "4.6.0"}
    assert facts.parse_dpkg_status(text, ("libedgetpu1-max",)) == {}


def test_one_line_and_deb822_sources() -> None:
    one = facts.parse_one_line_sources(
        "# deb http://old coral-edgetpu-stable main\n"
        "deb [arch=arm64 signed-by=/etc/apt/keyrings/coral.gpg] "
        "https://packages.cloud.google.com/apt coral-edgetpu-stable main\n"
        "deb https://packages.cloud.google.com/apt coral-edgetpu-stable main\n",
        "a.list",
    )
    assert [(s.signed_by, s.suites) for s in one] == [
        ("/etc/apt/keyrings/coral.gpg", ["coral-edgetpu-stable"]),
        (None, ["coral-edgetpu-stable"]),
    ]
    assert all(facts.is_coral_source(s) for s in one)
    deb822 = facts.parse_deb822_sources(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: https://packages.cloud.google.com/apt\nSuites: coral-edgetpu-stable\n"
        "Enabled: no\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n",
        "b.sources",
    )
    assert not facts.is_coral_source(deb822[0])
    assert deb822[1].signed_by == "inline"
    assert deb822[1].enabled is False


def test_group_membership_includes_primary_group() -> None:
    group = "plugdev:x:46:pi,bob\nvideo:x:44:bob\npi:x:1000:\n"
    passwd = "pi:x:1000:1000::/home/pi:/bin/bash\n"
    assert facts.group_memberships(group, passwd, "pi") == ["pi", "plugdev"]
    assert facts.group_memberships(group, passwd, "bob") == ["plugdev", "video"]


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg not installed")
def test_openpgp_fingerprints_match_gpg(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "Test Repo <repo@example.invalid>",
                "ed25519",
                "sign",
                "never",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-add-key",
                _first_fpr(env),
                "cv25519",
                "encr",
                "never",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        binary = subprocess.run(
            ["gpg", "--export"], env=env, check=True, capture_output=True
        ).stdout
        armored = subprocess.run(
            ["gpg", "--armor", "--export"], env=env, check=True, capture_output=True
        ).stdout
        listing = subprocess.run(
            ["gpg", "--with-colons", "--list-keys"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:  # gpg starts an agent for this home: end it with the test
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    expected = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")]
    assert len(expected) == 2
    assert facts.openpgp_fingerprints(binary) == expected
    assert facts.openpgp_fingerprints(armored) == expected
    assert facts.openpgp_fingerprints(b"not a key") == []


def _first_fpr(env: dict[str, str]) -> str:
    listing = subprocess.run(
        ["gpg", "--with-colons", "--list-keys"], env=env, check=True, capture_output=True, text=True
    ).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))


def test_gather_system_reads_a_recorded_pi(fake_root: FakeRoot) -> None:
    (
        fake_root.os_release("bookworm")
        .board("Raspberry Pi 4 Model B Rev 1.4")
        .dpkg({"libedgetpu1-std": "16.0tf2.17.1-1"})
        .library()
        .udev()
        .users()
        .usb("18d1", "9302", "5000")
        .usb("1d6b", "0003", "5000", bus="usb2")
        .pci("1ac1", "089a")
        .fact(standard_fact())
        .config_txt("camera_auto_detect=0\n[pi4]\ncamera_auto_detect=1\n")
        .config_txt("# stub, see /boot/firmware/config.txt\n", "/boot/config.txt")
        .coral_source(key=b"\x00garbage")
    )
    fake_root.write("/etc/ld.so.preload", "/usr/lib/arm-linux-gnueabihf/libatomic.so.1\n")
    fake_root.write("/sys/devices/platform/soc/soc:firmware/get_throttled", "50000\n")
    gathered = facts.gather_system(RootFS(str(fake_root.path)), "pi")
    assert (gathered.os_id, gathered.os_codename) == ("debian", "bookworm")
    assert gathered.board == "Raspberry Pi 4 Model B Rev 1.4" and gathered.is_pi
    assert gathered.boot_config == "/boot/firmware/config.txt"
    assert gathered.config is not None and gathered.config.get("camera_auto_detect") == "1"
    assert gathered.packages == {
        "base-files": "12.4",
        "dpkg": "1.21.22",
        "libedgetpu1-std": "16.0tf2.17.1-1",
    }
    assert gathered.arch == "aarch64"  # the recorded tree's dpkg is arm64
    assert gathered.edgetpu_library == "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1"
    assert gathered.udev_rules == ["/lib/udev/rules.d/60-libedgetpu1-std.rules"]
    assert gathered.user_groups == ["pi", "plugdev"] and gathered.user_exists
    ids = {(d.vendor, d.product, d.speed) for d in gathered.usb_devices}
    assert ("18d1", "9302", "5000") in ids
    assert [(d.vendor, d.device) for d in gathered.pci_devices] == [("1ac1", "089a")]
    assert not gathered.apex_node
    assert gathered.local_fact is not None
    assert gathered.local_fact["runtime_variant"] == "std"
    coral = [s for s in gathered.apt_sources if facts.is_coral_source(s)]
    assert coral[0].signed_by == "/etc/apt/keyrings/coral.gpg"
    assert gathered.keyrings["/etc/apt/keyrings/coral.gpg"].fingerprints == []
    assert gathered.ld_so_preload == ["/usr/lib/arm-linux-gnueabihf/libatomic.so.1"]
    assert gathered.throttled == 0x50000


def test_gather_system_old_layout_and_broken_fact(fake_root: FakeRoot) -> None:
    fake_root.os_release("buster").config_txt("start_x=1\n", "/boot/config.txt")
    fake_root.fact("{not json")
    fake_root.write("/etc/ld.so.conf.d/local.conf", "/opt/edgetpu/lib\n")
    fake_root.library(directory="/opt/edgetpu/lib")
    gathered = facts.gather_system(RootFS(str(fake_root.path)), None)
    assert gathered.os_codename == "buster"
    assert gathered.boot_config == "/boot/config.txt"
    assert gathered.board is None and not gathered.is_pi
    assert gathered.local_fact is None and gathered.local_fact_error
    assert gathered.edgetpu_library == "/opt/edgetpu/lib/libedgetpu.so.1"
    assert gathered.packages == {}


def test_empty_root_gives_empty_facts(fake_root: FakeRoot) -> None:
    gathered = facts.gather_system(RootFS(str(fake_root.path)), "pi")
    assert gathered.os_id is None and gathered.boot_config is None
    assert gathered.usb_devices == [] and not gathered.user_exists


def test_opencv_probe_reports_a_failing_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        facts,
        "OPENCV_PROBE",
        "import sys; sys.stderr.write('ImportError: /x/cv2.so: undefined "
        "symbol: __atomic_fetch_add_8\\n'); sys.exit(1)",
    )
    result = facts.finish_opencv_probe(facts.start_opencv_probe())
    assert not result.ok and result.returncode == 1
    assert result.error is not None and "__atomic_fetch_add_8" in result.error
    monkeypatch.setattr(facts, "OPENCV_PROBE", "import os, signal; os.kill(os.getpid(), 11)")
    crashed = facts.finish_opencv_probe(facts.start_opencv_probe())
    assert crashed.returncode == -11 and "signal 11" in (crashed.error or "")


def test_import_runtime_finds_the_installed_one() -> None:
    runtime, module = facts.import_runtime("tflite_runtime.interpreter")
    if module is None:
        pytest.skip("no inference runtime in this Python")
    assert runtime.module in ("tflite_runtime.interpreter", "ai_edge_litert.interpreter")
    assert runtime.version and hasattr(module, "Interpreter")


def test_proc_maps_and_preload_pth(tmp_path: Path) -> None:
    maps = (
        "7f00-7f01 r--p 00000000 08:01 123 /usr/lib/arm-linux-gnueabihf/libatomic.so.1.2.0\n"
        "7f01-7f02 r-xp 00001000 08:01 123 /usr/lib/arm-linux-gnueabihf/libatomic.so.1.2.0\n"
        "7f03-7f04 rw-p 00000000 00:00 0 [heap]\n"
        "7f05-7f06 r--p 00000000 08:01 9 /usr/bin/python3.11\n"
    )
    assert facts.parse_proc_maps(maps) == ["/usr/lib/arm-linux-gnueabihf/libatomic.so.1.2.0"]
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "coralpi-ld-preload.pth").write_text(
        'import ctypes; ctypes.CDLL("/usr/lib/arm-linux-gnueabihf/libatomic.so.1")\n'
    )
    (site / "distutils-precedence.pth").write_text("import os\n")
    found = facts.preload_pth_files([str(site), str(tmp_path)])
    assert list(found) == [str(site / "coralpi-ld-preload.pth")]
    assert any("libc.so" in lib or "python" in lib for lib in facts.loaded_libraries())


def test_userland_arch_trusts_dpkg_over_uname() -> None:
    status = "Package: dpkg\nStatus: install ok installed\nArchitecture: armhf\n"
    assert facts.userland_arch(status, "aarch64") == "armv7l"
    assert facts.userland_arch("", "x86_64") == "x86_64"
    assert facts.dpkg_native_arch("Package: bash\nArchitecture: arm64\n") is None


def test_includes_are_read_from_the_boot_partition_only(fake_root: FakeRoot) -> None:
    fake_root.board("Raspberry Pi 4 Model B Rev 1.4").config_txt(
        "include /extra.txt\ninclude ../../etc/secret.txt\ninclude sub/../../../more.txt\n"
    )
    fake_root.write("/boot/firmware/extra.txt", "gpu_mem=128\n")
    fake_root.write("/boot/firmware/more.txt", "camera_auto_detect=1\n")
    fake_root.write("/extra.txt", "gpu_mem=16\n")
    fake_root.write("/etc/secret.txt", "start_x=1\n")
    gathered = facts.gather_system(RootFS(str(fake_root.path)), None)
    assert gathered.config is not None
    assert gathered.config.get("gpu_mem") == "128"
    assert gathered.config.get("camera_auto_detect") == "1"
    assert gathered.config.get("start_x") is None
    assert any("'../../etc/secret.txt' not found" in p for p in gathered.config.problems)
    assert facts.boot_file("/boot", "/a/../../x.txt") == "/boot/x.txt"
