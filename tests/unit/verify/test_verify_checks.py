from __future__ import annotations

from typing import Any

import pytest
from verify_fakeroot import standard_fact

from verify import checks, configtxt, coral_keys, expected
from verify.camera import CameraFacts
from verify.errors import Cause
from verify.facts import (
    AptSource,
    Keyring,
    OpenCVImport,
    PciDevice,
    PythonFacts,
    RuntimeImport,
    SystemFacts,
    UsbDevice,
)
from verify.smoke import SmokeResult

GOOGLE = coral_keys.ACCEPTED[0]
EXPIRED = "54A647F9048D5688D7DA2ABE6A030B21BA07F4FB"
SHARED_SIGNER = "35BAA0B33E9EB396F59CA838C0BA5CE6DC6315A3"
STANDIN = "CD" * 20  # a stand-in key a lock accepted (as the test fleet's)
PI4 = "Raspberry Pi 4 Model B Rev 1.4"
KEYRING = "/etc/apt/keyrings/coral.gpg"


def pi_facts(**changes: Any) -> SystemFacts:
    """A healthy provisioned Pi 4 on bookworm; `changes` spoil one thing."""
    config_text = "camera_auto_detect=1\n"
    base = SystemFacts(
        os_id="debian",
        os_codename="bookworm",
        arch="aarch64",
        board=PI4,
        boot_config="/boot/firmware/config.txt",
        config=configtxt.evaluate(config_text, PI4),
        packages={"libedgetpu1-std": "16.0tf2.17.1-1"},
        apt_sources=[
            AptSource(
                "/etc/apt/sources.list.d/coral.sources",
                ["https://packages.cloud.google.com/apt"],
                ["coral-edgetpu-stable"],
                KEYRING,
            )
        ],
        keyrings={KEYRING: Keyring(KEYRING, [GOOGLE])},
        udev_rules=["/lib/udev/rules.d/60-libedgetpu1-std.rules"],
        user="pi",
        user_groups=["pi", "plugdev"],
        user_exists=True,
        usb_devices=[UsbDevice("/sys/bus/usb/devices/2-1", "18d1", "9302", "5000")],
        edgetpu_library="/usr/lib/aarch64-linux-gnu/libedgetpu.so.1",
        local_fact=standard_fact(),
        throttled=0,
        camera=CameraFacts("rpicam-hello --list-cameras", ["imx708"], True),
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def py_facts(**changes: Any) -> PythonFacts:
    base = PythonFacts(
        python="3.11.2",
        executable="/opt/coralpi/venv/bin/python",
        runtime=RuntimeImport("tflite_runtime.interpreter", "tflite-runtime", "2.14.0"),
        numpy_version="1.24.2",
        opencv=OpenCVImport(ok=True, version="4.6.0"),
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def fact_exp(**overrides: Any) -> expected.Expected:
    return expected.from_fact(standard_fact(**overrides))


def by_name(results: list[checks.CheckResult]) -> dict[str, checks.CheckResult]:
    return {r.name: r for r in results}


def test_healthy_pi_passes_everything() -> None:
    results = by_name(checks.run_all(pi_facts(), py_facts(), fact_exp(), None, lambda path: True))
    assert {n: r.status for n, r in results.items() if r.status != "pass"} == {
        "pcie_kernel": "skip",
        "pcie_driver": "skip",
        "pcie_accelerator": "skip",
        "ld_preload": "skip",
        "usb_power": "skip",  # a Pi 4: no Pi 5 USB current limit
    }


def test_os_and_arch() -> None:
    exp = expected.Expected()
    assert checks.check_os(pi_facts(arch="armv6l"), exp).status == "fail"
    assert checks.check_os(pi_facts(os_id="fedora", os_like=None), exp).status == "warn"
    assert checks.check_os(pi_facts(os_codename="sid"), exp).status == "warn"
    assert checks.check_os(pi_facts(os_id="raspbian", os_codename="buster"), exp).status == "pass"
    ubuntu = pi_facts(os_id="ubuntu", os_like="debian", os_codename="noble")
    assert checks.check_os(ubuntu, exp).status == "warn"


def test_apt_source_variants() -> None:
    exp = fact_exp(runtime_source="coral-apt")
    assert checks.check_apt_source(pi_facts(), exp).status == "pass"
    unsigned = AptSource(
        "/etc/apt/sources.list",
        ["https://packages.cloud.google.com/apt"],
        ["coral-edgetpu-stable"],
        None,
    )
    result = checks.check_apt_source(pi_facts(apt_sources=[unsigned]), exp)
    assert result.status == "fail" and "no signed-by" in result.detail
    missing_key = checks.check_apt_source(pi_facts(keyrings={KEYRING: Keyring(KEYRING, [])}), exp)
    assert missing_key.status == "fail" and KEYRING in missing_key.detail
    in_global = pi_facts(trusted_keyrings=[Keyring("/etc/apt/trusted.gpg", [GOOGLE])])
    warned = checks.check_apt_source(in_global, exp)
    assert warned.status == "warn" and "/etc/apt/trusted.gpg" in warned.fix
    stand_in = pi_facts(
        keyrings={KEYRING: Keyring(KEYRING, ["CD" * 20])},
        trusted_keyrings=[Keyring("/etc/apt/trusted.gpg.d/x.gpg", ["CD" * 20])],
    )
    assert "/etc/apt/trusted.gpg.d/x.gpg" in checks.check_apt_source(stand_in, exp).fix
    other_key = pi_facts(keyrings={KEYRING: Keyring(KEYRING, ["AB" * 20])})
    other = checks.check_apt_source(other_key, exp)
    assert other.status == "warn" and "AB" * 20 in other.detail
    none = pi_facts(apt_sources=[])
    assert checks.check_apt_source(none, exp).status == "fail"
    assert checks.check_apt_source(none, fact_exp()).status == "skip"  # community-deb
    assert checks.check_apt_source(none, expected.Expected()).status == "warn"
    dead = AptSource(
        "/etc/apt/sources.list",
        ["https://packages.cloud.google.com/apt"],
        ["coral-cloud-stable"],
        KEYRING,
    )
    assert checks.check_apt_source(pi_facts(apt_sources=[dead]), exp).status == "fail"


def test_the_keyring_is_judged_by_the_fingerprints_the_lock_accepted() -> None:
    standin_ring = pi_facts(keyrings={KEYRING: Keyring(KEYRING, [STANDIN])})
    by_lock = fact_exp(runtime_source="coral-apt", coral_key_fingerprints=[STANDIN])
    judged = checks.check_apt_source(standin_ring, by_lock)
    assert judged.status == "pass" and STANDIN in judged.detail and "the lock" in judged.detail
    # the same keyring with nothing recorded: coralpi's default list, which lacks it
    unknown = checks.check_apt_source(standin_ring, fact_exp(runtime_source="coral-apt"))
    assert unknown.status == "warn" and "coralpi's default" in unknown.detail
    assert "coralpi_coral_key_fingerprints" in unknown.fix
    # Google's key on a host whose lock accepted another one is not taken for accepted
    google = checks.check_apt_source(pi_facts(), by_lock)
    assert google.status == "warn" and STANDIN in google.detail
    # a plan's artifacts carry them as the fact does
    plan = {"runtime": {"source": "coral-apt"}, "artifacts": {"coral_key_fingerprints": [STANDIN]}}
    assert expected.from_plan(plan, "plan x").coral_key_fingerprints == (STANDIN,)


def test_a_keyring_of_only_the_expired_key_fails_and_names_it() -> None:
    exp = fact_exp(runtime_source="coral-apt")
    expired = checks.check_apt_source(
        pi_facts(keyrings={KEYRING: Keyring(KEYRING, [EXPIRED])}), exp
    )
    assert expired.status == "fail", expired
    assert EXPIRED in expired.detail and "expired 2021-03-31" in expired.detail
    shared = checks.check_apt_source(
        pi_facts(keyrings={KEYRING: Keyring(KEYRING, [SHARED_SIGNER])}), exp
    )
    assert shared.status == "fail" and "proves the host, not Coral" in shared.detail
    # beside an accepted key the others are named, not taken for it
    both = checks.check_apt_source(
        pi_facts(keyrings={KEYRING: Keyring(KEYRING, [GOOGLE, EXPIRED])}), exp
    )
    assert both.status == "pass" and f"also holds {EXPIRED}" in both.detail
    # the expired key in apt's global keyring is still found there
    global_old = pi_facts(trusted_keyrings=[Keyring("/etc/apt/trusted.gpg", [EXPIRED])])
    assert "/etc/apt/trusted.gpg" in checks.check_apt_source(global_old, exp).fix


def test_runtime_package_variant_and_conflict() -> None:
    exp = fact_exp()
    both = pi_facts(packages={"libedgetpu1-std": "16.0", "libedgetpu1-max": "16.0"})
    assert checks.check_runtime_package(both, exp).status == "fail"
    max_installed = pi_facts(packages={"libedgetpu1-max": "16.0tf2.17.1-1"})
    wrong = checks.check_runtime_package(max_installed, exp)
    assert wrong.status == "fail" and "std expected" in wrong.detail
    ok_max = checks.check_runtime_package(
        max_installed, fact_exp(runtime_package="libedgetpu1-max", runtime_variant="max")
    )
    assert ok_max.status == "pass" and "25 C" in ok_max.detail
    nothing = pi_facts(packages={}, edgetpu_library=None)
    assert checks.check_runtime_package(nothing, exp).status == "fail"
    assert checks.check_runtime_package(nothing, expected.Expected()).status == "warn"
    no_lib = pi_facts(edgetpu_library=None)
    assert checks.check_runtime_package(no_lib, exp).status == "fail"


def test_udev_and_groups() -> None:
    exp = fact_exp()
    assert checks.check_udev(pi_facts(udev_rules=[]), exp).status == "fail"
    assert (
        checks.check_udev(pi_facts(udev_rules=[], packages={}), expected.Expected()).status
        == "warn"
    )
    outside = checks.check_user_groups(pi_facts(user_groups=["pi"]), exp)
    assert outside.status == "fail" and "plugdev" in outside.detail
    pcie = pi_facts(pci_devices=[PciDevice("/sys/bus/pci/devices/x", "1ac1", "089a")])
    no_apex = checks.check_user_groups(pcie, exp)
    assert no_apex.status == "fail" and "apex" in no_apex.detail
    assert checks.check_user_groups(pi_facts(user="root", user_groups=[]), exp).status == "pass"
    assert checks.check_user_groups(pi_facts(user="ghost", user_exists=False), exp).status == "fail"
    assert checks.check_user_groups(pi_facts(user=None), exp).status == "skip"


@pytest.mark.parametrize(
    ("ids", "speed", "status", "word"),
    [
        (("18d1", "9302"), "5000", "pass", "firmware loaded"),
        (("1a6e", "089a"), "5000", "pass", "firmware not loaded"),
        (("18d1", "9302"), "480", "warn", "USB2"),
        (("18d1", "9302"), "10000", "pass", "10000"),
    ],
)
def test_usb_accelerator(ids: tuple[str, str], speed: str, status: str, word: str) -> None:
    device = UsbDevice("/sys/bus/usb/devices/1-1", ids[0], ids[1], speed)
    result = checks.check_usb_accelerator(pi_facts(usb_devices=[device]), fact_exp())
    assert result.status == status and word in result.detail


def test_no_accelerator_is_a_warning_not_a_failure() -> None:
    hub = UsbDevice("/sys/bus/usb/devices/usb1", "1d6b", "0003", "5000")
    result = checks.check_usb_accelerator(pi_facts(usb_devices=[hub]), fact_exp())
    assert result.status == "warn" and "no accelerator attached" in result.detail
    pcie_exp = expected.Expected(accelerator="pcie")
    assert checks.check_usb_accelerator(pi_facts(usb_devices=[]), pcie_exp).status == "skip"


def test_pcie_accelerator() -> None:
    device = [PciDevice("/sys/bus/pci/devices/0000:01:00.0", "1ac1", "089a")]
    assert (
        checks.check_pcie_accelerator(
            pi_facts(pci_devices=device, apex_node=True), fact_exp()
        ).status
        == "pass"
    )
    no_node = checks.check_pcie_accelerator(pi_facts(pci_devices=device), fact_exp())
    assert no_node.status == "fail" and "gasket" in no_node.fix
    assert checks.check_pcie_accelerator(pi_facts(), fact_exp()).status == "skip"
    assert (
        checks.check_pcie_accelerator(pi_facts(), expected.Expected(accelerator="pcie")).status
        == "warn"
    )


def test_camera_follows_the_board_sections() -> None:
    off_for_pi4 = configtxt.evaluate("camera_auto_detect=1\n[pi4]\ncamera_auto_detect=0\n", PI4)
    result = checks.check_camera(pi_facts(config=off_for_pi4), fact_exp())
    assert result.status == "fail" and "camera_auto_detect=0" in result.detail
    assert checks.check_camera(pi_facts(board=None), fact_exp()).status == "skip"
    assert checks.check_camera(pi_facts(), fact_exp(camera_method="none")).status == "skip"
    legacy = fact_exp(camera_method="raspi-config-legacy", camera_config_path="/boot/config.txt")
    buster = pi_facts(
        os_codename="buster",
        boot_config="/boot/config.txt",
        config=configtxt.evaluate("start_x=1\ngpu_mem=128\n", PI4),
    )
    assert checks.check_camera(buster, legacy).status == "pass"
    low_mem = pi_facts(
        os_codename="buster",
        boot_config="/boot/config.txt",
        config=configtxt.evaluate("start_x=1\ngpu_mem=64\n", PI4),
    )
    assert checks.check_camera(low_mem, legacy).status == "warn"
    wrong_file = checks.check_camera(pi_facts(boot_config="/boot/config.txt"), fact_exp())
    assert wrong_file.status == "fail" and "/boot/firmware/config.txt" in wrong_file.detail


def test_power() -> None:
    assert checks.check_power(pi_facts(throttled=0), fact_exp()).status == "pass"
    warned = checks.check_power(pi_facts(throttled=0x50005), fact_exp())
    assert warned.status == "warn" and "under-voltage now" in warned.detail
    assert checks.check_power(pi_facts(board=None), fact_exp()).status == "skip"


def test_python_runtime_and_numpy() -> None:
    exp = fact_exp()
    missing = py_facts(
        runtime=RuntimeImport(error="tflite_runtime.interpreter: No module named 'tflite_runtime'")
    )
    result = checks.check_python_runtime(pi_facts(), missing, exp)
    assert result.status == "fail" and "venv" in result.fix
    other_version = py_facts(
        runtime=RuntimeImport("tflite_runtime.interpreter", "tflite-runtime", "2.13.0")
    )
    assert checks.check_python_runtime(pi_facts(), other_version, exp).status == "fail"
    official = pi_facts(packages={"libedgetpu1-std": "16.0"})
    pairing = checks.check_python_runtime(official, py_facts(), expected.Expected())
    assert pairing.status == "warn" and "segfault" in pairing.detail
    assert checks.check_numpy(py_facts(numpy_version="2.1.0"), exp).status == "fail"
    assert (
        checks.check_numpy(py_facts(numpy_version="2.1.0"), expected.Expected()).status == "fail"
    )  # tflite default <2
    litert = py_facts(
        runtime=RuntimeImport("ai_edge_litert.interpreter", "ai-edge-litert", "2.3.0"),
        numpy_version="2.1.0",
    )
    assert checks.check_numpy(litert, expected.Expected()).status == "pass"
    broken = py_facts(numpy_version=None, numpy_error="ImportError: _ARRAY_API not found")
    assert checks.check_numpy(broken, exp).status == "fail"


def test_opencv_atomic_symbol_names_the_preload() -> None:
    atomic = OpenCVImport(
        ok=False,
        error="ImportError: /usr/lib/cv2.so: undefined symbol: __atomic_fetch_add_8",
        returncode=1,
    )
    exp = fact_exp(ld_preload="/usr/lib/arm-linux-gnueabihf/libatomic.so.1")
    result = checks.check_opencv(py_facts(opencv=atomic), exp)
    assert result.status == "fail"
    assert "LD_PRELOAD of libatomic is missing" in result.detail
    assert "coralpi_opencv" in result.fix and "libatomic.so.1" in result.fix
    absent = OpenCVImport(ok=False, error="ModuleNotFoundError: No module named 'cv2'")
    assert checks.check_opencv(py_facts(opencv=absent), exp).status == "fail"
    assert checks.check_opencv(py_facts(opencv=absent), expected.Expected()).status == "warn"


def test_ld_preload_in_effect() -> None:
    lib = "/usr/lib/arm-linux-gnueabihf/libatomic.so.1"
    exp = fact_exp(ld_preload=lib)
    assert (
        checks.check_ld_preload(
            pi_facts(), py_facts(ld_preload_env=[lib]), exp, lambda p: True
        ).status
        == "pass"
    )
    assert (
        checks.check_ld_preload(
            pi_facts(ld_so_preload=[lib]), py_facts(), exp, lambda p: True
        ).status
        == "pass"
    )
    pth = "/opt/coralpi/venv/lib/python3.11/site-packages/coralpi-ld-preload.pth"
    by_pth = checks.check_ld_preload(
        pi_facts(),
        py_facts(
            loaded_libraries=["/usr/lib/arm-linux-gnueabihf/libatomic.so.1.2.0"],
            preload_pth={pth: f'import ctypes; ctypes.CDLL("{lib}")\n'},
        ),
        exp,
        lambda p: True,
    )
    assert by_pth.status == "pass" and "coralpi-ld-preload.pth" in by_pth.detail
    not_set = checks.check_ld_preload(pi_facts(), py_facts(), exp, lambda p: True)
    assert not_set.status == "fail" and "not in effect" in not_set.detail
    assert checks.check_ld_preload(pi_facts(), py_facts(), exp, lambda p: False).status == "fail"
    assert (
        checks.check_ld_preload(pi_facts(), py_facts(), fact_exp(), lambda p: True).status == "skip"
    )


def test_drift_against_the_local_fact_and_the_plan() -> None:
    exp = fact_exp()
    assert checks.check_drift(pi_facts(), py_facts(), exp, None).status == "pass"
    switched = pi_facts(packages={"libedgetpu1-max": "16.0tf2.17.1-1"})
    result = checks.check_drift(switched, py_facts(), exp, None)
    assert result.status == "fail" and result.fix == "re-run `coralpi apply`"
    assert "libedgetpu1-max" in result.detail
    upgraded = pi_facts(packages={"libedgetpu1-std": "16.0tf2.18.0-1"})
    assert "16.0tf2.18.0-1" in checks.check_drift(upgraded, py_facts(), exp, None).detail
    other_py = py_facts(
        runtime=RuntimeImport("tflite_runtime.interpreter", "tflite-runtime", "2.13.0")
    )
    assert checks.check_drift(pi_facts(), other_py, exp, None).status == "fail"
    plan = expected.from_plan(
        {"runtime": {"package": "libedgetpu1-max", "version": "16.0tf2.17.1-1"}}, "plan p.json"
    )
    planned = checks.check_drift(pi_facts(), py_facts(), plan, plan)
    assert planned.status == "fail" and "plan wants runtime_package=libedgetpu1-max" in (
        planned.detail
    )
    assert (
        checks.check_drift(pi_facts(local_fact=None), py_facts(), expected.Expected(), None).status
        == "skip"
    )
    assert (
        checks.check_drift(pi_facts(local_fact_error="bad json"), py_facts(), exp, None).status
        == "fail"
    )


def _smoke(**changes: Any) -> SmokeResult:
    result = SmokeResult(
        device="cpu",
        runtime={"package": "tflite-runtime", "version": "2.14.0"},
        model="m.tflite",
        top=[{"label": "Ara macao (Scarlet Macaw)", "score": 0.8}],
        latency_ms={"first": 70.0, "median": 60.0, "p95": 65.0},
        edgetpu_cause=Cause("no libedgetpu", "install it", ""),
        label_ok=True,
    )
    for key, value in changes.items():
        setattr(result, key, value)
    return result


def test_smoke_checks() -> None:
    label = "Ara macao (Scarlet Macaw)"
    no_device = by_name(checks.smoke_checks(_smoke(), pi_facts(usb_devices=[]), label))
    assert no_device["smoke_edgetpu"].status == "warn"
    assert "no accelerator attached" in no_device["smoke_edgetpu"].detail
    assert no_device["smoke_edgetpu"].detail.endswith("smoke test ran on the CPU")
    assert no_device["smoke"].status == "pass"
    # An Edge TPU model without an Edge TPU: nothing ran, and the check says so.
    edgetpu_model = _smoke(device=None, top=[], latency_ms=None, error=Cause("needs a TPU", "", ""))
    nothing = by_name(checks.smoke_checks(edgetpu_model, pi_facts(usb_devices=[]), label))
    assert nothing["smoke_edgetpu"].detail.endswith("the smoke test did not run")
    attached = by_name(checks.smoke_checks(_smoke(), pi_facts(), label))
    assert attached["smoke_edgetpu"].status == "fail"
    on_tpu = by_name(
        checks.smoke_checks(_smoke(device="edgetpu", edgetpu_cause=None), pi_facts(), label)
    )
    assert on_tpu["smoke_edgetpu"].status == "pass"
    wrong = by_name(
        checks.smoke_checks(
            _smoke(top=[{"label": "Corvus corax", "score": 0.9}], label_ok=False),
            pi_facts(usb_devices=[]),
            label,
        )
    )
    assert wrong["smoke"].status == "fail" and "Corvus corax" in wrong["smoke"].detail
    slow = by_name(checks.smoke_checks(_smoke(slow=True, note="USB2"), pi_facts(), label))
    assert slow["smoke"].status == "warn"
    broken = by_name(
        checks.smoke_checks(
            _smoke(top=[], latency_ms=None, error=Cause("sha256 mismatch", "fetch again", "")),
            pi_facts(usb_devices=[]),
            label,
        )
    )
    assert broken["smoke"].status == "fail" and "sha256" in broken["smoke"].detail


def test_check_result_rejects_unknown_status() -> None:
    with pytest.raises(ValueError):
        checks.CheckResult("x", "ok", "")


def test_camera_shows_what_reading_config_txt_ran_into() -> None:
    looping = configtxt.evaluate(
        "camera_auto_detect=1\ninclude config.txt\n",
        PI4,
        "/boot/firmware/config.txt",
        {"config.txt": "include config.txt\n"}.get,
    )
    result = checks.check_camera(pi_facts(config=looping), fact_exp())
    assert result.status == "warn"
    assert "camera_auto_detect=1 in effect" in result.detail
    assert "include cycle /boot/firmware/config.txt -> config.txt" in result.detail
    assert "include cycle" in result.fix
    missing = configtxt.evaluate("camera_auto_detect=1\ninclude extra.txt\n", PI4, "c", {}.get)
    noted = checks.check_camera(pi_facts(config=missing), fact_exp())
    assert noted.status == "pass" and "c:2: included file 'extra.txt' not found" in noted.detail
