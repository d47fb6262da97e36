"""What the image tests share besides fixtures: the coralpi command and file hashes.

A module of its own (not conftest.py): pytest loads several conftest.py files, and which one
``import conftest`` finds depends on the order tests run in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from provision.artifacts.cache import sha256_file

REPO = Path(__file__).resolve().parents[2]
CORALPI = str(Path(sys.executable).parent / "coralpi")

sha256 = sha256_file


def coralpi(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORALPI, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        input=stdin,
    )
