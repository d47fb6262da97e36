"""Read the system: what is installed, attached and configured.

Parsers are pure functions over file contents (tested from recorded text); `gather_system`
reads a `RootFS`, so a directory can stand in for `/`. What only the running Python can
tell (the inference runtime, numpy, OpenCV, LD_PRELOAD) is gathered by `gather_python`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from . import configtxt
from .camera import CameraFacts, Runner, gather_camera
from .kernel import KernelFacts, gather_kernel
from .rootfs import RootFS
from .safetext import clean
from .usbpower import UsbPowerFacts, gather_usb_power

RUNTIME_PACKAGES = ("libedgetpu1-std", "libedgetpu1-max")
CORAL_REPO_MARKERS = ("coral-edgetpu-stable", "packages.cloud.google.com/apt")
LOCAL_FACT = "/etc/ansible/facts.d/coralpi.fact"
EDGETPU_LIBRARY = "libedgetpu.so.1"

USB_IDS_BOOTLOADER = ("1a6e", "089a")  # before the runtime loads the firmware
USB_IDS_RUNNING = ("18d1", "9302")
PCI_IDS = ("1ac1", "089a")

LIBRARY_DIRS = (
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/arm-linux-gnueabihf",
    "/usr/lib/arm-linux-gnueabihf",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
)
UDEV_RULE_DIRS = ("/lib/udev/rules.d", "/usr/lib/udev/rules.d", "/etc/udev/rules.d")


# ---------------------------------------------------------------- data


@dataclass
class AptSource:
    file: str
    uris: list[str]
    suites: list[str]
    signed_by: str | None  # a path, "inline" for an embedded key, or None
    enabled: bool = True


@dataclass
class Keyring:
    path: str
    fingerprints: list[str]


@dataclass
class UsbDevice:
    path: str
    vendor: str
    product: str
    speed: str | None


@dataclass
class PciDevice:
    path: str
    vendor: str
    device: str


@dataclass
class SystemFacts:
    os_id: str | None = None
    os_like: str | None = None
    os_codename: str | None = None
    os_version_id: str | None = None
    os_pretty: str | None = None
    arch: str = ""  # userland (dpkg) architecture in uname spelling; see userland_arch
    kernel_arch: str = ""
    board: str | None = None
    boot_config: str | None = None
    boot_config_text: str | None = None
    config: configtxt.EffectiveConfig | None = None
    packages: dict[str, str] = field(default_factory=dict)  # installed name -> version
    apt_sources: list[AptSource] = field(default_factory=list)
    keyrings: dict[str, Keyring] = field(default_factory=dict)  # signed-by path -> keyring
    trusted_keyrings: list[Keyring] = field(default_factory=list)  # apt-key style, global
    udev_rules: list[str] = field(default_factory=list)
    user: str | None = None
    user_groups: list[str] = field(default_factory=list)
    user_exists: bool = False
    usb_devices: list[UsbDevice] = field(default_factory=list)
    pci_devices: list[PciDevice] = field(default_factory=list)
    apex_node: bool = False
    edgetpu_library: str | None = None
    ld_so_preload: list[str] = field(default_factory=list)
    local_fact: dict[str, Any] | None = None
    local_fact_error: str | None = None
    throttled: int | None = None
    kernel: KernelFacts = field(default_factory=KernelFacts)
    usb_power: UsbPowerFacts = field(default_factory=UsbPowerFacts)
    camera: CameraFacts = field(default_factory=CameraFacts)

    @property
    def is_pi(self) -> bool:
        return bool(self.board and "raspberry pi" in self.board.lower())


@dataclass
class RuntimeImport:
    module: str | None = None  # "tflite_runtime.interpreter" | "ai_edge_litert.interpreter"
    package: str | None = None  # "tflite-runtime" | "ai-edge-litert"
    version: str | None = None
    error: str | None = None


@dataclass
class OpenCVImport:
    ok: bool
    version: str | None = None
    error: str | None = None
    returncode: int | None = None


@dataclass
class PythonFacts:
    python: str = ""
    executable: str = ""
    runtime: RuntimeImport = field(default_factory=RuntimeImport)
    numpy_version: str | None = None
    numpy_error: str | None = None
    opencv: OpenCVImport | None = None
    ld_preload_env: list[str] = field(default_factory=list)
    loaded_libraries: list[str] = field(default_factory=list)  # from /proc/self/maps
    preload_pth: dict[str, str] = field(default_factory=dict)  # .pth files that load libraries


# ---------------------------------------------------------------- pure parsers


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = clean(value)
    if "VERSION_CODENAME" not in values:
        match = re.search(r"\(([a-z]+)\)", values.get("VERSION", ""))
        if match:
            values["VERSION_CODENAME"] = match.group(1)
    return values


def parse_device_tree_model(data: bytes) -> str | None:
    """`/proc/device-tree/model` is NUL-terminated; control characters in it are escaped."""
    text = data.split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()
    return clean(text) or None


def parse_dpkg_status(text: str, wanted: tuple[str, ...] | None = None) -> dict[str, str]:
    """Installed packages (status `install ok installed`) -> version."""
    installed: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        name = fields.get("Package")
        if not name or (wanted is not None and name not in wanted):
            continue
        if fields.get("Status", "").split()[-1:] == ["installed"]:
            installed[name] = fields.get("Version", "")
    return installed


def _options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in text.split():
        key, _, value = part.partition("=")
        options[key.strip().lower()] = value.strip()
    return options


DPKG_TO_UNAME = {
    "arm64": "aarch64",
    "armhf": "armv7l",
    "armel": "armv6l",
    "amd64": "x86_64",
    "i386": "i686",
}


def dpkg_native_arch(status_text: str) -> str | None:
    """The architecture of the installed `dpkg` package (the userland's), e.g. "armhf"."""
    for stanza in re.split(r"\n\s*\n", status_text):
        if re.search(r"^Package: dpkg$", stanza, re.M):
            match = re.search(r"^Architecture: (\S+)$", stanza, re.M)
            return match.group(1) if match else None
    return None


def userland_arch(status_text: str, machine: str) -> str:
    """uname -m says aarch64 for a 32-bit Raspberry Pi OS on a 64-bit kernel, but what
    runs there (Python, wheels, .debs) is armhf: trust dpkg over uname."""
    native = dpkg_native_arch(status_text)
    if native is None:
        return machine
    return DPKG_TO_UNAME.get(native, native)


def parse_one_line_sources(text: str, file: str) -> list[AptSource]:
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.strip()
        enabled = True
        if line.startswith("#"):
            continue
        if not line.startswith("deb"):
            continue
        options: dict[str, str] = {}
        match = re.match(r"^(deb(?:-src)?)\s+\[([^\]]*)\]\s+(.*)$", line)
        if match:
            options = _options(match.group(2))
            rest = match.group(3).split()
        else:
            rest = line.split()[1:]
        if len(rest) < 2:
            continue
        sources.append(
            AptSource(
                file=file,
                uris=[rest[0]],
                suites=[rest[1]],
                signed_by=options.get("signed-by") or None,
                enabled=enabled,
            )
        )
    return sources


def parse_deb822_sources(text: str, file: str) -> list[AptSource]:
    sources: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last: str | None = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and last is not None:
                fields[last] += "\n" + line.strip()
                continue
            if ":" in line:
                key, _, value = line.partition(":")
                last = key.strip().lower()
                fields[last] = value.strip()
        if "uris" not in fields:
            continue
        signed_by = fields.get("signed-by") or None
        if signed_by and "BEGIN PGP PUBLIC KEY BLOCK" in signed_by:
            signed_by = "inline"
        enabled = fields.get("enabled", "yes").lower() not in ("no", "false", "0")
        sources.append(
            AptSource(
                file=file,
                uris=fields["uris"].split(),
                suites=fields.get("suites", "").split(),
                signed_by=signed_by,
                enabled=enabled,
            )
        )
    return sources


def parse_group(text: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) >= 4:
            groups[parts[0]] = [m for m in parts[3].split(",") if m]
    return groups


def parse_passwd_gid(text: str, user: str) -> str | None:
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) >= 4 and parts[0] == user:
            return parts[3]
    return None


def group_memberships(group_text: str, passwd_text: str, user: str) -> list[str]:
    """Groups `user` belongs to: supplementary (from /etc/group) plus the primary one."""
    member_of = [g for g, members in parse_group(group_text).items() if user in members]
    gid = parse_passwd_gid(passwd_text, user)
    if gid is not None:
        for line in group_text.splitlines():
            parts = line.strip().split(":")
            if len(parts) >= 3 and parts[2] == gid and parts[0] not in member_of:
                member_of.append(parts[0])
    return sorted(member_of)


def openpgp_fingerprints(data: bytes) -> list[str]:
    """V4 fingerprints of the (sub)keys in an OpenPGP keyring, binary or ASCII-armored."""
    if b"-----BEGIN PGP" in data:
        data = _dearmor(data)
    fingerprints: list[str] = []
    pos = 0
    while pos < len(data):
        header = data[pos]
        if not header & 0x80:
            break
        if header & 0x40:  # new format
            tag = header & 0x3F
            pos += 1
            if pos >= len(data):
                break
            first = data[pos]
            if first < 192:
                length, pos = first, pos + 1
            elif first < 224:
                if pos + 1 >= len(data):
                    break
                length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
            else:
                break  # partial lengths do not occur in key packets
        else:  # old format
            tag = (header >> 2) & 0x0F
            kind = header & 0x03
            size = {0: 1, 1: 2, 2: 4}.get(kind)
            if size is None:
                break
            length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
            pos += 1 + size
        body = data[pos : pos + length]
        pos += length
        if tag in (6, 14) and body[:1] == b"\x04":
            digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body)
            fingerprints.append(digest.hexdigest().upper())
    return fingerprints


def _dearmor(data: bytes) -> bytes:
    import base64

    text = data.decode("ascii", errors="replace")
    out = b""
    for block in re.findall(r"-----BEGIN PGP PUBLIC KEY BLOCK-----(.*?)-----END PGP", text, re.S):
        lines = block.strip().splitlines()
        body: list[str] = []
        in_body = False
        for line in lines:
            stripped = line.strip()
            if not in_body:
                if not stripped:
                    in_body = True
                elif ":" not in stripped:
                    in_body = True
                    body.append(stripped)
                continue
            if stripped.startswith("="):
                break
            body.append(stripped)
        try:
            out += base64.b64decode("".join(body))
        except ValueError:
            continue
    return out


def parse_local_fact(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the local fact is not a JSON object")
    return data


def parse_ld_so_preload(text: str) -> list[str]:
    entries: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        entries.extend(part for part in re.split(r"[\s:]+", line) if part)
    return entries


# ---------------------------------------------------------------- reading a system


def _boot_config_path(fs: RootFS) -> str | None:
    # Bookworm and later: /boot/firmware/config.txt; /boot/config.txt is then a stub.
    for candidate in ("/boot/firmware/config.txt", "/boot/config.txt"):
        if fs.is_file(candidate):
            return candidate
    return None


def boot_file(boot: str, name: str) -> str:
    """The system path of `include NAME` in a config.txt in `boot`: the firmware sees only
    the boot partition, so a leading `/` is its root and `..` does not leave it."""
    return boot + posixpath.normpath("/" + name.lstrip("/"))


def _library_dirs(fs: RootFS) -> list[str]:
    dirs = list(LIBRARY_DIRS)
    for conf in fs.glob("/etc/ld.so.conf.d/*.conf"):
        for line in (fs.read_text(conf) or "").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("/") and line not in dirs:
                dirs.append(line)
    return dirs


def find_library(fs: RootFS, name: str) -> str | None:
    for directory in _library_dirs(fs):
        candidate = directory.rstrip("/") + "/" + name
        if fs.exists(candidate):
            return candidate
    return None


def _read_sysfs(fs: RootFS, path: str) -> str | None:
    text = fs.read_text(path)
    return None if text is None else clean(text.strip().lower())


def _usb_devices(fs: RootFS) -> list[UsbDevice]:
    devices: list[UsbDevice] = []
    for vendor_file in fs.glob("/sys/bus/usb/devices/*/idVendor"):
        directory = vendor_file.rsplit("/", 1)[0]
        vendor = _read_sysfs(fs, vendor_file) or ""
        product = _read_sysfs(fs, directory + "/idProduct") or ""
        devices.append(UsbDevice(directory, vendor, product, _read_sysfs(fs, directory + "/speed")))
    return devices


def _pci_devices(fs: RootFS) -> list[PciDevice]:
    devices: list[PciDevice] = []
    for vendor_file in fs.glob("/sys/bus/pci/devices/*/vendor"):
        directory = vendor_file.rsplit("/", 1)[0]
        vendor = (_read_sysfs(fs, vendor_file) or "").replace("0x", "")
        device = (_read_sysfs(fs, directory + "/device") or "").replace("0x", "")
        devices.append(PciDevice(directory, vendor, device))
    return devices


def _apt_sources(fs: RootFS) -> list[AptSource]:
    sources: list[AptSource] = []
    for path in ["/etc/apt/sources.list", *fs.glob("/etc/apt/sources.list.d/*.list")]:
        text = fs.read_text(path)
        if text is not None:
            sources.extend(parse_one_line_sources(text, path))
    for path in fs.glob("/etc/apt/sources.list.d/*.sources"):
        text = fs.read_text(path)
        if text is not None:
            sources.extend(parse_deb822_sources(text, path))
    return sources


def is_coral_source(source: AptSource) -> bool:
    joined = " ".join(source.uris + source.suites)
    return any(marker in joined for marker in CORAL_REPO_MARKERS)


def _keyring(fs: RootFS, path: str) -> Keyring:
    data = fs.read_bytes(path)
    return Keyring(path, openpgp_fingerprints(data) if data else [])


def _throttled(fs: RootFS) -> int | None:
    text = fs.read_text("/sys/devices/platform/soc/soc:firmware/get_throttled")
    if text is None:
        return None
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def gather_system(fs: RootFS, user: str | None, camera_runner: Runner | None = None) -> SystemFacts:
    """Everything read from the system; the camera tools run on a Pi (on the real system,
    or through ``camera_runner``, which tests give recorded output)."""
    facts = SystemFacts(arch=platform.machine(), kernel_arch=platform.machine())
    release = parse_os_release(
        fs.read_text("/etc/os-release") or fs.read_text("/usr/lib/os-release") or ""
    )
    facts.os_id = release.get("ID")
    facts.os_like = release.get("ID_LIKE")
    facts.os_codename = release.get("VERSION_CODENAME")
    facts.os_version_id = release.get("VERSION_ID")
    facts.os_pretty = release.get("PRETTY_NAME")

    model = fs.read_bytes("/proc/device-tree/model")
    if model is None:
        model = fs.read_bytes("/sys/firmware/devicetree/base/model")
    facts.board = parse_device_tree_model(model) if model else None

    facts.boot_config = _boot_config_path(fs)
    if facts.boot_config is not None:
        facts.boot_config_text = fs.read_text(facts.boot_config)
        boot = facts.boot_config.rsplit("/", 1)[0]

        def read_include(name: str) -> str | None:
            return fs.read_text(boot_file(boot, name))

        facts.config = configtxt.evaluate(
            facts.boot_config_text or "", facts.board, facts.boot_config, read_include
        )

    status_text = fs.read_text("/var/lib/dpkg/status") or ""
    facts.packages = parse_dpkg_status(status_text)
    facts.arch = userland_arch(status_text, facts.kernel_arch)

    facts.apt_sources = _apt_sources(fs)
    for source in facts.apt_sources:
        path = source.signed_by
        if path and path != "inline" and path not in facts.keyrings:
            facts.keyrings[path] = _keyring(fs, path)
    trusted = ["/etc/apt/trusted.gpg", *fs.glob("/etc/apt/trusted.gpg.d/*")]
    facts.trusted_keyrings = [_keyring(fs, p) for p in trusted if fs.is_file(p)]

    for directory in UDEV_RULE_DIRS:
        for rule in fs.glob(directory + "/*.rules"):
            text = fs.read_text(rule) or ""
            name = rule.rsplit("/", 1)[1]
            if "edgetpu" in name or "apex" in name or "1a6e" in text or "9302" in text:
                facts.udev_rules.append(rule)

    facts.user = user
    if user is not None:
        group_text = fs.read_text("/etc/group") or ""
        passwd_text = fs.read_text("/etc/passwd") or ""
        facts.user_exists = parse_passwd_gid(passwd_text, user) is not None
        facts.user_groups = group_memberships(group_text, passwd_text, user)

    facts.usb_devices = _usb_devices(fs)
    facts.pci_devices = _pci_devices(fs)
    facts.apex_node = fs.exists("/dev/apex_0")
    facts.edgetpu_library = find_library(fs, EDGETPU_LIBRARY)
    facts.ld_so_preload = parse_ld_so_preload(fs.read_text("/etc/ld.so.preload") or "")

    fact_text = fs.read_text(LOCAL_FACT)
    if fact_text is not None:
        try:
            facts.local_fact = parse_local_fact(fact_text)
        except ValueError as exc:
            facts.local_fact_error = f"{LOCAL_FACT}: {exc}"
    facts.throttled = _throttled(fs)
    facts.kernel = gather_kernel(fs)
    facts.usb_power = gather_usb_power(fs)
    if facts.is_pi:
        facts.camera = gather_camera(fs, camera_runner)
    return facts


# ---------------------------------------------------------------- the running Python


RUNTIME_MODULES = (
    ("tflite_runtime.interpreter", "tflite-runtime", "tflite_runtime"),
    ("ai_edge_litert.interpreter", "ai-edge-litert", "ai_edge_litert"),
)


def distribution_version(name: str) -> str | None:
    try:
        from importlib import metadata  # Python 3.8+
    except ImportError:  # pragma: no cover - Python 3.7
        return None
    try:
        return metadata.version(name)
    except Exception:
        return None


def import_runtime(preferred: str | None = None) -> tuple[RuntimeImport, Any]:
    """Import the inference runtime; returns the facts and the interpreter module (or None).

    `preferred` ("tflite_runtime.interpreter" or "ai_edge_litert.interpreter") is tried first.
    """
    import importlib

    order = sorted(RUNTIME_MODULES, key=lambda entry: entry[0] != preferred)
    errors: list[str] = []
    for module_name, package, top in order:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        except Exception as exc:  # e.g. numpy ABI errors surface as other types
            errors.append(f"{module_name}: {type(exc).__name__}: {exc}")
            continue
        version = distribution_version(package)
        if version is None:
            top_module = sys.modules.get(top)
            version = getattr(top_module, "__version__", None)
        return RuntimeImport(module_name, package, version), module
    return RuntimeImport(error="; ".join(errors)), None


OPENCV_PROBE = "import cv2, sys; sys.stdout.write(cv2.__version__)"


def start_opencv_probe() -> subprocess.Popen[str]:
    """Import cv2 in a child of this same Python: an undefined symbol or a crash stays there."""
    return subprocess.Popen(
        [sys.executable, "-c", OPENCV_PROBE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )


def finish_opencv_probe(probe: subprocess.Popen[str], timeout: float = 60.0) -> OpenCVImport:
    try:
        out, err = probe.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        probe.kill()
        probe.communicate()
        return OpenCVImport(ok=False, error=f"import cv2 took longer than {timeout:.0f} s")
    if probe.returncode == 0:
        return OpenCVImport(ok=True, version=out.strip() or None, returncode=0)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else f"exit status {probe.returncode}"
    if probe.returncode < 0:
        message = f"import cv2 killed by signal {-probe.returncode}" + (
            f": {message}" if lines else ""
        )
    return OpenCVImport(ok=False, error=message, returncode=probe.returncode)


def gather_python(preferred_module: str | None = None) -> tuple[PythonFacts, Any]:
    facts = PythonFacts(python=platform.python_version(), executable=sys.executable)
    try:
        import numpy

        facts.numpy_version = str(numpy.__version__)
    except Exception as exc:
        facts.numpy_error = f"{type(exc).__name__}: {exc}"
    facts.runtime, module = import_runtime(preferred_module)
    preload = os.environ.get("LD_PRELOAD", "")
    facts.ld_preload_env = [p for p in re.split(r"[\s:]+", preload) if p]
    facts.loaded_libraries = loaded_libraries()
    facts.preload_pth = preload_pth_files(sys.path)
    return facts, module


def parse_proc_maps(text: str) -> list[str]:
    """Shared objects mapped into a process (`/proc/<pid>/maps`), in first-seen order."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
            seen.setdefault(parts[5].strip(), None)
    return list(seen)


def loaded_libraries() -> list[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as handle:
            return parse_proc_maps(handle.read())
    except OSError:
        return []


def preload_pth_files(paths: list[str]) -> dict[str, str]:
    """`.pth` files on the import path that load a shared library at start-up (ctypes.CDLL),
    which is how a venv can preload libatomic without LD_PRELOAD."""
    import glob as globbing

    found: dict[str, str] = {}
    for entry in paths:
        if not entry.endswith(("site-packages", "dist-packages")):
            continue
        for pth in sorted(globbing.glob(os.path.join(entry, "*.pth"))):
            try:
                with open(pth, encoding="utf-8", errors="replace") as handle:
                    text = handle.read(65536)
            except OSError:
                continue
            if "CDLL" in text:
                found[pth] = text
    return found
