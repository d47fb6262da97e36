"""Stand-in Coral Edge TPU runtime packages and a signed stand-in Coral apt repository.

The real Coral apt repository (packages.cloud.google.com) and the community runtime releases
(GitHub) cannot be reached from the test machine. This module builds **stand-in** packages
named like the real ones so the toolkit's own code path runs for real: keyring download and
fingerprint check, signed-by source, debconf preseeding, std/max switching, udev rules.

What is faithful to the real packages:
- names ``libedgetpu1-std`` / ``libedgetpu1-max``; both ``Provides``, ``Conflicts`` and
  ``Replaces: libedgetpu1`` (only one at a time; switching removes the other);
- the payload paths ``/usr/lib/x86_64-linux-gnu/libedgetpu.so.1.0`` + ``libedgetpu.so.1``
  and the udev rules ``/lib/udev/rules.d/60-libedgetpu1-<variant>.rules`` (1a6e:089a and
  18d1:9302 to group plugdev), ldconfig in postinst;
- max's debconf question ``libedgetpu/accepted-eula`` (boolean, default false) and its
  preinst that refuses to install unless it was answered true; like feranick's community
  max build, it asks nothing else (``libedgetpu/install-confirm-max`` is preseeded by
  third-party install scripts, not asked by any package);
- the repository layout of packages.cloud.google.com/apt: suite ``coral-edgetpu-stable``,
  component ``main``, ``InRelease`` + ``Release.gpg``, ASCII-armoured key at
  ``doc/apt-key.gpg``; community .debs served flat under names like feranick's releases;
- amd64, and arm64/armhf where a cross compiler is installed; ``libedgetpu1-max`` for arm64
  is listed in the official index but missing from its pool (404), as reported upstream.

What is a stand-in: the library. It exports ``tflite_plugin_create_delegate`` and
``tflite_plugin_destroy_delegate``; creating a delegate reports "no Edge TPU attached
(stand-in runtime)" through the error callback and returns NULL, which is what the real
runtime does when no accelerator is plugged in. The signing key is generated locally.

Versions: official-like ``16.0`` (the last official release) and community-like
``16.0tf2.19.1-1.trixie`` / ``16.0tf2.17.1-1.bookworm`` (the Version that feranick's file
names carry); dpkg orders the community versions after ``16.0``. The community releases and
builds served are those ``coralpi plan`` picks for the Debian releases the fleet runs
(:data:`COMMUNITY_BUILDS`; tests/unit/test_standin_community.py checks they match); the
Ubuntu builds (``ubuntu22.04``, ``ubuntu24.04``) are not served, the fleet has no Ubuntu
hosts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from .cmd import file_lock, run
from .errors import FleetError

SUITE = "coral-edgetpu-stable"
COMPONENT = "main"
#: Debian architecture -> (multiarch triplet, C compiler). Architectures whose compiler is
#: not installed are left out (arm64/armhf need gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf).
ARCHES = {
    "amd64": ("x86_64-linux-gnu", "gcc"),
    "arm64": ("aarch64-linux-gnu", "aarch64-linux-gnu-gcc"),
    "armhf": ("arm-linux-gnueabihf", "arm-linux-gnueabihf-gcc"),
}
#: Packages listed in the official index whose pool file is missing (404), as reported for
#: the real repository (google-coral/edgetpu issue 895): the stand-in repository does the same.
MISSING_FROM_POOL = (("max", "arm64"),)
OFFICIAL_VERSION = "16.0"
#: (community release, build, Debian architectures or None for all) the stand-in serves:
#: 16.0tf2.17.1-1 pairs with tflite-runtime (bullseye, bookworm), 16.0tf2.19.1-1 with
#: ai-edge-litert (trixie's own build; ai-edge-litert has no armhf wheels).
COMMUNITY_BUILDS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("16.0tf2.17.1-1", "bookworm", None),
    ("16.0tf2.17.1-1", "bullseye", None),
    ("16.0tf2.19.1-1", "trixie", ("amd64", "arm64")),
)
COMMUNITY_UPSTREAM = "16.0tf2.17.1-1"  # the release a bookworm/bullseye host gets
VARIANTS = ("std", "max")
KEY_UID = "coralpi test fleet stand-in Coral repository <standin-coral@testfleet.invalid>"
NO_DEVICE_MESSAGE = "Failed to open device: no Edge TPU attached (stand-in runtime)"

LIBRARY_SOURCE = r"""
/* Stand-in libedgetpu for the coralpi test fleet: the delegate entry points of the real
 * runtime, reporting that no Edge TPU is attached (what the real one does without a device). */
#include <stddef.h>

typedef struct TfLiteDelegate TfLiteDelegate;

__attribute__((visibility("default")))
TfLiteDelegate* tflite_plugin_create_delegate(char** options_keys, char** options_values,
                                              size_t num_options,
                                              void (*report_error)(const char*)) {
  (void)options_keys;
  (void)options_values;
  (void)num_options;
  if (report_error != NULL) {
    report_error(NO_DEVICE_MESSAGE);
  }
  return NULL;
}

__attribute__((visibility("default")))
void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { (void)delegate; }

__attribute__((visibility("default")))
const char* coralpi_standin_runtime_variant(void) { return STANDIN_VARIANT; }
"""

UDEV_RULES = (
    'SUBSYSTEM=="usb",ATTRS{idVendor}=="1a6e",ATTRS{idProduct}=="089a",GROUP="plugdev"\n'
    'SUBSYSTEM=="usb",ATTRS{idVendor}=="18d1",ATTRS{idProduct}=="9302",GROUP="plugdev"\n'
)

POSTINST = """\
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  ldconfig
  if command -v udevadm >/dev/null 2>&1; then
    udevadm control --reload-rules >/dev/null 2>&1 || true
  fi
fi
"""

POSTRM = """\
#!/bin/sh
set -e
if [ "$1" = "remove" ] || [ "$1" = "purge" ]; then
  ldconfig
fi
if [ "$1" = "purge" ] && [ -e /usr/share/debconf/confmodule ]; then
  . /usr/share/debconf/confmodule
  db_purge
fi
"""

MAX_TEMPLATES = """\
Template: libedgetpu/accepted-eula
Type: boolean
Default: false
Description: Continue to install the Edge TPU runtime that runs at the maximum operating frequency?
 You're about to install the Edge TPU runtime that runs at the maximum operating frequency.
 At this frequency the USB Accelerator can become hot: use it only at ambient temperatures
 up to 25 C. (Stand-in package of the coralpi test fleet; same question as the real one.)
"""


MAX_CONFIG = """\
#!/bin/sh
set -e
. /usr/share/debconf/confmodule
db_input high libedgetpu/accepted-eula || true
db_go || true
"""

MAX_PREINST = """\
#!/bin/sh
set -e
. /usr/share/debconf/confmodule
db_get libedgetpu/accepted-eula
if [ "$RET" != "true" ]; then
  echo "libedgetpu1-max: the maximum-frequency runtime was not accepted" >&2
  echo "  (preseed: libedgetpu1-max libedgetpu/accepted-eula boolean true)" >&2
  exit 1
fi
"""


@dataclass(frozen=True)
class StandinCoral:
    """A built stand-in: the signed apt repository and the community .deb directory."""

    root: Path
    repo_dir: Path
    community_dir: Path
    key_fingerprint: str
    gnupg_home: Path
    arches: tuple[str, ...]
    action: str
    seconds: float

    @property
    def public_key(self) -> Path:
        return self.repo_dir / "doc" / "apt-key.gpg"

    def community_deb(self, variant: str, dist: str = "bookworm", arch: str = "amd64") -> Path:
        return self.community_dir / community_deb_name(variant, dist, arch)


def community_deb_name(
    variant: str, dist: str = "bookworm", arch: str = "amd64", upstream: str = COMMUNITY_UPSTREAM
) -> str:
    return f"libedgetpu1-{variant}_{upstream}.{dist}_{arch}.deb"


def community_deb_names(arches: tuple[str, ...]) -> list[str]:
    """Every community .deb file name the stand-in serves for these Debian architectures."""
    return [
        community_deb_name(variant, dist, arch, upstream)
        for upstream, dist, only in COMMUNITY_BUILDS
        for variant in VARIANTS
        for arch in arches
        if only is None or arch in only
    ]


def available_arches() -> tuple[str, ...]:
    """Architectures whose C compiler is installed here."""
    return tuple(a for a, (_, cc) in ARCHES.items() if shutil.which(cc))


def _recipe_key(arches: tuple[str, ...]) -> str:
    payload = json.dumps(
        [
            LIBRARY_SOURCE,
            UDEV_RULES,
            POSTINST,
            POSTRM,
            MAX_TEMPLATES,
            MAX_CONFIG,
            MAX_PREINST,
            OFFICIAL_VERSION,
            COMMUNITY_BUILDS,
            SUITE,
            KEY_UID,
            NO_DEVICE_MESSAGE,
            _control("std", "0", "amd64", 0),
            arches,
            [ARCHES[a] for a in arches],
            MISSING_FROM_POOL,
            3,
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _control(variant: str, version: str, arch: str, installed_kib: int) -> str:
    speed = "standard" if variant == "std" else "maximum"
    return textwrap.dedent(f"""\
        Package: libedgetpu1-{variant}
        Source: libedgetpu
        Version: {version}
        Architecture: {arch}
        Multi-Arch: same
        Maintainer: coralpi test fleet <standin-coral@testfleet.invalid>
        Installed-Size: {installed_kib}
        Depends: libc6, libusb-1.0-0
        Provides: libedgetpu1 (= {version})
        Conflicts: libedgetpu1
        Replaces: libedgetpu1
        Section: misc
        Priority: optional
        Homepage: https://coral.ai/
        Description: Support library for Edge TPU (stand-in, reports no device)
         Stand-in for the {speed}-speed Edge TPU runtime, built by the coralpi test fleet.
         Same package relations, udev rules and debconf question as the real package; its
         library only reports that no Edge TPU is attached.
        """)


def _build_deb(work: Path, variant: str, version: str, arch: str, out: Path) -> None:
    triplet, compiler = ARCHES[arch]
    pkg = work / f"pkg-{variant}-{version}-{arch}"
    if pkg.exists():
        shutil.rmtree(pkg)
    libdir = pkg / "usr" / "lib" / triplet
    libdir.mkdir(parents=True)
    source = work / "libedgetpu_standin.c"
    source.write_text(LIBRARY_SOURCE)
    run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O2",
            "-s",
            "-Wall",
            "-Werror",
            "-fvisibility=hidden",
            f'-DNO_DEVICE_MESSAGE="{NO_DEVICE_MESSAGE}"',
            f'-DSTANDIN_VARIANT="{variant}"',
            "-Wl,-soname,libedgetpu.so.1",
            "-o",
            libdir / "libedgetpu.so.1.0",
            source,
        ]
    )
    (libdir / "libedgetpu.so.1").symlink_to("libedgetpu.so.1.0")
    rules = pkg / "lib" / "udev" / "rules.d"
    rules.mkdir(parents=True)
    (rules / f"60-libedgetpu1-{variant}.rules").write_text(UDEV_RULES)
    debian = pkg / "DEBIAN"
    debian.mkdir()
    scripts = {"postinst": POSTINST, "postrm": POSTRM}
    if variant == "max":
        scripts["config"] = MAX_CONFIG
        scripts["preinst"] = MAX_PREINST
        (debian / "templates").write_text(MAX_TEMPLATES)
    for name, text in scripts.items():
        (debian / name).write_text(text)
        (debian / name).chmod(0o755)
    size = sum(p.stat().st_size for p in pkg.rglob("*") if p.is_file() and not p.is_symlink())
    (debian / "control").write_text(_control(variant, version, arch, max(1, size // 1024)))
    out.parent.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", pkg, out])


def _pool_path(variant: str, version: str, arch: str) -> Path:
    return Path(
        "pool", COMPONENT, "libe", "libedgetpu", f"libedgetpu1-{variant}_{version}_{arch}.deb"
    )


def _gpg(home: Path, *args: str, input_text: str | None = None) -> str:
    return run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args], input_text=input_text
    ).stdout


def _make_key(home: Path) -> str:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _gpg(
        home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        KEY_UID,
        "rsa3072",
        "sign",
        "never",
    )
    for line in _gpg(home, "--with-colons", "--list-secret-keys").splitlines():
        fields = line.split(":")
        if fields[0] == "fpr":
            return fields[9]
    raise FleetError("stand-in signing key was not created")


def _write_repo(repo: Path, home: Path, fingerprint: str, arches: tuple[str, ...]) -> None:
    dist = repo / "dists" / SUITE
    for arch in arches:
        binary = dist / COMPONENT / f"binary-{arch}"
        binary.mkdir(parents=True)
        packages = run(["apt-ftparchive", "--arch", arch, "packages", "pool"], cwd=repo).stdout
        (binary / "Packages").write_text(packages)
        run(["gzip", "-9kn", binary / "Packages"])
    for variant, arch in MISSING_FROM_POOL:
        (repo / _pool_path(variant, OFFICIAL_VERSION, arch)).unlink(missing_ok=True)
    release = run(
        [
            "apt-ftparchive",
            "-o",
            "APT::FTPArchive::Release::Origin=coral-edgetpu-stable (coralpi stand-in)",
            "-o",
            "APT::FTPArchive::Release::Label=coral-edgetpu-stable",
            "-o",
            f"APT::FTPArchive::Release::Suite={SUITE}",
            "-o",
            f"APT::FTPArchive::Release::Codename={SUITE}",
            "-o",
            f"APT::FTPArchive::Release::Components={COMPONENT}",
            "-o",
            f"APT::FTPArchive::Release::Architectures={' '.join(arches)}",
            "release",
            ".",
        ],
        cwd=dist,
    ).stdout
    (dist / "Release").write_text(release)
    sign = [
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--local-user",
        fingerprint,
        "--digest-algo",
        "SHA256",
    ]
    _gpg(home, *sign, "--clearsign", "--output", str(dist / "InRelease"), str(dist / "Release"))
    _gpg(
        home,
        *sign,
        "--armor",
        "--detach-sign",
        "--output",
        str(dist / "Release.gpg"),
        str(dist / "Release"),
    )
    (repo / "doc").mkdir()
    (repo / "doc" / "apt-key.gpg").write_text(_gpg(home, "--armor", "--export", fingerprint))


def _signing_key(base: Path) -> tuple[Path, str]:
    """The stand-in repository's signing key: made once, kept across package rebuilds (like a
    real archive key), so a fingerprint pinned by a test stays valid."""
    home = base / "signing-key" / "gnupg"
    marker = base / "signing-key" / "fingerprint"
    if not marker.exists():
        if home.exists():
            shutil.rmtree(home)
        try:
            fingerprint = _make_key(home)
        finally:
            run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        marker.write_text(fingerprint + "\n")
    return home, marker.read_text().strip()


def ensure_standin(cache: Path) -> StandinCoral:
    """Build (or reuse) the stand-in repository and community .debs for the current recipe."""
    base = cache / "standin-coral"
    arches = available_arches()
    root = base / _recipe_key(arches)
    done = root / "fingerprint"
    start = time.monotonic()
    with file_lock(base / "build.lock"):
        home, fingerprint = _signing_key(base)
        action = "cached"
        if not done.exists() or done.read_text().strip() != fingerprint:
            action = "built"
            if root.exists():
                shutil.rmtree(root)
            work = root / "build"
            work.mkdir(parents=True)
            try:
                repo = root / "coral-apt"
                for variant in VARIANTS:
                    for arch in arches:
                        _build_deb(
                            work,
                            variant,
                            OFFICIAL_VERSION,
                            arch,
                            repo / _pool_path(variant, OFFICIAL_VERSION, arch),
                        )
                        for upstream, dist, only in COMMUNITY_BUILDS:
                            if only is not None and arch not in only:
                                continue
                            _build_deb(
                                work,
                                variant,
                                f"{upstream}.{dist}",
                                arch,
                                root
                                / "community"
                                / community_deb_name(variant, dist, arch, upstream),
                            )
                _write_repo(repo, home, fingerprint, arches)
            finally:
                run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
            shutil.rmtree(work)
            done.write_text(fingerprint + "\n")
    return StandinCoral(
        root=root,
        repo_dir=root / "coral-apt",
        community_dir=root / "community",
        key_fingerprint=done.read_text().strip(),
        gnupg_home=home,
        arches=arches,
        action=action,
        seconds=round(time.monotonic() - start, 2),
    )
