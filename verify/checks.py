"""Judge the facts: each check returns one result (pass, warn, fail or skip) with a fix.

Pure functions of `SystemFacts`, `PythonFacts` and `Expected`; no I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import coral_keys, errors
from .expected import Expected, default_numpy_constraint, satisfies, variant_of
from .facts import (
    PCI_IDS,
    RUNTIME_PACKAGES,
    USB_IDS_BOOTLOADER,
    USB_IDS_RUNNING,
    PythonFacts,
    SystemFacts,
    is_coral_source,
)
from .smoke import MIN_SCORE, SmokeResult
from .usbpower import CORAL_USB_MA, FULL_MA, FULL_SUPPLY_MA, LIMITED_MA, has_pi5_power

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)

KNOWN_CODENAMES = ("buster", "bullseye", "bookworm", "trixie")
SUPPORTED_ARCHES = ("aarch64", "armv7l", "x86_64")
APPLY = "re-run `coralpi apply`"
NOT_ACCEPTED = "not a key accepted"


@dataclass
class CheckResult:
    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown check status {self.status!r}")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def _pass(name: str, detail: str) -> CheckResult:
    return CheckResult(name, PASS, detail)


def _skip(name: str, detail: str) -> CheckResult:
    return CheckResult(name, SKIP, detail)


# ------------------------------------------------------------------- system


def check_os(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "os"
    os_text = f"{sys_facts.os_id or 'unknown OS'} {sys_facts.os_codename or '?'}"
    where = f"{os_text} on {sys_facts.arch}"
    if sys_facts.board:
        where += f" ({sys_facts.board})"
    if sys_facts.arch == "armv6l":
        return CheckResult(
            name,
            FAIL,
            where + ": no Edge TPU runtime or tflite wheels for armv6l (Pi Zero / Pi 1)",
            "use a Pi 3, 4, 5 or Zero 2 with a 32- or 64-bit OS",
        )
    debian_like = sys_facts.os_id in ("debian", "raspbian") or "debian" in (sys_facts.os_like or "")
    if not debian_like:
        return CheckResult(
            name,
            WARN,
            where + ": not a Debian-based system",
            "use Raspberry Pi OS or Debian (bullseye, bookworm, trixie)",
        )
    if sys_facts.arch not in SUPPORTED_ARCHES:
        return CheckResult(
            name, WARN, where + ": architecture not in " + ", ".join(SUPPORTED_ARCHES), ""
        )
    if sys_facts.os_codename not in KNOWN_CODENAMES:
        return CheckResult(name, WARN, where + ": release not in " + ", ".join(KNOWN_CODENAMES), "")
    if sys_facts.os_codename == "buster":
        return _pass(name, where + " (archived release; needs an ansible-core 2.17 controller)")
    return _pass(name, where)


def check_apt_source(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "coral_apt_source"
    coral = [s for s in sys_facts.apt_sources if is_coral_source(s) and s.enabled]
    # The fingerprints the controller's lock accepted (local fact or plan); coralpi's own
    # default only when neither recorded them. One list: verify/coral_keys.py.
    accepted = set(exp.coral_key_fingerprints or coral_keys.ACCEPTED)
    by = "the lock" if exp.coral_key_fingerprints else "coralpi's default"
    # Google's keys, or the key a Coral source is signed by, in apt's global (apt-key) keyring
    google_keys = accepted | set(coral_keys.NOT_TRUSTED)
    for source in coral:
        keyring = sys_facts.keyrings.get(source.signed_by or "")
        if keyring is not None:
            google_keys.update(keyring.fingerprints)
    global_hits = [k.path for k in sys_facts.trusted_keyrings if set(k.fingerprints) & google_keys]
    global_note = (
        ""
        if not global_hits
        else "; the Coral key is also in apt's global keyring ("
        + ", ".join(global_hits)
        + "), which lets it sign any repository"
    )
    global_fix = (
        "remove the Google key from "
        + ", ".join(global_hits)
        + " (apt-key style); the source's signed-by keyring is enough"
        if global_hits
        else ""
    )
    if not coral:
        if exp.runtime_source == "community-deb":
            return _skip(
                name,
                "runtime comes from the community .debs; no Coral apt source "
                "expected" + global_note,
            )
        status = FAIL if exp.runtime_source == "coral-apt" else WARN
        return CheckResult(
            name,
            status,
            "no Coral apt source (coral-edgetpu-stable) configured" + global_note,
            APPLY + " (role coralpi_apt)",
        )
    problems: list[str] = []
    untrusted_only: list[str] = []
    notes: list[str] = []
    for source in coral:
        label = f"{source.file} ({' '.join(source.uris)})"
        if "coral-edgetpu-stable" not in source.suites:
            dead = [s for s in source.suites if s in ("coral-cloud-stable", "coral-stable")]
            if dead:
                problems.append(f"{label}: suite {dead[0]} is dead (404); use coral-edgetpu-stable")
        if source.signed_by is None:
            problems.append(f"{label}: no signed-by (trusts every key in apt's keyring)")
            continue
        if source.signed_by == "inline":
            notes.append(f"{label}: key embedded in the source")
            continue
        keyring = sys_facts.keyrings.get(source.signed_by)
        if keyring is None or not keyring.fingerprints:
            problems.append(f"{label}: keyring {source.signed_by} missing or unreadable")
            continue
        known = set(keyring.fingerprints) & accepted
        untrusted = [
            f"{f} ({coral_keys.NOT_TRUSTED[f]})"
            for f in keyring.fingerprints
            if f in coral_keys.NOT_TRUSTED and f not in accepted
        ]
        if known:
            notes.append(
                f"{source.file} signed-by {source.signed_by} ({sorted(known)[0]}, accepted by "
                f"{by})" + (f"; also holds {', '.join(untrusted)}" if untrusted else "")
            )
        elif untrusted:
            untrusted_only.append(
                f"{label}: keyring {source.signed_by} holds only {', '.join(untrusted)}; "
                f"none accepted by {by} ({', '.join(sorted(accepted))})"
            )
        else:
            notes.append(
                f"{source.file} signed-by {source.signed_by}: holds "
                + ", ".join(keyring.fingerprints)
                + f", {NOT_ACCEPTED} by {by} ({', '.join(sorted(accepted))})"
            )
    if problems:
        return CheckResult(
            name,
            FAIL,
            "; ".join(problems) + global_note,
            APPLY + " (role coralpi_apt writes a signed-by source and keyring)",
        )
    if untrusted_only:
        return CheckResult(
            name,
            FAIL,
            "; ".join(untrusted_only + notes) + global_note,
            APPLY + " (role coralpi_apt writes the keyring of the accepted keys only)",
        )
    detail = "; ".join(notes)
    if global_hits:
        return CheckResult(name, WARN, detail + global_note, global_fix)
    if any(NOT_ACCEPTED in note for note in notes):
        return CheckResult(
            name,
            WARN,
            detail,
            "check the keyring against Google's published fingerprints; a rotated key goes "
            "in coralpi_coral_key_fingerprints, then `coralpi lock` and " + APPLY,
        )
    return _pass(name, detail)


def check_runtime_package(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "edgetpu_runtime"
    installed = {p: v for p, v in sys_facts.packages.items() if p in RUNTIME_PACKAGES}
    lib = sys_facts.edgetpu_library
    if len(installed) > 1:
        return CheckResult(
            name,
            FAIL,
            "both " + " and ".join(sorted(installed)) + " are installed (they conflict)",
            APPLY + " (installs exactly the chosen variant)",
        )
    if not installed:
        detail = "no libedgetpu1-std/max package installed"
        if lib:
            detail += f" ({lib} present from elsewhere)"
        status = FAIL if exp.runtime_package or exp.runtime_variant else WARN
        if lib and status == WARN:
            return _pass(name, f"libedgetpu.so.1 at {lib} (not from a package)")
        return CheckResult(name, status, detail, APPLY + " (role coralpi_edgetpu)")
    package, version = next(iter(installed.items()))
    detail = f"{package} {version}"
    if not lib:
        return CheckResult(
            name,
            FAIL,
            detail + " installed but libedgetpu.so.1 is missing",
            "reinstall the package: " + APPLY,
        )
    variant = variant_of(package)
    if exp.runtime_variant and variant != exp.runtime_variant:
        return CheckResult(
            name,
            FAIL,
            f"{detail} installed, {exp.runtime_variant} expected ({exp.origin})",
            APPLY + " (switches std/max)",
        )
    if variant == "max":
        detail += " (max clock: keep the accelerator at or below 25 C ambient)"
    return _pass(name, detail)


def check_udev(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "udev_rules"
    if sys_facts.udev_rules:
        return _pass(name, ", ".join(sys_facts.udev_rules))
    expected = bool(exp.runtime_package or exp.runtime_variant) or any(
        p in sys_facts.packages for p in RUNTIME_PACKAGES
    )
    return CheckResult(
        name,
        FAIL if expected else WARN,
        "no udev rules for the accelerator (1a6e:089a / 18d1:9302): only root can open it",
        "reinstall the runtime package, which ships them: " + APPLY,
    )


def _wants_pcie(sys_facts: SystemFacts, exp: Expected) -> bool:
    return exp.accelerator == "pcie" or any(
        (d.vendor, d.device) == PCI_IDS for d in sys_facts.pci_devices
    )


def check_user_groups(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "user_groups"
    user = sys_facts.user
    if not user:
        return _skip(name, "no user given (--user)")
    if user == "root":
        return _pass(name, "root opens the device regardless of groups")
    if not sys_facts.user_exists:
        return CheckResult(
            name, FAIL, f"user {user!r} does not exist", "set coralpi_user to an existing account"
        )
    needed = ["plugdev"] + (["apex"] if _wants_pcie(sys_facts, exp) else [])
    missing = [g for g in needed if g not in sys_facts.user_groups]
    if missing:
        return CheckResult(
            name,
            FAIL,
            f"{user} is not in "
            + ", ".join(missing)
            + ": 'Failed to load delegate' for that user while root works",
            APPLY + f" (adds {user} to " + ", ".join(missing) + "), then log in again",
        )
    return _pass(name, f"{user} in " + ", ".join(needed))


def check_usb_accelerator(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "usb_accelerator"
    found = [
        d
        for d in sys_facts.usb_devices
        if (d.vendor, d.product) in (USB_IDS_RUNNING, USB_IDS_BOOTLOADER)
    ]
    if not found:
        if exp.accelerator == "pcie":
            return _skip(name, "accelerator is PCIe (choices.accelerator)")
        return CheckResult(
            name,
            WARN,
            "no accelerator attached (no USB 1a6e:089a or "
            "18d1:9302); the smoke test runs on the CPU",
            "plug the Coral USB Accelerator into a USB3 (blue) port",
        )
    device = found[0]
    ids = f"{device.vendor}:{device.product}"
    state = (
        "firmware not loaded yet; the runtime loads it on first use"
        if (device.vendor, device.product) == USB_IDS_BOOTLOADER
        else "firmware loaded"
    )
    speed = device.speed or "unknown"
    detail = f"{ids} ({state}), link {speed} Mb/s"
    try:
        mbps = float(speed)
    except ValueError:
        return CheckResult(name, WARN, detail, "")
    if mbps >= 5000:
        return _pass(name, detail)
    return CheckResult(
        name,
        WARN,
        detail + ": USB2 or slower costs 3-4x latency",
        "use a USB3 (blue) port and a USB3 cable; on a Pi 3 there is only USB2",
    )


PCIE_HEADERS_FIX = (
    "install the headers of the running kernel (its flavour's metapackage, e.g. "
    "linux-headers-rpi-v8 for kernel8.img) and rebuild: sudo dkms autoinstall"
)


def _pending_kernel(sys_facts: SystemFacts) -> str | None:
    """The pending config.txt line that switches the kernel, if coralpi recorded one."""
    return next((p for p in sys_facts.kernel.reboot_pending if "kernel=" in p), None)


def check_pcie_kernel(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    """The apex driver needs 4k pages: the Pi 5's default kernel_2712.img has 16k."""
    name = "pcie_kernel"
    if not _wants_pcie(sys_facts, exp):
        return _skip(name, "no PCIe accelerator expected or present")
    kern = sys_facts.kernel
    page = kern.page_size
    release = kern.release or "unknown kernel"
    if page is None:
        return CheckResult(name, WARN, f"page size of {release} unknown", "")
    if page == 4096:
        return _pass(name, f"4k pages ({release})")
    pending = _pending_kernel(sys_facts)
    return CheckResult(
        name,
        FAIL,
        f"{page // 1024}k pages ({release}): the apex driver does not work with them",
        f"reboot: {pending} is pending"
        if pending
        else "boot the 4k-page kernel: kernel=kernel8.img in config.txt (coralpi apply with "
        "coralpi_accelerator: pcie writes it), then reboot",
    )


def check_pcie_driver(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    """The gasket/apex module: loaded, or at least built for the kernel that runs."""
    name = "pcie_driver"
    if not _wants_pcie(sys_facts, exp):
        return _skip(name, "no PCIe accelerator expected or present")
    kern = sys_facts.kernel
    release = kern.release or "the running kernel"
    if kern.driver_loaded:
        return _pass(name, f"apex module loaded ({release})")
    if kern.driver_for_running:
        return CheckResult(
            name,
            FAIL,
            f"apex module built for {release} but not loaded",
            "sudo modprobe apex (see dmesg if it fails); coralpi_pcie loads it at every boot",
        )
    others = sorted(r for r in kern.module_files if r != kern.release)
    if others:
        headers = "" if kern.release in kern.headers_for else " (its headers are not installed)"
        return CheckResult(
            name,
            FAIL,
            f"{release} has no apex module{headers}; it was built for {', '.join(others)} "
            "only (a kernel upgrade without its headers?)",
            PCIE_HEADERS_FIX + ", then sudo modprobe apex",
        )
    return CheckResult(
        name,
        FAIL,
        "no apex module for any kernel: gasket-dkms is not installed or its DKMS build failed",
        APPLY + " (installs the gasket-dkms build and the kernel headers; a failed build names "
        "/var/lib/dkms/gasket/1.0/build/make.log)",
    )


def check_pcie_accelerator(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "pcie_accelerator"
    found = [d for d in sys_facts.pci_devices if (d.vendor, d.device) == PCI_IDS]
    if not found:
        if exp.accelerator == "pcie":
            pending = sys_facts.kernel.reboot_pending
            return CheckResult(
                name,
                WARN,
                "no accelerator attached (no PCI 1ac1:089a in /sys/bus/pci/devices)",
                f"reboot: {', '.join(pending)} pending"
                if pending
                else "seat the M.2/PCIe Coral; on a Pi 5 dtparam=pciex1 must be in effect",
            )
        return _skip(name, "no PCIe accelerator expected or present")
    device = found[0].path.rsplit("/", 1)[-1]
    if not sys_facts.apex_node:
        kern = sys_facts.kernel
        why = (
            "the apex module is loaded but made no node"
            if kern.driver_loaded
            else "the apex driver is not loaded (see pcie_driver)"
        )
        return CheckResult(
            name,
            FAIL,
            f"PCI 1ac1:089a at {device} but /dev/apex_0 is missing: {why}",
            "see dmesg for apex errors; on a Pi 5 the 4k-page kernel (kernel=kernel8.img) and "
            "the msi-parent overlay (dtoverlay=pciex1-compat-pi5,no-mip) are needed"
            if sys_facts.kernel.driver_loaded
            else "load the driver: sudo modprobe apex (" + APPLY + " installs gasket-dkms)",
        )
    group = sys_facts.kernel.apex_group
    if group is not None and group != "apex":
        return CheckResult(
            name,
            FAIL,
            f"/dev/apex_0 belongs to group {group}, not apex: only root can use the Edge TPU",
            'the udev rule SUBSYSTEM=="apex", MODE="0660", GROUP="apex" '
            "(/etc/udev/rules.d/65-apex.rules, " + APPLY + "), then sudo udevadm trigger",
        )
    return _pass(name, f"PCI 1ac1:089a at {device}, /dev/apex_0 (group {group or 'unknown'})")


def check_reboot(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    """A reboot coralpi (or a package) left pending: what waits for it."""
    name = "reboot"
    kern = sys_facts.kernel
    if kern.reboot_pending:
        return CheckResult(
            name,
            WARN,
            "reboot needed: pending " + "; ".join(kern.reboot_pending),
            "sudo reboot (or coralpi apply with coralpi_allow_reboot: true), then verify again",
        )
    if kern.reboot_required:
        return CheckResult(
            name, WARN, "reboot needed (/run/reboot-required)", "sudo reboot, then verify again"
        )
    return _pass(name, "no reboot pending")


def check_camera(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    """The camera settings in effect, with what reading config.txt ran into (an include
    cycle or a limit makes a pass a warning: part of the file was not read)."""
    result = _camera_settings(sys_facts, exp)
    config = sys_facts.config
    if result.status == SKIP or config is None or not config.problems:
        return result
    more = len(config.problems) - 1
    detail = result.detail + "; config.txt: " + config.problems[0]
    detail += f" (and {more} more)" if more else ""
    if config.incomplete and result.status == PASS:
        fix = "remove the include cycle or the excess includes from config.txt"
        return CheckResult(result.name, WARN, detail, fix)
    return CheckResult(result.name, result.status, detail, result.fix)


def _camera_settings(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "camera"
    if not sys_facts.is_pi:
        return _skip(name, "not a Raspberry Pi")
    if exp.camera is False:
        return _skip(name, "camera not wanted (coralpi_camera: false)")
    if sys_facts.boot_config is None or sys_facts.config is None:
        return CheckResult(
            name, FAIL, "no config.txt found (/boot/firmware or /boot)", "mount the boot partition"
        )
    if exp.camera_config_path and exp.camera_config_path != sys_facts.boot_config:
        return CheckResult(
            name,
            FAIL,
            f"camera was configured in {exp.camera_config_path}, "
            f"but {sys_facts.boot_config} is the config.txt in effect",
            APPLY,
        )
    config = sys_facts.config
    method = exp.camera_method
    if method is None:
        method = (
            "raspi-config-legacy" if sys_facts.os_codename == "buster" else "camera-auto-detect"
        )
    where = sys_facts.boot_config
    if method == "raspi-config-legacy":
        start_x = config.get("start_x")
        gpu_mem = config.get("gpu_mem")
        if start_x != "1":
            return CheckResult(
                name,
                FAIL if exp.camera else WARN,
                f"legacy camera stack not enabled for this board in {where} (start_x={start_x})",
                APPLY + " (role coralpi_camera)",
            )
        try:
            low = gpu_mem is not None and int(gpu_mem) < 128
        except ValueError:
            low = False
        if low:
            return CheckResult(
                name, WARN, f"start_x=1 but gpu_mem={gpu_mem} (< 128)", "set gpu_mem=128: " + APPLY
            )
        return _pass(name, f"start_x=1 in {where}")
    if method == "none":
        return _skip(name, "no camera method for this host")
    value = config.get("camera_auto_detect")
    if value != "1":
        return CheckResult(
            name,
            FAIL if exp.camera else WARN,
            f"camera_auto_detect={value} for this board in {where}",
            APPLY + " (role coralpi_camera)",
        )
    return _pass(name, f"camera_auto_detect=1 in effect in {where}")


def check_power(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    name = "power"
    if not sys_facts.is_pi:
        return _skip(name, "not a Raspberry Pi")
    if sys_facts.throttled is None:
        return _skip(name, "throttling state not readable")
    value = sys_facts.throttled
    if value == 0:
        return _pass(name, "no under-voltage or throttling since boot")
    now = []
    if value & 0x1:
        now.append("under-voltage now")
    if value & 0x4:
        now.append("throttled now")
    if value & 0x10000:
        now.append("under-voltage since boot")
    if value & 0x40000:
        now.append("throttled since boot")
    return CheckResult(
        name,
        WARN,
        f"get_throttled=0x{value:x}" + (": " + ", ".join(now) if now else ""),
        "use the official power supply and a powered USB hub for the accelerator; cool the board",
    )


def _usb_coral(sys_facts: SystemFacts) -> bool:
    return any(
        (d.vendor, d.product) in (USB_IDS_RUNNING, USB_IDS_BOOTLOADER)
        for d in sys_facts.usb_devices
    )


def check_usb_power(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    """A Pi 5's USB ports give 600 mA in total unless the supply announced 5 A or
    usb_max_current_enable=1 is in effect; the Coral USB Accelerator may draw 900 mA."""
    name = "usb_power"
    if not has_pi5_power(sys_facts.board):
        return _skip(name, "no Pi 5 USB current limit on this board")
    if exp.accelerator == "pcie" or (exp.accelerator is None and not _usb_coral(sys_facts)):
        return _skip(name, "no USB accelerator expected or attached")
    power = sys_facts.usb_power
    config = sys_facts.config
    in_config = config is not None and config.get("usb_max_current_enable") == "1"
    supply = power.supply_max_ma
    supply_text = (
        f"the supply announced {supply} mA"
        if supply is not None
        else ("the supply's current is unknown (no /proc/device-tree/chosen/power/max_current)")
    )
    if power.over_current:
        return CheckResult(
            name,
            WARN,
            f"the firmware saw a USB over-current ({supply_text})",
            "power the Coral through a powered USB hub, or use the 27 W (5 V 5 A) supply",
        )
    if (supply is not None and supply >= FULL_SUPPLY_MA) or in_config or power.limit_lifted_dt:
        why = (
            f"{supply_text}"
            if supply is not None and supply >= FULL_SUPPLY_MA
            else "usb_max_current_enable=1 is in effect"
        )
        return _pass(name, f"USB ports may draw {FULL_MA} mA ({why})")
    return CheckResult(
        name,
        WARN,
        f"USB ports limited to {LIMITED_MA} mA in total ({supply_text}, no "
        f"usb_max_current_enable=1): the Coral USB Accelerator may draw up to {CORAL_USB_MA} mA "
        "and drop off the bus under load",
        "use the 27 W (5 V 5 A) USB-C supply; with another supply that can give 5 A, add "
        "usb_max_current_enable=1 under [all] in config.txt and reboot; or a powered USB hub",
    )


def check_camera_sensor(sys_facts: SystemFacts, exp: Expected) -> CheckResult:
    """What the camera stack itself reports (rpicam-hello / libcamera-hello --list-cameras,
    vcgencmd get_camera on Buster), beside the config.txt line `camera` checks."""
    name = "camera_sensor"
    if not sys_facts.is_pi:
        return _skip(name, "not a Raspberry Pi")
    if exp.camera is False:
        return _skip(name, "camera not wanted (coralpi_camera: false)")
    camera = sys_facts.camera
    if camera.tool is None:
        return _skip(
            name,
            "no camera tool answered (rpicam-hello, libcamera-hello, vcgencmd), or run "
            "under --root",
        )
    if camera.detected is None:
        return CheckResult(
            name,
            WARN,
            f"{camera.tool} gave no answer verify could read: {camera.error}",
            f"run {camera.tool} by hand and see its message",
        )
    if camera.detected:
        return _pass(name, f"{', '.join(camera.sensors)} found by {camera.tool}")
    pending = [p for p in sys_facts.kernel.reboot_pending if "camera" in p]
    if pending:
        return CheckResult(
            name,
            WARN,
            f"no camera sensor found by {camera.tool}; a reboot is pending ({pending[0]})",
            "sudo reboot, then verify again",
        )
    return CheckResult(
        name,
        FAIL if exp.camera else WARN,
        f"no camera sensor found by {camera.tool}",
        "power off, reseat the camera's ribbon cable (contacts towards the board's contacts), "
        "boot and run " + camera.tool,
    )


# ------------------------------------------------------------------- python side


def check_python_runtime(sys_facts: SystemFacts, py: PythonFacts, exp: Expected) -> CheckResult:
    name = "python_runtime"
    runtime = py.runtime
    if runtime.module is None:
        cause = errors.translate(runtime.error or "no inference runtime")
        return CheckResult(
            name,
            FAIL,
            f"python {py.python}: {cause.cause}",
            cause.fix or APPLY + " (role coralpi_python)",
        )
    detail = f"{runtime.package} {runtime.version or '?'} ({runtime.module}, python {py.python})"
    if exp.python_runtime_package and runtime.package != exp.python_runtime_package:
        return CheckResult(
            name,
            FAIL,
            f"{detail}; {exp.python_runtime_package} expected ({exp.origin})",
            APPLY + " (role coralpi_python)",
        )
    if exp.python_runtime_version and runtime.version != exp.python_runtime_version:
        return CheckResult(
            name,
            FAIL,
            f"{detail}; {exp.python_runtime_version} expected ({exp.origin})",
            APPLY + " (role coralpi_python)",
        )
    official = [
        v
        for p, v in sys_facts.packages.items()
        if p in RUNTIME_PACKAGES and v.split("-")[0] in ("16.0", "15.0", "14.1")
    ]
    if (
        official
        and runtime.package == "tflite-runtime"
        and runtime.version
        and not satisfies(runtime.version, "<=2.11.1")
    ):
        return CheckResult(
            name,
            WARN,
            f"{detail} with official libedgetpu {official[0]}: "
            "reported to segfault with tflite-runtime newer than 2.11.1",
            "use the community runtime built for newer TF, or tflite-runtime "
            "<= 2.11.1 (`coralpi plan` picks a safe pair)",
        )
    return _pass(name, detail)


def check_numpy(py: PythonFacts, exp: Expected) -> CheckResult:
    name = "numpy"
    if py.numpy_version is None:
        cause = errors.translate(py.numpy_error or "numpy missing")
        return CheckResult(name, FAIL, f"numpy does not import: {cause.cause}", cause.fix or APPLY)
    constraint = exp.numpy_constraint or default_numpy_constraint(py.runtime.package)
    if not constraint:
        return _pass(name, f"numpy {py.numpy_version}")
    try:
        ok = satisfies(py.numpy_version, constraint)
    except ValueError as exc:
        return CheckResult(name, WARN, f"numpy {py.numpy_version}: {exc}", "")
    if not ok:
        return CheckResult(
            name,
            FAIL,
            f"numpy {py.numpy_version} does not meet {constraint} "
            f"(needed by {py.runtime.package or 'the runtime'})",
            f"install numpy{constraint} in the venv: " + APPLY,
        )
    return _pass(name, f"numpy {py.numpy_version} meets {constraint}")


def check_opencv(py: PythonFacts, exp: Expected) -> CheckResult:
    name = "opencv"
    probe = py.opencv
    if probe is None:
        return _skip(name, "not probed")
    if probe.ok:
        return _pass(name, f"cv2 {probe.version or '?'} imports")
    cause = errors.translate(probe.error or "")
    expected = exp.opencv_source is not None
    if "__atomic_" in (probe.error or ""):
        return CheckResult(
            name,
            FAIL,
            "import cv2: " + (probe.error or "") + " -> LD_PRELOAD of libatomic is missing",
            "preload libatomic (plan ld_preload "
            + (exp.ld_preload or "/usr/lib/arm-linux-gnueabihf/libatomic.so.1")
            + "): "
            + APPLY
            + " (role coralpi_opencv)",
        )
    return CheckResult(
        name,
        FAIL if expected else WARN,
        "import cv2: " + cause.cause,
        cause.fix or APPLY + " (role coralpi_opencv)",
    )


def check_ld_preload(
    sys_facts: SystemFacts, py: PythonFacts, exp: Expected, lib_exists: Callable[[str], bool]
) -> CheckResult:
    """The plan's preload (libatomic on armv7l) is in effect: set in LD_PRELOAD or
    /etc/ld.so.preload, or loaded into this very process (the venv's .pth preload)."""
    name = "ld_preload"
    ways = _preload_ways(sys_facts, py, exp.ld_preload)
    if not exp.ld_preload_known:
        if ways:
            return _pass(
                name, "; ".join(f"{lib} ({how})" for lib, how in ways) + " (no expectation)"
            )
        return _skip(name, "no plan or local fact saying whether a preload is needed")
    if exp.ld_preload is None:
        return _skip(name, "no preload needed on this platform")
    wanted = exp.ld_preload
    if not lib_exists(wanted):
        return CheckResult(
            name,
            FAIL,
            f"{wanted} does not exist",
            "install libatomic1: " + APPLY + " (role coralpi_opencv)",
        )
    basename = wanted.rsplit("/", 1)[-1]
    hows = [how for lib, how in ways if lib == wanted or lib.rsplit("/", 1)[-1] == basename]
    if hows:
        return _pass(name, f"{wanted} preloaded ({', '.join(hows)})")
    return CheckResult(
        name,
        FAIL,
        f"{wanted} expected to be preloaded but it is not in "
        "effect for this Python (not in LD_PRELOAD, /etc/ld.so.preload, or "
        "loaded at start-up)",
        "run verify with the coralpi venv's python (its coralpi-ld-preload.pth "
        "loads it) or " + APPLY + " (role coralpi_opencv)",
    )


def _preload_ways(
    sys_facts: SystemFacts, py: PythonFacts, wanted: str | None
) -> list[tuple[str, str]]:
    """(library, how it is preloaded) pairs in effect for this Python."""
    ways = [(lib, "LD_PRELOAD") for lib in py.ld_preload_env]
    ways += [(lib, "/etc/ld.so.preload") for lib in sys_facts.ld_so_preload]
    if wanted is None:
        ways += [(pth, "start-up .pth preload") for pth in py.preload_pth]
        return ways
    base = wanted.rsplit("/", 1)[-1]
    # /proc/self/maps shows the resolved file (libatomic.so.1 -> libatomic.so.1.2.0)
    if any(lib.rsplit("/", 1)[-1].startswith(base) for lib in py.loaded_libraries):
        pths = [p.rsplit("/", 1)[-1] for p, text in py.preload_pth.items() if base in text]
        ways.append(
            (wanted, "loaded at start-up by " + pths[0] if pths else "loaded in this process")
        )
    return ways


def check_drift(
    sys_facts: SystemFacts, py: PythonFacts, exp: Expected, plan_exp: Expected | None
) -> CheckResult:
    """Installed runtime and Python runtime vs the local fact (and the plan vs the fact)."""
    name = "drift"
    fact = sys_facts.local_fact
    if sys_facts.local_fact_error:
        return CheckResult(name, FAIL, sys_facts.local_fact_error, APPLY)
    if fact is None and plan_exp is None:
        return _skip(name, "no local fact (/etc/ansible/facts.d/coralpi.fact) and no plan")
    reference = exp
    differences: list[str] = []
    installed = {p: v for p, v in sys_facts.packages.items() if p in RUNTIME_PACKAGES}
    if reference.runtime_package:
        have = installed.get(reference.runtime_package)
        if have is None:
            now = ", ".join(f"{p} {v}" for p, v in installed.items()) or "nothing"
            differences.append(f"runtime {reference.runtime_package} recorded, {now} installed")
        elif reference.runtime_version and have != reference.runtime_version:
            differences.append(
                f"runtime {reference.runtime_package} {have} installed, "
                f"{reference.runtime_version} recorded"
            )
    if (
        reference.python_runtime_version
        and py.runtime.version
        and (
            py.runtime.version != reference.python_runtime_version
            or (
                reference.python_runtime_package
                and py.runtime.package != reference.python_runtime_package
            )
        )
    ):
        differences.append(
            f"{py.runtime.package} {py.runtime.version} imports, "
            f"{reference.python_runtime_package} "
            f"{reference.python_runtime_version} recorded"
        )
    if plan_exp is not None and fact is not None:
        recorded = _fact_fields(fact)
        for key, planned in (
            ("runtime_package", plan_exp.runtime_package),
            ("runtime_version", plan_exp.runtime_version),
            ("python_runtime_package", plan_exp.python_runtime_package),
            ("python_runtime_version", plan_exp.python_runtime_version),
        ):
            if planned and recorded.get(key) and recorded[key] != planned:
                differences.append(f"plan wants {key}={planned}, host recorded {recorded[key]}")
    origin = reference.origin or "the local fact"
    if differences:
        return CheckResult(name, FAIL, "; ".join(differences), APPLY)
    when = fact.get("provisioned_at") if fact else None
    return _pass(
        name, f"installed matches the {origin}" + (f" (provisioned {when})" if when else "")
    )


def _fact_fields(fact: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in fact.items() if v is not None}


def run_all(
    sys_facts: SystemFacts,
    py: PythonFacts,
    exp: Expected,
    plan_exp: Expected | None = None,
    lib_exists: Callable[[str], bool] | None = None,
) -> list[CheckResult]:
    exists = lib_exists or (lambda path: False)
    return [
        check_os(sys_facts, exp),
        check_apt_source(sys_facts, exp),
        check_runtime_package(sys_facts, exp),
        check_udev(sys_facts, exp),
        check_user_groups(sys_facts, exp),
        check_usb_accelerator(sys_facts, exp),
        check_pcie_kernel(sys_facts, exp),
        check_pcie_driver(sys_facts, exp),
        check_pcie_accelerator(sys_facts, exp),
        check_reboot(sys_facts, exp),
        check_python_runtime(sys_facts, py, exp),
        check_numpy(py, exp),
        check_opencv(py, exp),
        check_ld_preload(sys_facts, py, exp, exists),
        check_camera(sys_facts, exp),
        check_camera_sensor(sys_facts, exp),
        check_power(sys_facts, exp),
        check_usb_power(sys_facts, exp),
        check_drift(sys_facts, py, exp, plan_exp),
    ]


def smoke_checks(
    smoke: SmokeResult, sys_facts: SystemFacts, expect_label: str | None
) -> list[CheckResult]:
    """Judge the smoke test: was the Edge TPU used, and did it classify correctly?"""
    attached = any(
        (d.vendor, d.product) in (USB_IDS_RUNNING, USB_IDS_BOOTLOADER)
        for d in sys_facts.usb_devices
    ) or any((d.vendor, d.device) == PCI_IDS for d in sys_facts.pci_devices)
    results: list[CheckResult] = []
    cause = smoke.edgetpu_cause
    if smoke.device == "edgetpu":
        results.append(_pass("smoke_edgetpu", "Edge TPU delegate loaded; ran on the Edge TPU"))
    elif smoke.device is None and smoke.error is not None and cause is None:
        results.append(_skip("smoke_edgetpu", "smoke test did not run"))
    elif attached:
        results.append(
            CheckResult(
                "smoke_edgetpu",
                FAIL,
                "accelerator attached but no Edge TPU usable: "
                + (cause.cause if cause else "unknown"),
                cause.fix if cause and cause.fix else APPLY,
            )
        )
    else:
        results.append(
            CheckResult(
                "smoke_edgetpu",
                WARN,
                "no accelerator attached; no Edge TPU usable ("
                + (cause.cause if cause else "unknown")
                + (
                    "); smoke test ran on the CPU"
                    if smoke.device == "cpu"
                    else "); the smoke test did not run"
                ),
                "plug in the Coral USB Accelerator (USB3 port) and run verify again",
            )
        )

    results.append(_judge_classification(smoke, expect_label))
    return results


def _judge_classification(smoke: SmokeResult, expect_label: str | None) -> CheckResult:
    name = "smoke"
    if smoke.error is not None or not smoke.top or smoke.latency_ms is None:
        error = smoke.error
        return CheckResult(
            name,
            FAIL,
            "smoke test failed: " + (error.cause if error else "no result"),
            error.fix if error and error.fix else APPLY,
        )
    best = smoke.top[0]
    summary = (
        f"top-1 {best['label']!r} {best['score']:.3f} on {smoke.device}, "
        f"median {smoke.latency_ms['median']:.1f} ms"
    )
    if smoke.label_ok is False:
        return CheckResult(
            name,
            FAIL,
            f"{summary}; expected {expect_label!r} with score >= {MIN_SCORE}",
            "a wrong result means a broken runtime, model or image: check the "
            "assets' sha256 and the runtime pairing (`coralpi plan`)",
        )
    if smoke.slow:
        return CheckResult(
            name, WARN, summary + "; " + smoke.note, "use a USB3 port, a powered hub and cooling"
        )
    return _pass(name, summary)
