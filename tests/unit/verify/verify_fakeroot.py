"""Recorded facts: small root trees made under tmp_path that stand in for `/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
TESTDATA = REPO.parent / "shared" / "testdata" / "coral"

OS_RELEASE = {
    "bookworm": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
    'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
    "buster": 'PRETTY_NAME="Raspbian GNU/Linux 10 (buster)"\nNAME="Raspbian GNU/Linux"\n'
    'VERSION_ID="10"\nVERSION="10 (buster)"\nID=raspbian\nID_LIKE=debian\n',
}

DPKG_STANZA = """Package: {name}
Status: {status}
Priority: optional
Architecture: arm64
Version: {version}
Description: Edge TPU runtime
 long description line
"""

GROUP = "root:x:0:\nplugdev:x:46:{plugdev}\napex:x:998:{apex}\npi:x:1000:\n"
PASSWD = "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n"


class FakeRoot:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, system_path: str, content: str | bytes) -> Path:
        target = self.path / system_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return target

    def os_release(self, codename: str = "bookworm") -> FakeRoot:
        self.write("/etc/os-release", OS_RELEASE[codename])
        return self

    def board(self, model: str) -> FakeRoot:
        self.write("/proc/device-tree/model", model.encode() + b"\x00")
        return self

    def dpkg(self, packages: dict[str, str], status: str = "install ok installed") -> FakeRoot:
        stanzas = [
            DPKG_STANZA.format(name="base-files", status=status, version="12.4"),
            DPKG_STANZA.format(name="dpkg", status=status, version="1.21.22"),
        ]
        stanzas += [
            DPKG_STANZA.format(name=n, status=status, version=v) for n, v in packages.items()
        ]
        self.write("/var/lib/dpkg/status", "\n".join(stanzas))
        return self

    def library(
        self, name: str = "libedgetpu.so.1", directory: str = "/usr/lib/aarch64-linux-gnu"
    ) -> FakeRoot:
        self.write(f"{directory}/{name}", b"\x7fELF")
        return self

    def udev(self, name: str = "60-libedgetpu1-std.rules") -> FakeRoot:
        self.write(
            f"/lib/udev/rules.d/{name}",
            'SUBSYSTEM=="usb",ATTRS{idVendor}=="1a6e",GROUP="plugdev"\n'
            'SUBSYSTEM=="usb",ATTRS{idVendor}=="18d1",ATTRS{idProduct}=="9302",'
            'GROUP="plugdev"\n',
        )
        return self

    def users(self, plugdev: str = "pi", apex: str = "") -> FakeRoot:
        self.write("/etc/group", GROUP.format(plugdev=plugdev, apex=apex))
        self.write("/etc/passwd", PASSWD)
        return self

    def usb(self, vendor: str, product: str, speed: str = "5000", bus: str = "2-1") -> FakeRoot:
        base = f"/sys/bus/usb/devices/{bus}"
        self.write(f"{base}/idVendor", vendor + "\n")
        self.write(f"{base}/idProduct", product + "\n")
        self.write(f"{base}/speed", speed + "\n")
        return self

    def pci(self, vendor: str, device: str, slot: str = "0000:01:00.0") -> FakeRoot:
        base = f"/sys/bus/pci/devices/{slot}"
        self.write(f"{base}/vendor", f"0x{vendor}\n")
        self.write(f"{base}/device", f"0x{device}\n")
        return self

    def config_txt(self, text: str, path: str = "/boot/firmware/config.txt") -> FakeRoot:
        self.write(path, text)
        return self

    def fact(self, data: dict[str, Any] | str) -> FakeRoot:
        text = data if isinstance(data, str) else json.dumps(data)
        self.write("/etc/ansible/facts.d/coralpi.fact", text)
        return self

    def coral_source(
        self, keyring: str = "/etc/apt/keyrings/coral.gpg", key: bytes | None = None
    ) -> FakeRoot:
        self.write(
            "/etc/apt/sources.list.d/coral-edgetpu.sources",
            "Types: deb\nURIs: https://packages.cloud.google.com/apt\n"
            f"Suites: coral-edgetpu-stable\nComponents: main\nSigned-By: {keyring}\n",
        )
        if key is not None:
            self.write(keyring, key)
        return self


def standard_fact(**overrides: Any) -> dict[str, Any]:
    fact: dict[str, Any] = {
        "runtime_package": "libedgetpu1-std",
        "runtime_version": "16.0tf2.17.1-1",
        "runtime_variant": "std",
        "runtime_source": "community-deb",
        "python_runtime_package": "tflite-runtime",
        "python_runtime_version": "2.14.0",
        "numpy_constraint": "<2",
        "opencv_source": "apt",
        "ld_preload": None,
        "venv": "/opt/coralpi/venv",
        "camera_method": "camera-auto-detect",
        "camera_config_path": "/boot/firmware/config.txt",
        "provisioned_at": "2025-01-01T00:00:00Z",
    }
    fact.update(overrides)
    return fact
