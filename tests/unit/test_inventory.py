"""Inventory reading and the checking of coralpi variables, before any host is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.planning.inventory import check_variables, load_inventory, parse_inventory_listing


def test_listing_collects_hosts_and_their_coralpi_variables() -> None:
    listing = {
        "_meta": {
            "hostvars": {
                "pi1": {"coralpi_runtime": "max", "coralpi_accept_max_eula": "yes", "x": 1},
                "pi2": {},
            }
        },
        "all": {"children": ["pis"]},
        "pis": {"hosts": ["pi1", "pi2", "pi3"]},
    }
    hosts = parse_inventory_listing(listing, None)
    assert [h.name for h in hosts] == ["pi1", "pi2", "pi3"]
    assert hosts[0].variables == {"coralpi_runtime": "max", "coralpi_accept_max_eula": True}
    assert hosts[2].variables == {}


def test_unknown_variable_names_the_host_and_suggests_the_right_one() -> None:
    with pytest.raises(
        ConfigError, match=r"host pi7: unknown variable coralpi_runtim .*mean coralpi_runtime"
    ):
        check_variables("pi7", {"coralpi_runtim": "std"})


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_non_boolean_flag_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"coralpi_camera.*not a boolean"):
        check_variables("pi1", {"coralpi_camera": value})


def test_empty_listing_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no hosts matching --limit nope"):
        parse_inventory_listing({"_meta": {"hostvars": {}}}, "nope")


def test_real_inventory_files_through_ansible_inventory(tmp_path: Path) -> None:
    good = tmp_path / "fleet.yml"
    good.write_text(
        "all:\n  children:\n    pis:\n      hosts:\n        pi1:\n          coralpi_runtime: std\n"
        "        pi2:\n      vars:\n        coralpi_camera: false\n"
    )
    hosts = load_inventory(good)
    assert {h.name: dict(h.variables) for h in hosts} == {
        "pi1": {"coralpi_runtime": "std", "coralpi_camera": False},
        "pi2": {"coralpi_camera": False},
    }
    assert [h.name for h in load_inventory(good, limit="pi2")] == ["pi2"]

    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  hosts: [unclosed\n")
    with pytest.raises(ConfigError, match="could not be parsed"):
        load_inventory(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_inventory(tmp_path / "missing.yml")
