"""A login in an inventory URL is used, never shown or kept: plans, locks, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from provision.artifacts import lockfile
from provision.artifacts.service import ArtifactSettings, login_index, platform_inputs
from provision.planning.matrix import platform_target, resolve
from provision.planning.targets import choices_from_vars

CORALPI = str(Path(sys.executable).parent / "coralpi")
TOKEN = "Tok3nCanary-91f2"
INDEX = f"https://ci:{TOKEN}@wheels.example/simple"


def test_the_plan_names_the_index_without_its_login_and_the_downloads_keep_it() -> None:
    variables = {"coralpi_pip_index_url": INDEX, "coralpi_opencv": "pip"}
    plan = resolve(platform_target("bookworm/armv7l/3.11"), choices_from_vars(variables))
    written = json.dumps(plan.to_dict())
    assert "wheels.example/simple" in written and TOKEN not in written
    assert all(TOKEN not in reason for reason in plan.reasons)
    settings = ArtifactSettings.from_vars(variables)
    inputs = platform_inputs(plan, settings)
    assert inputs.pip_index_url == "https://wheels.example/simple"
    assert TOKEN not in lockfile.render(
        lockfile.Lock({inputs.id: lockfile.PlatformLock(inputs, ())})
    )
    assert login_index(inputs, settings) == INDEX  # what pip and the downloads are given
    other = ArtifactSettings.from_vars({"coralpi_pip_index_url": "https://u:x@elsewhere/simple"})
    assert login_index(inputs, other) == "https://wheels.example/simple"


def plan(index: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`coralpi plan` for a Pi 4 on bookworm, 32-bit, with the given extra index."""
    args = ["--os", "bookworm", "--arch", "armv7l", "--python", "3.11", "--pip-index-url", index]
    return subprocess.run(
        [CORALPI, "plan", *args, *extra], capture_output=True, text=True, check=False
    )


def test_plan_output_and_errors_hold_no_token() -> None:
    json_out = plan(INDEX, "--opencv", "pip", "--json")
    text = plan(INDEX, "--opencv", "pip")
    refused = plan(f"{INDEX} x")
    assert json_out.returncode == 0 and text.returncode == 0, json_out.stderr + text.stderr
    assert "wheels.example" in json_out.stdout and "wheels.example" in text.stdout
    assert refused.returncode == 1 and "--pip-index-url" in refused.stderr  # the flag given
    for proc in (json_out, text, refused):
        assert TOKEN not in proc.stdout + proc.stderr
