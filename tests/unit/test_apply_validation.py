"""`coralpi apply` refuses bad input before any host is touched (real CLI, real inventories).

Hosts in these inventories use `ansible_connection: local`, so even a wrongly accepted
inventory would reach no network address; each case asserts no run directory holds any
probe or playbook output, i.e. nothing ran against a host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provision.commands.options import parse_extra_vars
from provision.errors import ConfigError
from provision.fleet.run import FleetOptions, last_failed_hosts, rollout_vars, take_controller_paths
from provision.planning.inventory import InventoryHost, check_variables

CORALPI = str(Path(sys.executable).parent / "coralpi")

HOSTS = "all:\n  hosts:\n    pi1:\n      ansible_connection: local\n{extra}"

CASES = [
    (
        "runtime mid",
        "      coralpi_runtime: mid\n",
        [],
        "coralpi_runtime: 'mid' is not one of std, max",
    ),
    ("accelerator pci-e", "      coralpi_accelerator: pci-e\n", [], "coralpi_accelerator: 'pci-e'"),
    ("opencv conda", "      coralpi_opencv: conda\n", [], "coralpi_opencv: 'conda'"),
    ("misspelt name", "      coralpi_runtme: std\n", [], "did you mean coralpi_runtime"),
    ("camera not bool", "      coralpi_camera: sometimes\n", [], "coralpi_camera"),
    ("max without eula", "      coralpi_runtime: max\n", [], "coralpi_accept_max_eula"),
    ("bad -e value", "", ["-e", "coralpi_runtime=fast"], "coralpi_runtime: 'fast'"),
    ("unknown -e name", "", ["-e", "coralpi_runtimes=std"], "unknown variable coralpi_runtimes"),
    ("malformed -e", "", ["-e", "novalue"], "expected VAR=VALUE"),
]


@pytest.mark.parametrize(
    ("extra", "args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_exits_1_naming_the_problem(
    tmp_path: Path, extra: str, args: list[str], message: str
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(HOSTS.format(extra=extra))
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [CORALPI, "apply", "-i", str(inventory), "--runs-dir", str(runs), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    if "unknown" not in message and "VAR=VALUE" not in message:
        assert "pi1" in proc.stderr  # names the host
    assert not list(runs.glob("*/artifacts")), "a playbook ran despite bad input"


def test_malformed_and_missing_inventory(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  hosts: [\n")
    for path, message in (
        (broken, "could not be parsed"),
        (tmp_path / "nope.yml", "does not exist"),
    ):
        proc = subprocess.run(
            [CORALPI, "apply", "-i", str(path)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_extra_vars_parsing() -> None:
    assert parse_extra_vars(["coralpi_runtime=max", "a=b=c"]) == {
        "coralpi_runtime": "max",
        "a": "b=c",
    }
    with pytest.raises(ConfigError):
        parse_extra_vars(["=x"])


def test_retry_failed_reads_the_newest_report(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no earlier"):
        last_failed_hosts("apply", tmp_path)
    for stamp, failed in (("20260101-000000-000000", ["old"]), ("20260102-000000-000000", ["pi2"])):
        run = tmp_path / f"{stamp}-apply"
        run.mkdir()
        (run / "report.json").write_text(json.dumps({"failed_hosts": failed}))
    (tmp_path / "20260103-000000-000000-verify").mkdir()
    assert last_failed_hosts("apply", tmp_path) == ["pi2"]


def _host(name: str, **variables: object) -> InventoryHost:
    """A host as the inventory reader makes it: its variables checked by their kinds."""
    return InventoryHost(name, check_variables(name, variables))


def test_rollout_settings_are_checked_and_passed_once() -> None:
    hosts = [_host("pi1", coralpi_serial="25%"), _host("pi2", coralpi_serial="25%")]
    assert rollout_vars(hosts, {}) == {"coralpi_serial": "25%"}
    assert rollout_vars(hosts, {"coralpi_serial": "2", "coralpi_max_fail_percentage": "30"}) == {
        "coralpi_serial": 2,
        "coralpi_max_fail_percentage": 30,
    }
    assert rollout_vars([_host("pi1")], {}) == {}
    with pytest.raises(ConfigError, match="differs"):
        rollout_vars([_host("a", coralpi_serial=1), _host("b", coralpi_serial=2)], {})
    bad = [
        ({"coralpi_serial": "many"}, "not a number of hosts"),
        ({"coralpi_serial": 0}, "from 1"),
        ({"coralpi_serial": "101%"}, "up to 100%"),
        ({"coralpi_max_fail_percentage": 150}, "0 to 100"),
        ({"coralpi_max_fail_percentage": True}, "0 to 100"),
    ]
    for variables, message in bad:
        with pytest.raises(ConfigError, match=message):
            check_variables("a", variables)
        with pytest.raises(ConfigError, match=message):
            rollout_vars([_host("a")], variables)  # given with -e: checked the same


def test_the_lock_and_cache_come_from_the_flag_else_the_inventory_else_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    hosts = [
        _host("pi1", coralpi_lock="fleet/coralpi.lock", coralpi_cache_dir="~/coral-cache"),
        _host("pi2", coralpi_lock="fleet/coralpi.lock"),
    ]
    options = FleetOptions(inventory=tmp_path / "inv.yml")
    take_controller_paths(options, hosts)
    assert options.lock_file == Path("fleet/coralpi.lock")
    assert options.cache_dir == Path("~/coral-cache").expanduser()

    given = FleetOptions(
        inventory=tmp_path / "inv.yml", lock_file=Path("mine.lock"), cache_dir=Path("c")
    )
    take_controller_paths(given, hosts)
    assert (given.lock_file, given.cache_dir) == (Path("mine.lock"), Path("c"))

    with_e = FleetOptions(inventory=tmp_path / "inv.yml", extra_vars={"coralpi_lock": "e.lock"})
    take_controller_paths(with_e, hosts)
    assert with_e.lock_file == Path("e.lock")

    bare = FleetOptions(inventory=tmp_path / "inv.yml")
    take_controller_paths(bare, [_host("pi1")])
    assert (bare.lock_file, bare.cache_dir) == (None, None)
    (tmp_path / "coralpi.lock").write_text("{}")
    take_controller_paths(bare, [_host("pi1")])
    assert bare.lock_file == Path("coralpi.lock")

    with pytest.raises(ConfigError, match=r"coralpi_lock differs between hosts \(a.lock, b.lock\)"):
        take_controller_paths(
            FleetOptions(inventory=tmp_path / "inv.yml"),
            [_host("a", coralpi_lock="a.lock"), _host("b", coralpi_lock="b.lock")],
        )
