"""The FAT boot partition of an image or card, through mtools, never mounted.

Every command addresses the partition as ``TARGET@@OFFSET`` (mtools' syntax for a file
system that starts ``OFFSET`` bytes into a file or device), so this works on a kernel
without vfat and on a card whose other partitions must stay untouched.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from provision.image.errors import ImageError

_ENV = {
    **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME")},
    # Raspberry Pi OS's FAT has no DOS geometry worth checking; mtools would refuse it.
    "MTOOLS_SKIP_CHECK": "1",
    "LC_ALL": "C",
}


class FatVolume:
    """One FAT file system inside ``target`` at byte ``offset``; paths are "/a/b"."""

    def __init__(self, target: Path, offset: int) -> None:
        self.target = target
        self.offset = offset

    @property
    def spec(self) -> str:
        return f"{self.target}@@{self.offset}"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            [tool, "-i", self.spec, *args], capture_output=True, env=_ENV, check=False
        )
        if check and proc.returncode != 0:
            raise ImageError(
                f"{tool} {' '.join(args)} on {self.spec} failed: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc

    @staticmethod
    def _m(path: str) -> str:
        return "::" + ("/" + path.strip("/"))

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        if not self.exists(path):
            return None
        return self._run("mcopy", "-n", self._m(path), "-").stdout

    def read_text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        return self._run("mdir", "-b", self._m(path), check=False).returncode == 0

    def listdir(self, path: str = "/") -> list[str]:
        """Names directly under ``path`` (empty when it does not exist)."""
        proc = self._run("mdir", "-b", self._m(path), check=False)
        if proc.returncode != 0:
            return []
        names = []
        for line in proc.stdout.decode(errors="replace").splitlines():
            name = line.rstrip("/").rsplit("/", 1)[-1]
            if name and name not in (".", ".."):
                names.append(name)
        return sorted(names)

    def write(self, path: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="coralpi-fat-") as tmp:
            local = Path(tmp) / "file"
            local.write_bytes(data)
            self._run("mcopy", "-o", "-D", "o", str(local), self._m(path))

    def write_text(self, path: str, text: str) -> None:
        self.write(path, text.encode("utf-8"))

    def remove(self, path: str) -> None:
        if self.exists(path):
            self._run("mdel", self._m(path))

    def remove_tree(self, path: str) -> None:
        if self.exists(path):
            self._run("mdeltree", self._m(path))

    def copy_tree(self, directory: Path, dest: str = "/") -> None:
        """Copy the local ``directory`` (itself, by its name) under ``dest``."""
        self._run("mcopy", "-s", "-o", "-D", "o", "-Q", str(directory), self._m(dest))

    def copy_files(self, files: Sequence[Path], dest: str) -> None:
        self._run("mcopy", "-o", "-D", "o", *map(str, files), self._m(dest))

    def free_bytes(self) -> int:
        out = self._run("mdir", self._m("/")).stdout.decode(errors="replace")
        match = re.search(r"([\d ,.']+) bytes free", out)
        if match is None:
            raise ImageError(f"{self.spec}: mdir did not report the free space")
        return int(re.sub(r"\D", "", match.group(1)))


def tree_size(directory: Path, cluster: int = 32768) -> int:
    """Bytes ``directory`` takes on FAT, each file rounded up to a (generous) cluster."""
    total = 0
    for root, dirs, files in os.walk(directory):
        total += cluster * (len(dirs) + 1)
        for name in files:
            size = (Path(root) / name).stat().st_size
            total += -(-size // cluster) * cluster if size else cluster
    return total
