"""`coralpi init`: a starter inventory that coralpi itself reads back, never overwriting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from provision.planning.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
CORALPI = str(Path(sys.executable).parent / "coralpi")


def init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORALPI, "init", *args], capture_output=True, text=True, cwd=cwd, check=False
    )


def test_init_writes_the_example_fleet_and_every_variable(tmp_path: Path) -> None:
    proc = init("fleet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    inventory = tmp_path / "fleet" / "inventory.yml"
    assert inventory.read_text() == (ROOT / "inventory" / "example-fleet.yml").read_text()
    all_vars = (tmp_path / "fleet" / "group_vars" / "all.yml").read_text()
    assert all_vars == (ROOT / "inventory" / "group_vars" / "all.yml").read_text()
    assert "coralpi plan -i fleet/inventory.yml" in proc.stdout
    hosts = load_inventory(inventory)  # read and checked as every command reads it
    assert {h.name for h in hosts} >= {"feeder-1", "gateway-1", "nvr-1"}
    assert next(h for h in hosts if h.name == "gateway-1").variables["coralpi_runtime"] == "max"


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("mine\n")
    proc = init(cwd=tmp_path)
    assert proc.returncode == 1
    assert "group_vars/all.yml already there; nothing was written" in proc.stderr
    assert (tmp_path / "group_vars" / "all.yml").read_text() == "mine\n"
    assert not (tmp_path / "inventory.yml").exists()
