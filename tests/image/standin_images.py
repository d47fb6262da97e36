"""Stand-in Raspberry Pi OS images, built by the tests themselves.

Raspberry Pi OS images cannot be downloaded here, so these are STAND-INS laid out as the
real ones are: an MBR partition table (FAT32 boot partition, type ``c``, at 4 MiB; ext4
root, type ``83``, after it), ``config.txt`` and ``cmdline.txt`` on the boot partition as
the release ships them, and an ext4 root made with ``mkfs.ext4 -d`` from a directory tree:
a tiny synthetic tree (os-release, dpkg status, python directory; enough for the checks) or
the test fleet's cached debootstrap tree (for booting). What they are not: no firmware,
kernel or initramfs, and no Raspberry Pi OS packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from testfleet.pi_files import BOOKWORM_CONFIG_TXT

MIB = 2**20
BOOT_START = 4 * MIB
RELEASES = {
    # codename: (Debian version, python, dpkg arch)
    "bullseye": ("11", "3.9"),
    "bookworm": ("12", "3.11"),
    "trixie": ("13", "3.13"),
}

#: config.txt as Bookworm/Trixie ship it.
CONFIG_TXT = BOOKWORM_CONFIG_TXT

CMDLINE_TXT = (
    "console=serial0,115200 console=tty1 root=PARTUUID={partuuid}-02 rootfstype=ext4 "
    "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
)

#: What Raspberry Pi Imager 1.8 writes as firstrun.sh for Bookworm (user, SSH, locale),
#: abridged; the password hash is a made-up stand-in.
IMAGER_FIRSTRUN = r"""#!/bin/bash

set +e

CURRENT_HOSTNAME=`cat /etc/hostname | tr -d " \t\n\r"`
if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then
   /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname imagerpi
else
   echo imagerpi >/etc/hostname
   sed -i "s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\timagerpi/g" /etc/hosts
fi
FIRSTUSER=`getent passwd 1000 | cut -d: -f1`
FIRSTUSERHOME=`getent passwd 1000 | cut -d: -f6`
if [ -f /usr/lib/userconf-pi/userconf ]; then
   /usr/lib/userconf-pi/userconf 'pi' '$5$standin$notarealpasswordhashXXXXXXXXXXXXXXXXXXXXXX'
else
   echo "$FIRSTUSER:"'$5$standin$notarealpasswordhashXXXXXXXXXXXXXXXXXXXXXX' | chpasswd -e
fi
echo imager-ran > /var/lib/imager-firstrun-marker
rm -f /boot/firstrun.sh
sed -i 's| systemd.run.*||g' /boot/cmdline.txt
exit 0
"""

#: user-data as Raspberry Pi Imager 2.x writes it for Trixie (abridged, stand-in secrets).
IMAGER_USER_DATA = """#cloud-config
manage_resolv_conf: false
hostname: {hostname}
manage_etc_hosts: true
packages:
- avahi-daemon
users:
- name: pi
  groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo
  shell: /bin/bash
  lock_passwd: false
  passwd: $5$standin$notarealpasswordhashXXXXXXXXXXXXXXXXXXXXXX
ssh_pwauth: true
timezone: Europe/London
runcmd:
- [ sh, -c, "echo imager-runcmd" ]
"""

IMAGER_NETWORK_CONFIG = """network:
  version: 2
  wifis:
    renderer: NetworkManager
    wlan0:
      dhcp4: true
      regulatory-domain: GB
      access-points:
        "standin-ssid":
          password: "standin-wifi-passphrase"
      optional: true
"""

#: What Raspberry Pi Imager 2.x adds for cloud-init besides user-data and network-config: a
#: ``meta-data`` with an instance id unique per imaging (``rpi-imager-<epoch ms>``) and the
#: same id on cmdline.txt (`` ds=nocloud;i=<id>``), so that a re-imaged card is a new instance.
IMAGER_INSTANCE_ID = "rpi-imager-1759400000000"
IMAGER_META_DATA = f"instance-id: {IMAGER_INSTANCE_ID}\n"


def imager_cmdline(instance_id: str = IMAGER_INSTANCE_ID, partuuid: str = "5e3da3da") -> str:
    """cmdline.txt as Imager 2.x leaves it on a Trixie card it customised."""
    return CMDLINE_TXT.format(partuuid=partuuid).rstrip("\n") + f" ds=nocloud;i={instance_id}\n"


#: Where Raspberry Pi OS Trixie keeps its cloud-init settings for the Pi (package
#: rpi-cloud-init-mods; pi-gen's stage2/04-cloud-init installs the same file).
RPI_CLOUD_CFG_PATH = "/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg"

#: A STAND-IN of that file, with the settings Raspberry Pi OS ships: cloud-init reads the
#: NoCloud seed (user-data, meta-data, network-config) from the boot partition, mounted at
#: /boot/firmware, and leaves SSH host keys to the OS's own first-boot service. Debian's
#: cloud-init alone (the stand-in root) would look for the seed nowhere on the card.
RPI_CLOUD_CFG = """# configure cloud-init with NoCloud
# (STAND-IN of Raspberry Pi OS's 99_raspberry-pi.cfg, written by the image tests)

datasource_list: [ NoCloud, None ]
datasource:
  NoCloud:
    seedfrom: file:///boot/firmware

# SSH host keys are made by the OS's own first-boot service, not by cloud-init
ssh_deletekeys: false
ssh_genkeytypes: []
"""

#: The seed templates Raspberry Pi OS Trixie itself ships on the boot partition (pi-gen's
#: stage2/04-cloud-init/files), abridged to what cloud-init reads: a card flashed without
#: Imager's customisation. Note ``instance_id`` (sic): NoCloud reads ``instance-id``.
PIGEN_META_DATA = """# This is the meta-data configuration file for cloud-init (stand-in, abridged).
dsmode: local
instance_id: rpios-image
"""
PIGEN_USER_DATA = """#cloud-config

# This is the user-data configuration file for cloud-init (stand-in, abridged).
#hostname: raspberrypi
ssh_pwauth: false
"""
PIGEN_NETWORK_CONFIG = """# netplan-compatible configuration for the first boot (stand-in, abridged)
network:
  version: 2

  ethernets:
    eth0:
      dhcp4: true
      optional: true
"""


@dataclass
class StandinSpec:
    """One stand-in card."""

    release: str = "bookworm"
    arch: str = "amd64"
    boot_mib: int = 256
    boot_fat: str = "32"  # "32", "16", or "" for an unformatted FAT-typed partition
    boot_type: str = "c"
    root_mib: int = 64
    root_tree: Path | None = None  # None: a tiny synthetic tree
    boot_files: dict[str, str] = field(default_factory=dict)  # extra/overriding boot files
    cloud_init: bool | None = None  # None: as the release ships it (trixie)
    #: files added to the ext4 root after it is made (absolute path -> text, mode 0644;
    #: the directory must exist in the tree), e.g. {RPI_CLOUD_CFG_PATH: RPI_CLOUD_CFG}
    root_files: dict[str, str] = field(default_factory=dict)


def synthetic_root(dest: Path, release: str, arch: str, cloud_init: bool) -> Path:
    """The least a root needs for the card checks: os-release, dpkg status, python dir."""
    version, python = RELEASES[release]
    (dest / "etc").mkdir(parents=True)
    (dest / "usr" / "lib" / f"python{python}").mkdir(parents=True)
    (dest / "usr" / "bin").mkdir(parents=True)
    (dest / "var" / "lib" / "dpkg").mkdir(parents=True)
    (dest / "usr" / "lib" / "os-release").write_text(
        f'PRETTY_NAME="Debian GNU/Linux {version} ({release})"\nNAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{version}"\nVERSION_CODENAME={release}\nID=debian\n'
    )
    os.symlink("../usr/lib/os-release", dest / "etc" / "os-release")
    (dest / "var" / "lib" / "dpkg" / "status").write_text(
        "Package: base-files\nStatus: install ok installed\nArchitecture: "
        f"{arch}\n\nPackage: dpkg\nStatus: install ok installed\nArchitecture: {arch}\n"
    )
    if cloud_init:
        (dest / "usr" / "bin" / "cloud-init").write_text("#!/bin/sh\n# stand-in\n")
    return dest


def _run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


def build(path: Path, spec: StandinSpec, workdir: Path) -> Path:
    """Write the stand-in image to ``path`` (sparse) and return it."""
    boot_bytes = spec.boot_mib * MIB
    root_start = BOOT_START + boot_bytes
    size = root_start + spec.root_mib * MIB
    path.unlink(missing_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)
    table = (
        "label: dos\nlabel-id: 0x5e3da3da\nunit: sectors\n\n"
        f"start={BOOT_START // 512}, size={boot_bytes // 512}, type={spec.boot_type}\n"
        f"start={root_start // 512}, type=83\n"
    )
    subprocess.run(
        ["sfdisk", "-q", str(path)], input=table, text=True, check=True, capture_output=True
    )
    cloud = spec.cloud_init if spec.cloud_init is not None else spec.release == "trixie"
    tree = spec.root_tree
    if tree is None:
        scratch = workdir / f"{path.name}.root"
        shutil.rmtree(scratch, ignore_errors=True)
        tree = synthetic_root(scratch, spec.release, spec.arch, cloud)
    _run(
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "rootfs",
        "-d",
        tree,
        "-E",
        f"offset={root_start}",
        path,
        f"{spec.root_mib}M",
    )
    if spec.root_files:
        add_root_files(path, root_start, spec.root_files, workdir / f"{path.name}.rootfiles")
    if spec.boot_fat:
        # Clusters small enough that FAT32 has more than 65525 of them (else it reads as
        # FAT16); Raspberry Pi OS's 512 MiB boot partition uses 2 KiB clusters.
        cluster = "1" if spec.boot_mib < 512 else "4"
        _run(
            "mkfs.fat",
            "-F",
            spec.boot_fat,
            "-s",
            cluster,
            "-n",
            "BOOTFS",
            "--offset",
            str(BOOT_START // 512),
            path,
            str(boot_bytes // 1024),
        )
        files = {
            "config.txt": CONFIG_TXT,
            "cmdline.txt": CMDLINE_TXT.format(partuuid="5e3da3da"),
            "issue.txt": f"Raspberry Pi reference (stand-in for {spec.release})\n",
            **spec.boot_files,
        }
        src = workdir / f"{path.name}.boot"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        for name, text in files.items():
            (src / name).write_text(text)
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        subprocess.run(
            [
                "mcopy",
                "-o",
                "-i",
                f"{path}@@{BOOT_START}",
                *[str(src / n) for n in sorted(files)],
                "::/",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
    return path


def add_root_files(image: Path, offset: int, files: dict[str, str], scratch: Path) -> None:
    """Write files into the image's ext4 root with ``debugfs -w`` (nothing mounted, the
    cached tree it was made from is not touched)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    device = f"{image}?offset={offset}"
    for index, (dest, text) in enumerate(sorted(files.items())):
        src = scratch / str(index)
        src.write_text(text)
        src.chmod(0o644)
        for request in (f"rm {dest}", f"write {src} {dest}"):
            proc = subprocess.run(
                ["debugfs", "-w", "-R", request, device],
                capture_output=True,
                text=True,
                check=False,
            )
            if request.startswith("write") and (proc.returncode != 0 or "rror" in proc.stderr):
                raise RuntimeError(f"debugfs {request}: {proc.stderr.strip()}")
        check = subprocess.run(
            ["debugfs", "-R", f"cat {dest}", device], capture_output=True, text=True, check=True
        )
        if check.stdout != text:
            raise RuntimeError(f"{dest} was not written into {image}")
