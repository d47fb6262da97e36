"""verify runs on the Pis' own Python, which is 3.7 on Buster: no newer syntax or stdlib."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from verify_fakeroot import REPO

SOURCES = sorted((REPO / "verify").glob("*.py"))
# Runtime names that arrived after 3.7 (annotations are fine: they are never evaluated).
NEWER = re.compile(
    r"\.removeprefix\(|\.removesuffix\(|functools\.cache\b|@cache\b|"
    r"statistics\.quantiles|math\.prod|shlex\.join|kw_only=|slots=True|"
    r"from typing import .*\b(Literal|Protocol|TypedDict|Final)\b"
)


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_parses_as_python_3_7(path: Path) -> None:
    source = path.read_text()
    ast.parse(source, filename=str(path), feature_version=(3, 7))
    assert "from __future__ import annotations" in source
    assert not NEWER.search(source)


def test_runs_under_python_3_7_when_available(tmp_path: Path) -> None:
    python37 = shutil.which("python3.7")
    env = {**os.environ, "PYENV_VERSION": "3.7"}
    if (
        python37 is None
        or subprocess.run([python37, "-V"], env=env, capture_output=True).returncode != 0
    ):
        pytest.skip("no python3.7 on this machine")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('ID=raspbian\nVERSION="10 (buster)"\n')
    done = subprocess.run(
        [python37, "-m", "verify", "--json", "--no-smoke", "--root", str(root), "--user", "pi"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 2), done.stderr
    document = json.loads(done.stdout)
    assert document["facts"]["python"].startswith("3.7.")
    assert document["facts"]["os_codename"] == "buster"
    assert {c["name"] for c in document["checks"]} >= {"os", "python_runtime", "drift"}
