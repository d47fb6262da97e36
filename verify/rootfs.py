"""A root directory that stands in for `/`, so facts can be read from a recorded tree.

Below a root other than `/`, every path is resolved the way a chroot sees it: an absolute
symlink starts again at the root, `..` stops at the root, and a bounded number of links is
followed. A recorded tree can therefore never make verify read this machine's own files.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import re
import stat

MAX_SYMLINK_HOPS = 40  # what Linux allows in one path lookup
READ_LIMIT = 4 * 1024 * 1024
_MAGIC = re.compile(r"[*?[]")


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


class RootFS:
    """Reads files of a system whose `/` is `root` (the real `/` by default).

    Every method takes the path as the system sees it (absolute, e.g. `/etc/os-release`)
    and never raises for a missing or unreadable file: it returns None, False or an empty
    list.
    """

    def __init__(self, root: str = "/") -> None:
        self.root = os.path.abspath(root)

    @property
    def is_real(self) -> bool:
        return self.root == "/"

    def resolve(self, system_path: str, follow_last: bool = True) -> str:
        """Where `system_path` lives on this machine, with its symlinks resolved inside the
        root (the last one only if `follow_last`). The result names no symlink but perhaps
        the last component, and may not exist.

        Raises OSError for a missing or non-directory component on the way, or a link loop.
        """
        if self.is_real:
            return system_path
        todo = _components(system_path)[::-1]  # a stack: the next component is last
        done: list[str] = []
        hops = 0
        while todo:
            name = todo.pop()
            if name == "..":
                if done:
                    done.pop()
                continue
            host = os.path.join(self.root, *done, name)
            try:
                mode = os.lstat(host).st_mode
            except FileNotFoundError:
                if todo:
                    raise
                done.append(name)
                break
            if stat.S_ISLNK(mode) and (todo or follow_last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), system_path)
                target = os.readlink(host)
                if target.startswith("/"):
                    done = []
                todo.extend(_components(target)[::-1])
                continue
            if todo and not stat.S_ISDIR(mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), system_path)
            done.append(name)
        return os.path.join(self.root, *done)

    def exists(self, system_path: str) -> bool:
        """Like `os.path.lexists`: a dangling symlink exists."""
        try:
            return os.path.lexists(self.resolve(system_path, follow_last=False))
        except OSError:
            return False

    def is_file(self, system_path: str) -> bool:
        try:
            return os.path.isfile(self.resolve(system_path))
        except OSError:
            return False

    def is_dir(self, system_path: str) -> bool:
        try:
            return os.path.isdir(self.resolve(system_path))
        except OSError:
            return False

    def read_bytes(self, system_path: str, limit: int = READ_LIMIT) -> bytes | None:
        try:
            if self.is_real:
                with open(system_path, "rb") as handle:
                    return handle.read(limit)
            return self._read_recorded(self.resolve(system_path), limit)
        except OSError:
            return None

    @staticmethod
    def _read_recorded(host: str, limit: int) -> bytes | None:
        # O_NOFOLLOW: the path was resolved, a symlink there now is a swap; O_NONBLOCK and
        # the regular-file test: a FIFO or device node in a recorded tree is not waited on.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(host, flags | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return handle.read(limit)

    def read_text(self, system_path: str) -> str | None:
        data = self.read_bytes(system_path)
        if data is None:
            return None
        return data.decode("utf-8", errors="replace")

    def glob(self, pattern: str) -> list[str]:
        """System paths matching `pattern` (a system path glob), sorted."""
        if self.is_real:
            return sorted(glob.glob(pattern))
        parts = _components(pattern)
        matches = [""]
        for index, part in enumerate(parts):
            found: list[str] = []
            for base in matches:
                if _MAGIC.search(part):
                    found.extend(base + "/" + name for name in self._matching(base, part))
                else:
                    found.append(base + "/" + part)
            last = index == len(parts) - 1
            matches = found if last else [path for path in found if self.is_dir(path)]
        return sorted(path for path in matches if path and self.exists(path))

    def _matching(self, directory: str, part: str) -> list[str]:
        # as glob.glob: a wildcard does not match a leading dot unless the pattern has one
        hidden = part.startswith(".")
        return [
            name
            for name in self.listdir(directory or "/")
            if fnmatch.fnmatchcase(name, part) and (hidden or not name.startswith("."))
        ]

    def listdir(self, system_path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.resolve(system_path)))
        except OSError:
            return []
