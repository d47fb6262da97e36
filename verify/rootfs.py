"""A root directory that stands in for `/`, so facts can be read from a recorded tree."""

from __future__ import annotations

import glob
import os


class RootFS:
    """Reads files of a system whose `/` is `root` (the real `/` by default).

    Every method takes the path as the system sees it (absolute, e.g. `/etc/os-release`)
    and never raises for a missing or unreadable file: it returns None or an empty list.
    """

    def __init__(self, root: str = "/") -> None:
        self.root = os.path.abspath(root)

    @property
    def is_real(self) -> bool:
        return self.root == "/"

    def path(self, system_path: str) -> str:
        """Where `system_path` of the target lives on this machine."""
        if self.is_real:
            return system_path
        return os.path.join(self.root, system_path.lstrip("/"))

    def unroot(self, host_path: str) -> str:
        """The system path of a path returned by `path` or `glob`."""
        if self.is_real:
            return host_path
        rel = os.path.relpath(host_path, self.root)
        return "/" + ("" if rel == "." else rel)

    def exists(self, system_path: str) -> bool:
        return os.path.lexists(self.path(system_path))

    def is_file(self, system_path: str) -> bool:
        return os.path.isfile(self.path(system_path))

    def read_bytes(self, system_path: str, limit: int = 4 * 1024 * 1024) -> bytes | None:
        try:
            with open(self.path(system_path), "rb") as handle:
                return handle.read(limit)
        except OSError:
            return None

    def read_text(self, system_path: str) -> str | None:
        data = self.read_bytes(system_path)
        if data is None:
            return None
        return data.decode("utf-8", errors="replace")

    def glob(self, pattern: str) -> list[str]:
        """System paths matching `pattern` (a system path glob), sorted."""
        found = glob.glob(self.path(pattern))
        return sorted(self.unroot(p) for p in found)

    def listdir(self, system_path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(system_path)))
        except OSError:
            return []
