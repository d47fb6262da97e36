"""STAND-IN shared objects and wheels, compiled with gcc at test time.

`needy_object` links against a STAND-IN C library (soname ``libc.so.6``) whose version
script defines ``GLIBC_2.99`` and a STAND-IN libstdc++ (soname ``libstdc++.so.6``) defining
``GLIBCXX_3.4.99`` and ``CXXABI_1.3.99``, so its ``.gnu.version_r`` names needs no real
target meets (the way a wheel built on a newer system than its tag claims does).
`clean_object` is an ordinary object that needs only this machine's real glibc. Neither is
meant to be loaded; only what they need is read.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path


def _gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *map(str, args)], check=True, capture_output=True)


def _standin_lib(tmp: Path, soname: str, nodes: dict[str, str]) -> Path:
    """A STAND-IN library named ``soname`` defining one version node per function."""
    src = tmp / f"{soname}.c"
    src.write_text("".join(f"int {fn}(void) {{ return 1; }}\n" for fn in nodes))
    script = tmp / f"{soname}.map"
    script.write_text("".join(f"{node} {{ global: {fn}; }};\n" for fn, node in nodes.items()))
    out = tmp / soname
    _gcc("-shared", "-fPIC", "-nostdlib", f"-Wl,-soname,{soname}",
         f"-Wl,--version-script={script}", src, "-o", out)  # fmt: skip
    return out


def needy_object(tmp: Path) -> Path:
    """A shared object needing GLIBC_2.99, GLIBCXX_3.4.99 and CXXABI_1.3.99."""
    tmp.mkdir(parents=True, exist_ok=True)
    libc = _standin_lib(tmp, "libc.so.6", {"standin_new_glibc_call": "GLIBC_2.99"})
    cxx = _standin_lib(
        tmp,
        "libstdc++.so.6",
        {"standin_cxx_call": "GLIBCXX_3.4.99", "standin_abi_call": "CXXABI_1.3.99"},
    )
    src = tmp / "needy.c"
    src.write_text(
        "int standin_new_glibc_call(void); int standin_cxx_call(void);"
        " int standin_abi_call(void);\n"
        "int entry(void) { return standin_new_glibc_call() + standin_cxx_call()"
        " + standin_abi_call(); }\n"
    )
    out = tmp / "_needy.so"
    _gcc("-shared", "-fPIC", "-nostdlib", src, libc, cxx, "-o", out)
    return out


def clean_object(tmp: Path) -> Path:
    """A shared object calling puts(): it needs only an old GLIBC_2.x of the real libc."""
    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / "clean.c"
    src.write_text('#include <stdio.h>\nint entry(void) { return puts("ok"); }\n')
    out = tmp / "_clean.so"
    _gcc("-shared", "-fPIC", src, "-o", out)
    return out


def wheel(path: Path, members: dict[str, bytes]) -> Path:
    """A zip named like a wheel holding ``members`` (enough for what coralpi reads)."""
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path
