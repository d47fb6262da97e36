"""A STAND-IN gasket-dkms: a DKMS package that DKMS really builds, with a module of our own.

The M.2/PCIe Coral's driver (gasket + apex, google/gasket-driver) is shipped as the DKMS
source package ``gasket-dkms``: its postinst hands ``/usr/src/gasket-1.0`` to DKMS, which
builds ``gasket.ko`` and ``apex.ko`` for each kernel whose headers are installed (and again
for every kernel installed later, through the headers' DKMS hook). This module builds a
package of that shape (same package name and DKMS name/version, ``Depends: dkms``, the
postinst and prerm ``dh_dkms`` writes) whose source is **not the driver's code**: two tiny
modules of our own named like the real ones. ``gasket.ko`` holds a ``file_operations``
table, as the real gasket_core.c does, and exports it; ``apex.ko`` uses that export.

``llseek="noop_llseek"`` builds on every current kernel. ``llseek="no_llseek"`` is the
table written the old way (Coral's gasket-dkms 1.0-18 sets ``.llseek = no_llseek``), which
Linux 6.12 removed: the build fails there with the compiler's "'no_llseek' undeclared",
the failure the real 1.0-18 package meets on 6.12 kernels (raspberrypi/linux#6799).

Nothing here can be loaded on this machine: the test hosts are containers on this
machine's own kernel, and the package is built for the kernel whose headers the host has.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PACKAGE = "gasket-dkms"
DKMS_NAME = "gasket"
DKMS_VERSION = "1.0"
MODULES = ("gasket", "apex")
LLSEEK_WAYS = ("noop_llseek", "no_llseek")

GASKET_C = r"""// SPDX-License-Identifier: GPL-2.0
/* STAND-IN gasket module of the coralpi test fleet (not the gasket driver's code): a
 * file_operations table like the driver's, exported for the stand-in apex module. */
#include <linux/fs.h>
#include <linux/module.h>

static const struct file_operations gasket_standin_fops = {
	.owner = THIS_MODULE,
	.llseek = @LLSEEK@,
};

const struct file_operations *gasket_standin_file_operations(void)
{
	return &gasket_standin_fops;
}
EXPORT_SYMBOL_GPL(gasket_standin_file_operations);

MODULE_DESCRIPTION("STAND-IN gasket (coralpi test fleet)");
MODULE_LICENSE("GPL");
"""

APEX_C = r"""// SPDX-License-Identifier: GPL-2.0
/* STAND-IN apex module of the coralpi test fleet (not the apex driver's code). */
#include <linux/fs.h>
#include <linux/module.h>

const struct file_operations *gasket_standin_file_operations(void);

static int __init apex_standin_init(void)
{
	return gasket_standin_file_operations() ? 0 : -ENODEV;
}

static void __exit apex_standin_exit(void)
{
}

module_init(apex_standin_init);
module_exit(apex_standin_exit);
MODULE_DESCRIPTION("STAND-IN apex (coralpi test fleet)");
MODULE_LICENSE("GPL");
"""

KBUILD = "obj-m := gasket.o apex.o\n"

_BUILD_DIR = "${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build"
DKMS_CONF = f"""\
# STAND-IN gasket-dkms (coralpi test fleet): DKMS builds the two stand-in modules
PACKAGE_NAME="{DKMS_NAME}"
PACKAGE_VERSION="{DKMS_VERSION}"
BUILT_MODULE_NAME[0]="gasket"
BUILT_MODULE_NAME[1]="apex"
DEST_MODULE_LOCATION[0]="/updates/dkms"
DEST_MODULE_LOCATION[1]="/updates/dkms"
MAKE[0]="make -C ${{kernel_source_dir}} M={_BUILD_DIR} modules"
CLEAN="make -C ${{kernel_source_dir}} M={_BUILD_DIR} clean"
AUTOINSTALL="yes"
"""

#: What dh_dkms writes into a -dkms package's maintainer scripts: DKMS's own common
#: postinst adds, builds and installs the module for the kernels with headers and fails
#: the package's configuration when a build fails.
POSTINST = f"""\
#!/bin/sh
set -e
DKMS_NAME={DKMS_NAME}
DKMS_VERSION={DKMS_VERSION}
case "$1" in
  configure)
    /usr/lib/dkms/common.postinst "$DKMS_NAME" "$DKMS_VERSION" "/usr/share/{PACKAGE}" "" "$2"
    ;;
esac
exit 0
"""

PRERM = f"""\
#!/bin/sh
set -e
case "$1" in
  remove|upgrade|deconfigure)
    if [ "$(dkms status -m {DKMS_NAME} -v {DKMS_VERSION})" ]; then
      dkms remove -m {DKMS_NAME} -v {DKMS_VERSION} --all
    fi
    ;;
esac
exit 0
"""


def source_files(llseek: str) -> dict[str, str]:
    """The DKMS source tree (relative paths under /usr/src/gasket-1.0)."""
    if llseek not in LLSEEK_WAYS:
        raise ValueError(f"llseek must be one of {LLSEEK_WAYS}, not {llseek!r}")
    return {
        "dkms.conf": DKMS_CONF,
        "Kbuild": KBUILD,
        "gasket.c": GASKET_C.replace("@LLSEEK@", llseek),
        "apex.c": APEX_C,
    }


def control_text(version: str, llseek: str) -> str:
    return (
        f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: coralpi tests <tests@testfleet.invalid>\n"
        "Depends: dkms (>= 1.95)\nSection: kernel\nPriority: optional\n"
        f"Description: STAND-IN gasket-dkms (coralpi test fleet), .llseek = {llseek}\n"
        " Named like the Coral's driver package and built by DKMS like it; its modules are\n"
        " the test fleet's own, not the gasket/apex driver.\n"
    )


def build(out_dir: Path, version: str, *, llseek: str = "noop_llseek") -> Path:
    """Build ``gasket-dkms_<version>_all.deb`` in ``out_dir`` and return its path."""
    work = out_dir / f"standin-{PACKAGE}-{version}-{llseek}"
    shutil.rmtree(work, ignore_errors=True)
    debian = work / "DEBIAN"
    debian.mkdir(parents=True)
    (debian / "control").write_text(control_text(version, llseek))
    for name, text in (("postinst", POSTINST), ("prerm", PRERM)):
        script = debian / name
        script.write_text(text)
        script.chmod(0o755)
    src = work / "usr" / "src" / f"{DKMS_NAME}-{DKMS_VERSION}"
    src.mkdir(parents=True)
    for name, text in source_files(llseek).items():
        (src / name).write_text(text)
    out = out_dir / f"{PACKAGE}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(work), str(out)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(work)
    return out
